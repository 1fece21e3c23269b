import { runStoreConformance } from '../../src/index.js';
import { ExpiredOwnerLeakStore } from './stores.js';

await runStoreConformance({
  name: 'ExpiredOwnerLeakStore',
  open: async () => new ExpiredOwnerLeakStore(),
});
