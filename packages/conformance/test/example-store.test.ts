import { runStoreConformance } from '../src/index.js';
import { MapStore } from './example/map-store.js';

// The store from docs/writing-a-store.md must pass the suite exactly as printed there.
await runStoreConformance({ name: 'MapStore (docs example)', open: () => MapStore.open() });
