import { runStoreConformance } from '../../src/index.js';
import { LooseWriteOptionsStore } from './stores.js';

await runStoreConformance({
  name: 'LooseWriteOptionsStore',
  open: async () => new LooseWriteOptionsStore(),
});
