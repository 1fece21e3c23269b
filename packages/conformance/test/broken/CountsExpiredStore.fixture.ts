import { runStoreConformance } from '../../src/index.js';
import { CountsExpiredStore } from './stores.js';

await runStoreConformance({
  name: 'CountsExpiredStore',
  open: async () => new CountsExpiredStore(),
});
