import { runStoreConformance } from '../../src/index.js';
import { ForgetsPassedOverSweepStore } from './stores.js';

await runStoreConformance({
  name: 'ForgetsPassedOverSweepStore',
  open: async () => new ForgetsPassedOverSweepStore(),
});
