import { runStoreConformance } from '../../src/index.js';
import { PendingWaitsSurviveCloseStore } from './stores.js';

await runStoreConformance({
  name: 'PendingWaitsSurviveCloseStore',
  open: async () => new PendingWaitsSurviveCloseStore(),
});
