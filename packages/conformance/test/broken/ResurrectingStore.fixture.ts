import { runStoreConformance } from '../../src/index.js';
import { ResurrectingStore } from './stores.js';

await runStoreConformance({ name: 'ResurrectingStore', open: async () => new ResurrectingStore() });
