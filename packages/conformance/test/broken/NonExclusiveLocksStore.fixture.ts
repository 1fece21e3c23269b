import { runStoreConformance } from '../../src/index.js';
import { NonExclusiveLocksStore } from './stores.js';

await runStoreConformance({
  name: 'NonExclusiveLocksStore',
  open: async () => new NonExclusiveLocksStore(),
});
