import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runStoreConformance } from '@sessile/conformance';
import type { SessionStore } from '@sessile/core';
import { FileStore } from '@sessile/file';
import { afterAll } from 'vitest';

const root = mkdtempSync(join(tmpdir(), 'sessile-file-conformance-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let opened = 0;
let latestPath = '';

await runStoreConformance({
  name: 'FileStore',
  open: () => {
    latestPath = join(root, `store-${++opened}`);
    return FileStore.open({ path: latestPath });
  },
  reopen: () => FileStore.open({ path: latestPath }),
  crossProcess: {
    module: new URL('./child-store.mjs', import.meta.url).pathname,
    location: () => latestPath,
  },
  // Flips the bytes of the payload in place, as a bad disk or a hand edit would leave them.
  corrupt: async (store: SessionStore, id: string) => {
    const file = join((store as FileStore).path, id.slice(0, 2), id);
    const bytes = readFileSync(file);
    for (let i = bytes.length - 4; i < bytes.length; i++) bytes[i] = (bytes[i] ?? 0) ^ 0xff;
    writeFileSync(file, bytes);
  },
});
