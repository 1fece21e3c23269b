import { runStoreConformance } from '../../src/index.js';
import { UncheckedLendStore } from './stores.js';

await runStoreConformance({
  name: 'UncheckedLendStore',
  open: async () => new UncheckedLendStore(),
});
