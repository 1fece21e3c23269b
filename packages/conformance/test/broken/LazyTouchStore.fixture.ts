import { runJsonFileStore } from './json-file-fixture.js';
import { LazyTouchStore } from './unsaved-touch-store.mjs';

await runJsonFileStore(
  'LazyTouchStore',
  (path) => LazyTouchStore.open(path),
  new URL('./lazy-touch-child.mjs', import.meta.url),
);
