import { runStoreConformance } from '../../src/index.js';
import { CorruptMessageLeaksIdStore } from './stores.js';

await runStoreConformance({
  name: 'CorruptMessageLeaksIdStore',
  open: async () => new CorruptMessageLeaksIdStore(),
  corrupt: async (store, id) => (store as CorruptMessageLeaksIdStore).damage(id),
});
