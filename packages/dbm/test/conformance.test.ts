import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  pathStorePlaces,
  placeDirectories,
  runProbeConformance,
  runStoreConformance,
} from '@sessile/conformance';
import type { SessionStore } from '@sessile/core';
import { afterAll } from 'vitest';
import { DbmStore, type DbmStoreOptions, type DbmSweepMode } from '../src/index.js';

const directories: string[] = [];
// Both sweep modes' runs of the suite leave every store's directory here; at a load above 20 on
// 2 cores removing them took longer than vitest's 10 s default for a hook.
afterAll(() => {
  for (const directory of directories) rmSync(directory, { recursive: true, force: true });
}, 120_000);

/** Flips a byte inside the stored payload of `id`: the record's checksum no longer matches. */
async function corrupt(store: SessionStore, id: string): Promise<void> {
  const path = (store as DbmStore).path;
  const bytes = readFileSync(path);
  const at = bytes.indexOf(Buffer.from(id, 'latin1'));
  if (at === -1) throw new Error('record not found in the file');
  const fd = openSync(path, 'r+');
  try {
    const target = at + id.length + 2;
    writeSync(fd, Buffer.from([(bytes[target] ?? 0) ^ 0xff]), 0, 1, target);
  } finally {
    closeSync(fd);
  }
}

for (const sweepMode of ['incremental', 'full-scan'] as DbmSweepMode[]) {
  let latest = '';
  const open = async () => {
    const directory = mkdtempSync(join(tmpdir(), 'sessile-dbm-conformance-'));
    directories.push(directory);
    latest = join(directory, 'sessions.dbm');
    return DbmStore.open({ path: latest, sweepMode });
  };
  await runStoreConformance({
    name: `DbmStore (sweepMode: ${sweepMode})`,
    open,
    reopen: () => DbmStore.open({ path: latest, sweepMode }),
    crossProcess: {
      module: new URL('./child-store.mjs', import.meta.url).pathname,
      location: () => latest,
    },
    corrupt,
    fullDisk: (path) => DbmStore.open({ path, sweepMode }),
  });
}

const probeRoot = mkdtempSync(join(tmpdir(), 'sessile-dbm-probe-'));
directories.push(probeRoot);
const place = placeDirectories(probeRoot);

runProbeConformance<DbmStoreOptions>({
  name: 'DbmStore',
  probe: (options) => DbmStore.probe(options),
  open: (options) => DbmStore.open(options),
  snapshot: async ({ path }) => place.snapshot(path),
  places: pathStorePlaces('file', place, (options) => DbmStore.open(options)),
});
