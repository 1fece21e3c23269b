import { runStoreConformance } from '../../src/index.js';
import { ListsEveryStore } from './stores.js';

await runStoreConformance({
  name: 'ListsEveryStore',
  open: async () => new ListsEveryStore(),
});
