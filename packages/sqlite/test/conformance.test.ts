import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  pathStorePlaces,
  placeDirectories,
  runProbeConformance,
  runStoreConformance,
} from '@sessile/conformance';
import type { SessionStore } from '@sessile/core';
import { SqliteStore, type SqliteStoreOptions } from '@sessile/sqlite';
import Database from 'better-sqlite3';
import { afterAll } from 'vitest';

const root = mkdtempSync(join(tmpdir(), 'sessile-sqlite-conformance-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let opened = 0;
let latestPath = '';

await runStoreConformance({
  name: 'SqliteStore',
  open: () => {
    latestPath = join(root, `store-${++opened}.db`);
    return SqliteStore.open({ path: latestPath });
  },
  reopen: () => SqliteStore.open({ path: latestPath }),
  crossProcess: {
    module: new URL('./child-store.mjs', import.meta.url).pathname,
    location: () => latestPath,
  },
  // Replaces the payload blob with text, as a foreign writer or a hand edit would leave it.
  corrupt: async (_store: SessionStore, id: string) => {
    const other = new Database(latestPath);
    try {
      other.prepare("UPDATE sessions SET data = 'not a blob' WHERE id = ?").run(id);
    } finally {
      other.close();
    }
  },
  fullDisk: (path) => SqliteStore.open({ path }),
});

const place = placeDirectories(root);

/** An SQLite database in a new place made by `make` on a plain connection (an app's own file). */
function appDatabase(make: (db: Database.Database) => void): SqliteStoreOptions {
  const path = join(place.make(), 'app.db');
  const db = new Database(path);
  try {
    make(db);
  } finally {
    db.close();
  }
  return { path };
}

runProbeConformance<SqliteStoreOptions>({
  name: 'SqliteStore',
  probe: (options) => SqliteStore.probe(options),
  open: (options) => SqliteStore.open(options),
  snapshot: async ({ path }) => place.snapshot(path as string),
  places: [
    ...pathStorePlaces('file', place, (options) => SqliteStore.open(options)),
    {
      name: "an app's database without the sessions table",
      state: 'absent',
      make: async () => appDatabase((db) => db.exec('CREATE TABLE users (id INTEGER PRIMARY KEY)')),
    },
    {
      name: "an app's table of the same name",
      state: 'refused',
      make: async () => appDatabase((db) => db.exec('CREATE TABLE sessions (sid, sess, expired)')),
    },
  ],
});
