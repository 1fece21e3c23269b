import { runStoreConformance } from '../../src/index.js';
import { StaleSweepCursorStore } from './stores.js';

await runStoreConformance({
  name: 'StaleSweepCursorStore',
  open: async () => new StaleSweepCursorStore(),
});
