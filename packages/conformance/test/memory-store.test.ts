import { MemoryStore } from '@sessile/core';
import { runStoreConformance } from '../src/index.js';

await runStoreConformance({ name: 'MemoryStore', open: () => MemoryStore.open() });
