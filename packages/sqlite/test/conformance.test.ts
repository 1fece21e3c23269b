import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runStoreConformance } from '@sessile/conformance';
import type { SessionStore } from '@sessile/core';
import { SqliteStore } from '@sessile/sqlite';
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
