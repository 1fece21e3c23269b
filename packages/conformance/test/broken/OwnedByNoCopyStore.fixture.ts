import { runStoreConformance } from '../../src/index.js';
import { OwnedByNoCopyStore } from './stores.js';

await runStoreConformance({
  name: 'OwnedByNoCopyStore',
  open: async () => new OwnedByNoCopyStore(),
});
