import { runJsonFileStore } from './json-file-fixture.js';
import { UnsavedTouchStore } from './unsaved-touch-store.mjs';

await runJsonFileStore(
  'UnsavedTouchStore',
  (path) => UnsavedTouchStore.open(path),
  new URL('./unsaved-touch-child.mjs', import.meta.url),
);
