import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  pathStorePlaces,
  placeDirectories,
  runProbeConformance,
  runStoreConformance,
} from '@sessile/conformance';
import type { SessionStore } from '@sessile/core';
import { LevelStore, type LevelStoreOptions } from '@sessile/level';
import { ClassicLevel } from 'classic-level';
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

const place = placeDirectories(root);

/** A new directory at `name` in a new place, holding `files` (empty). */
function directoryWith(name: string, files: string[]): LevelStoreOptions {
  const path = join(place.make(), name);
  mkdirSync(path);
  for (const file of files) writeFileSync(join(path, file), '');
  return { path };
}

/** A LevelDB database another program made at `name` in a new place, holding `keys`. */
async function levelDatabaseWith(name: string, keys: Record<string, string>) {
  const path = join(place.make(), name);
  const db = new ClassicLevel<string, string>(path);
  await db.open();
  for (const [key, value] of Object.entries(keys)) await db.put(key, value);
  await db.close();
  return { path };
}

runProbeConformance<LevelStoreOptions>({
  name: 'LevelStore',
  probe: (options) => LevelStore.probe(options),
  open: (options) => LevelStore.open(options),
  snapshot: async ({ path }) => place.snapshot(path as string),
  places: [
    ...pathStorePlaces('directory', place, (options) => LevelStore.open(options)),
    {
      name: 'a directory of a creation LevelDB did not finish (its own files, no CURRENT)',
      state: 'absent',
      make: async () => directoryWith('begun', ['LOCK', 'LOG', '000001.log']),
    },
    {
      name: 'a directory of other files',
      state: 'refused',
      make: async () => directoryWith('mine', ['notes.txt', 'LOG']),
    },
    {
      name: 'an empty LevelDB database',
      state: 'absent',
      make: () => levelDatabaseWith('empty-level', {}),
    },
    {
      name: "level-session-store's LevelDB database",
      state: 'refused',
      make: () => levelDatabaseWith('peer', { __length__: '1', rX9kq2mPz7: '{"cookie":{}}' }),
    },
  ],
});
