import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runStoreConformance } from '@sessile/conformance';
import type { SessionStore } from '@sessile/core';
import { LevelStore } from '@sessile/level';
import { afterAll } from 'vitest';

const root = mkdtempSync(join(tmpdir(), 'sessile-level-conformance-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let opened = 0;
let latestPath = '';

await runStoreConformance({
  name: 'LevelStore',
  open: () => {
    latestPath = join(root, `store-${++opened}`);
    return LevelStore.open({ path: latestPath });
  },
  reopen: () => LevelStore.open({ path: latestPath }),
  // One process at a time, but a durable store must survive a writer killed mid-stream.
  crossProcess: {
    module: new URL('./child-store.mjs', import.meta.url).pathname,
    location: () => latestPath,
  },
  // Replaces the record's value with bytes no version of the format ever wrote.
  corrupt: async (store: SessionStore, id: string) => {
    await (store as LevelStore).db.put(Buffer.from(`r${id}`, 'latin1'), Uint8Array.of(0xde, 0xad));
  },
  fullDisk: (path) => LevelStore.open({ path }),
});
