import { runStoreConformance } from '../../src/index.js';
import { TouchRewritesStore } from './stores.js';

await runStoreConformance({
  name: 'TouchRewritesStore',
  open: async () => new TouchRewritesStore(),
});
