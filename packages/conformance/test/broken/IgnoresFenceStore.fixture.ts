import { runStoreConformance } from '../../src/index.js';
import { IgnoresFenceStore } from './stores.js';

await runStoreConformance({ name: 'IgnoresFenceStore', open: async () => new IgnoresFenceStore() });
