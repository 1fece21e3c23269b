import { runStoreConformance } from '../../src/index.js';
import { ThrowingStore } from './stores.js';

await runStoreConformance({
  name: 'ThrowingStore',
  open: async () => new ThrowingStore(),
});
