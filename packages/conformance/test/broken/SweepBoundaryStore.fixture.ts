import { runStoreConformance } from '../../src/index.js';
import { SweepBoundaryStore } from './stores.js';

await runStoreConformance({
  name: 'SweepBoundaryStore',
  open: async () => new SweepBoundaryStore(),
});
