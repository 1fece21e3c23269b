import { runStoreConformance } from '../../src/index.js';
import { UncountedSweepStore } from './stores.js';

await runStoreConformance({
  name: 'UncountedSweepStore',
  open: async () => new UncountedSweepStore(),
});
