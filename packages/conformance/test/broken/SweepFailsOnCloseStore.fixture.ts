import { runStoreConformance } from '../../src/index.js';
import { SweepFailsOnCloseStore } from './stores.js';

await runStoreConformance({
  name: 'SweepFailsOnCloseStore',
  open: async () => new SweepFailsOnCloseStore(),
});
