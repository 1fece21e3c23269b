import { runStoreConformance } from '../../src/index.js';
import { StaleOwnerIndexStore } from './stores.js';

await runStoreConformance({
  name: 'StaleOwnerIndexStore',
  open: async () => new StaleOwnerIndexStore(),
});
