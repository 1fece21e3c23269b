// Store classes whose static `probe` breaks one promise of runProbeConformance; the self-test
// proves the group notices. Their `open` is correct: a directory marked by a `STORE` file, its
// records kept in this process across close and open.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  MemoryStore,
  SessionError,
  type SessionRecord,
  type SessionStore,
  type StoreProbe,
} from '@sessile/core';
import { probeStoreDirectory, type StoreDirectoryRules } from '@sessile/core/store';
import { pathStorePlaces, placeDirectories, runProbeConformance } from '../../src/index.js';

const RULES: StoreDirectoryRules = {
  kind: 'a test store',
  isStore: (names) => names.includes('STORE'),
};

/** The records of each closed store, by its path. */
const kept = new Map<string, Map<string, SessionRecord>>();

async function openDirectoryStore({ path }: { path: string }): Promise<SessionStore> {
  const found = await probeStoreDirectory(path, RULES);
  if (found.state === 'refused') throw new SessionError('ERR_STORE_IO', found.reason);
  mkdirSync(path, { recursive: true });
  writeFileSync(join(path, 'STORE'), '');
  const store = new MemoryStore();
  for (const [id, record] of kept.get(path) ?? []) await store.set(id, record);
  const close = store.close.bind(store);
  store.close = async () => {
    const records = new Map<string, SessionRecord>();
    for await (const id of store.ids()) {
      const record = await store.get(id);
      if (record !== undefined) records.set(id, record);
    }
    kept.set(path, records);
    await close();
  };
  return store;
}

/** Registers the probe group for a directory store whose probe is `probe`. */
export function runDirectoryProbe(
  name: string,
  probe: (options: { path: string }) => Promise<StoreProbe>,
): void {
  const place = placeDirectories(mkdtempSync(join(tmpdir(), 'sessile-probe-fixture-')));
  runProbeConformance<{ path: string }>({
    name,
    probe,
    open: openDirectoryStore,
    snapshot: async ({ path }) => place.snapshot(path),
    places: [
      ...pathStorePlaces('directory', place, openDirectoryStore),
      {
        name: 'a directory of other files',
        state: 'refused',
        make: async () => {
          const path = join(place.make(), 'mine');
          mkdirSync(path);
          writeFileSync(join(path, 'notes.txt'), 'keep me');
          return { path };
        },
      },
    ],
  });
}

/** The probe that agrees with `open`. */
export function correctProbe({ path }: { path: string }): Promise<StoreProbe> {
  return probeStoreDirectory(path, RULES);
}

/** Makes the directory it was asked about, as a careless check before an open would. */
export async function probeThatCreates({ path }: { path: string }): Promise<StoreProbe> {
  mkdirSync(path, { recursive: true });
  return probeStoreDirectory(path, RULES);
}

/** Takes every file for the store's own, so a directory of other files reads as a new store. */
export function probeThatIgnoresOtherFiles({ path }: { path: string }): Promise<StoreProbe> {
  return probeStoreDirectory(path, { ...RULES, isOwnFile: () => true });
}
