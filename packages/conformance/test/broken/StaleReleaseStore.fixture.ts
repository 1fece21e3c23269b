import { runStoreConformance } from '../../src/index.js';
import { StaleReleaseStore } from './stores.js';

await runStoreConformance({
  name: 'StaleReleaseStore',
  open: async () => new StaleReleaseStore(),
});
