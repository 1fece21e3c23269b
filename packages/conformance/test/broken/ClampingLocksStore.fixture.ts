import { runStoreConformance } from '../../src/index.js';
import { ClampingLocksStore } from './stores.js';

await runStoreConformance({
  name: 'ClampingLocksStore',
  open: async () => new ClampingLocksStore(),
});
