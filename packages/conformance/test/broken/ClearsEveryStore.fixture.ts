import { runStoreConformance } from '../../src/index.js';
import { ClearsEveryStore } from './stores.js';

await runStoreConformance({
  name: 'ClearsEveryStore',
  open: async () => new ClearsEveryStore(),
});
