import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  pathStorePlaces,
  placeDirectories,
  runProbeConformance,
  runStoreConformance,
} from '@sessile/conformance';
import type { SessionStore } from '@sessile/core';
import { FileStore, type FileStoreOptions, SHARD_LENGTH } from '@sessile/file';
import { afterAll } from 'vitest';

const root = mkdtempSync(join(tmpdir(), 'sessile-file-conformance-'));
// Both runs of the suite leave every store's files here; at a load of 24 on 2 cores removing
// them took longer than vitest's 10 s default for a hook.
afterAll(() => rmSync(root, { recursive: true, force: true }), 120_000);

let opened = 0;

// Once per way of making filesystem calls: on the event loop, and through the thread pool.
for (const io of ['sync', 'async'] as const) {
  let latestPath = '';
  await runStoreConformance({
    name: `FileStore (io '${io}')`,
    open: () => {
      latestPath = join(root, `store-${++opened}`);
      return FileStore.open({ path: latestPath, io });
    },
    reopen: () => FileStore.open({ path: latestPath, io }),
    crossProcess: {
      module: new URL('./child-store.mjs', import.meta.url).pathname,
      location: () => latestPath,
    },
    // Flips the bytes of the payload in place, as a bad disk or a hand edit would leave them.
    corrupt: async (store: SessionStore, id: string) => {
      const file = join((store as FileStore).path, id.slice(0, SHARD_LENGTH), id);
      const bytes = readFileSync(file);
      for (let i = bytes.length - 4; i < bytes.length; i++) bytes[i] = (bytes[i] ?? 0) ^ 0xff;
      writeFileSync(file, bytes);
    },
    fullDisk: (path) => FileStore.open({ path, io }),
  });
}

const place = placeDirectories(root);

runProbeConformance<FileStoreOptions>({
  name: 'FileStore',
  probe: (options) => FileStore.probe(options),
  open: (options) => FileStore.open(options),
  snapshot: async ({ path }) => place.snapshot(path),
  places: [
    ...pathStorePlaces('directory', place, (options) => FileStore.open(options)),
    {
      name: 'a directory of other files',
      state: 'refused',
      make: async () => {
        const path = join(place.make(), 'mine');
        mkdirSync(join(path, 'a'), { recursive: true });
        writeFileSync(join(path, 'a', 'notes.txt'), 'keep me');
        return { path };
      },
    },
  ],
});
