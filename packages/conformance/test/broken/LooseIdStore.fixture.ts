import { runStoreConformance } from '../../src/index.js';
import { LooseIdStore } from './stores.js';

await runStoreConformance({ name: 'LooseIdStore', open: async () => new LooseIdStore() });
