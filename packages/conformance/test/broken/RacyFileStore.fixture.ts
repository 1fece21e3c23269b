import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
// The built suite: its cross-process tests fork dist/child.js, which the sources have no copy of.
import { runStoreConformance } from '../../dist/index.js';
import { RacyFileStore } from './racy-file-store.mjs';

const root = mkdtempSync(join(tmpdir(), 'sessile-racy-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let opened = 0;
let directory = '';

await runStoreConformance({
  name: 'RacyFileStore',
  open: () => {
    directory = join(root, `store-${++opened}`);
    return RacyFileStore.open(directory);
  },
  crossProcess: {
    module: new URL('./racy-file-child.mjs', import.meta.url),
    location: () => directory,
  },
});
