import { runStoreConformance } from '../../src/index.js';
import { SweepIgnoresLimitStore } from './stores.js';

await runStoreConformance({
  name: 'SweepIgnoresLimitStore',
  open: async () => new SweepIgnoresLimitStore(),
});
