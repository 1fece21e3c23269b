import { runStoreConformance } from '../../src/index.js';
import { TrimmingIdStore } from './stores.js';

await runStoreConformance({
  name: 'TrimmingIdStore',
  open: async () => new TrimmingIdStore(),
});
