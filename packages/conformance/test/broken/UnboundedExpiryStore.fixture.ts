import { runStoreConformance } from '../../src/index.js';
import { UnboundedExpiryStore } from './stores.js';

await runStoreConformance({
  name: 'UnboundedExpiryStore',
  open: async () => new UnboundedExpiryStore(),
});
