import { runJsonFileStore } from './json-file-fixture.js';
import { SweepOutlivesCloseStore } from './unsaved-touch-store.mjs';

await runJsonFileStore(
  'SweepOutlivesCloseStore',
  (path) => SweepOutlivesCloseStore.open(path),
  new URL('./sweep-outlives-close-child.mjs', import.meta.url),
);
