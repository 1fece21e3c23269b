import { runStoreConformance } from '../../src/index.js';
import { DefersCreatesStore } from './stores.js';

await runStoreConformance({
  name: 'DefersCreatesStore',
  open: async () => new DefersCreatesStore(),
});
