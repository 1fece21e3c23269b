import { runStoreConformance } from '../../src/index.js';
import { ReturnsExpiredStore } from './stores.js';

await runStoreConformance({
  name: 'ReturnsExpiredStore',
  open: async () => new ReturnsExpiredStore(),
});
