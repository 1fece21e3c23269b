import { runStoreConformance } from '../../src/index.js';
import { LeakyOwnerIndexStore } from './stores.js';

await runStoreConformance({
  name: 'LeakyOwnerIndexStore',
  open: async () => new LeakyOwnerIndexStore(),
});
