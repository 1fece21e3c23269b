import { runStoreConformance } from '../../src/index.js';
import { LateOwnerIndexStore } from './stores.js';

await runStoreConformance({
  name: 'LateOwnerIndexStore',
  open: async () => new LateOwnerIndexStore(),
});
