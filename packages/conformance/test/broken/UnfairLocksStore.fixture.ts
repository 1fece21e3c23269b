import { runStoreConformance } from '../../src/index.js';
import { UnfairLocksStore } from './stores.js';

await runStoreConformance({ name: 'UnfairLocksStore', open: async () => new UnfairLocksStore() });
