import { runStoreConformance } from '../../src/index.js';
import { CachedOwnerExpiryStore } from './stores.js';

await runStoreConformance({
  name: 'CachedOwnerExpiryStore',
  open: async () => new CachedOwnerExpiryStore(),
});
