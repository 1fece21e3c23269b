import { runStoreConformance } from '../../src/index.js';
import { RacyCreateStore } from './stores.js';

await runStoreConformance({ name: 'RacyCreateStore', open: async () => new RacyCreateStore() });
