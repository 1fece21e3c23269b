import { runStoreConformance } from '../../src/index.js';
import { CaseInsensitiveIdStore } from './stores.js';

await runStoreConformance({
  name: 'CaseInsensitiveIdStore',
  open: async () => new CaseInsensitiveIdStore(),
});
