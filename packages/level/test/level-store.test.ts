import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { generateSessionId, isSessionError, type SessionRecord } from '@sessile/core';
import { LevelStore } from '@sessile/level';
import { ClassicLevel } from 'classic-level';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const HOUR_MS = 3_600_000;
const root = mkdtempSync(join(tmpdir(), 'sessile-level-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let dirs = 0;
const freshPath = () => join(root, `db-${++dirs}`);
const encoder = new TextEncoder();
const record = (text: string, expiresAt = Date.now() + HOUR_MS): SessionRecord => ({
  data: encoder.encode(text),
  expiresAt,
});
const text = (found: SessionRecord | undefined) =>
  found === undefined ? undefined : new TextDecoder().decode(found.data);

async function withStore<T>(body: (store: LevelStore) => Promise<T>): Promise<T> {
  const store = await LevelStore.open({ path: freshPath() });
  try {
    return await body(store);
  } finally {
    await store.close();
  }
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the promise to reject');
}

async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const ids: string[] = [];
  for await (const id of iterable) ids.push(id);
  return ids;
}

/** The ids named by the store's expiry index entries, in index order. */
async function indexedIds(store: LevelStore): Promise<string[]> {
  const keys = await store.db.keys({ gte: Uint8Array.of(0x78), lt: Uint8Array.of(0x79) }).all();
  return keys.map((key) => Buffer.from(key).toString('latin1', 9));
}

async function dropIndexEntry(store: LevelStore, id: string): Promise<void> {
  const keys = await store.db.keys({ gte: Uint8Array.of(0x78), lt: Uint8Array.of(0x79) }).all();
  const key = keys.find((candidate) => Buffer.from(candidate).toString('latin1', 9) === id);
  if (key === undefined) throw new Error('no index entry to drop');
  await store.db.del(key);
}

const recordKey = (id: string) => Buffer.from(`r${id}`, 'latin1');

describe('LevelStore: one process per directory', () => {
  const fixture = new URL('./fixtures/open-store.mjs', import.meta.url).pathname;
  const openInChild = async (path: string) => {
    // The timeout only guards the test run: a child that hangs is killed and fails the test.
    const { stdout } = await run(process.execPath, [fixture, path], { timeout: 60_000 });
    return JSON.parse(stdout) as Record<string, unknown>;
  };

  it('a second process opening a held directory fails fast with ERR_STORE_IO naming the lock', async () => {
    const path = freshPath();
    const store = await LevelStore.open({ path });
    try {
      await store.set(generateSessionId(), record('held'));
      const outcome = await openInChild(path);
      expect(outcome).toMatchObject({
        opened: false,
        name: 'SessionError',
        code: 'ERR_STORE_IO',
        causeCode: 'LEVEL_DATABASE_NOT_OPEN',
        rootCauseCode: 'LEVEL_LOCKED',
      });
      expect(outcome.message).toMatch(/locked/);
      expect(outcome.message).toMatch(/one process per directory/);
      expect(outcome.message).toMatch(/@sessile\/sqlite or @sessile\/file/);
    } finally {
      await store.close();
    }
    // Once the holder closes, another process opens the same data.
    expect(await openInChild(path)).toEqual({ opened: true, count: 1 });
  }, 120_000);

  it('a second store on the same directory in this process gets the same error', async () => {
    const path = freshPath();
    const store = await LevelStore.open({ path });
    try {
      const error = await rejection(LevelStore.open({ path }));
      expect(isSessionError(error, 'ERR_STORE_IO')).toBe(true);
      expect((error as Error).message).toMatch(/one process per directory/);
    } finally {
      await store.close();
    }
  });

  it('a path that is not a directory rejects with ERR_STORE_IO', async () => {
    const file = join(root, `not-a-directory-${++dirs}`);
    writeFileSync(file, 'plain file');
    const error = await rejection(LevelStore.open({ path: file }));
    expect(isSessionError(error, 'ERR_STORE_IO')).toBe(true);
  });

  it('bad options reject with a TypeError and leave the directory free', async () => {
    const path = freshPath();
    await expect(LevelStore.open({ path, maxRecordBytes: 0 })).rejects.toThrow(TypeError);
    const store = await LevelStore.open({ path });
    await store.close();
  });

  it('open needs exactly one of path and db, and a valid sublevel name', async () => {
    await expect(LevelStore.open({})).rejects.toThrow(TypeError);
    const db = new ClassicLevel(freshPath());
    try {
      await expect(LevelStore.open({ path: freshPath(), db })).rejects.toThrow(TypeError);
      await expect(LevelStore.open({ db: {} as never })).rejects.toThrow(TypeError);
      // abstract-level reserves '!' and '"' as separators.
      await expect(LevelStore.open({ db, sublevel: 'a!b' })).rejects.toThrow(TypeError);
    } finally {
      await db.close();
    }
  });
});

describe('LevelStore: the expiry index', () => {
  it('sweep orders expiresAt numerically: negative, fractional and far-future times', async () => {
    await withStore(async (store) => {
      const now = 1_000.5;
      const times = [-5e12, -1, -0.25, 0, 0.75, 999, 1_000.5, 1_000.75, 1_001, 2 ** 40, 8.64e15];
      const ids = times.map(() => generateSessionId());
      for (const [i, id] of ids.entries()) await store.set(id, record(`t${i}`, times[i]));
      const result = await store.sweep({ now });
      expect(result).toMatchObject({ removed: 7, scanned: 7, done: true });
      const left = new Set(await indexedIds(store));
      for (const [i, id] of ids.entries()) {
        const raw = await store.db.get(recordKey(id));
        expect(raw !== undefined, `record at ${times[i]}`).toBe((times[i] as number) > now);
        expect(left.has(id), `index entry at ${times[i]}`).toBe((times[i] as number) > now);
      }
    });
  });

  it('every write leaves exactly one index entry per record', async () => {
    await withStore(async (store) => {
      const id = generateSessionId();
      const start = Date.now();
      await store.set(id, record('a', start + HOUR_MS));
      await store.set(id, record('b', start + 2 * HOUR_MS));
      await store.touch(id, start + 3 * HOUR_MS);
      await store.set(id, record('c', start + 3 * HOUR_MS), { only: 'present' });
      expect(await indexedIds(store)).toEqual([id]);
      expect(await store.delete(id)).toBe(true);
      expect(await indexedIds(store)).toEqual([]);
    });
  });

  it('an index entry left without its record is never returned, and sweep cleans it', async () => {
    await withStore(async (store) => {
      const start = Date.now();
      const orphan = generateSessionId();
      const kept = generateSessionId();
      await store.set(orphan, record('orphan', start + HOUR_MS));
      await store.set(kept, record('kept', start + 10 * HOUR_MS));
      await store.db.del(recordKey(orphan));

      expect(await store.get(orphan)).toBeUndefined();
      expect(await store.touch(orphan, start + 5 * HOUR_MS)).toBe(false);
      expect(await store.delete(orphan)).toBe(false);
      expect(await store.count()).toBe(1);
      expect(await collect(store.ids())).toEqual([kept]);

      const result = await store.sweep({ now: start + 2 * HOUR_MS });
      expect(result).toEqual({ removed: 0, scanned: 1, done: true });
      expect(await indexedIds(store)).toEqual([kept]);
      expect(text(await store.get(kept))).toBe('kept');
      // The id is free again for a create.
      expect(await store.set(orphan, record('new'), { only: 'absent' })).toBe(true);
    });
  });

  it('a record that lost its index entry still expires for reads; repairIndex lets sweep remove it', async () => {
    await withStore(async (store) => {
      const lost = generateSessionId();
      const live = generateSessionId();
      await store.set(lost, record('lost', Date.now() + 150));
      await store.set(live, record('live'));
      await dropIndexEntry(store, lost);
      await new Promise((resolve) => setTimeout(resolve, 300));

      expect(await store.get(lost)).toBeUndefined();
      expect(await store.touch(lost, Date.now() + HOUR_MS)).toBe(false);
      expect(await store.count()).toBe(1);
      expect(await collect(store.ids())).toEqual([live]);
      expect(await store.set(lost, record('x'), { only: 'present' })).toBe(false);

      // Sweep walks only the index, so it cannot see the record (the documented limit)...
      expect(await store.sweep()).toMatchObject({ removed: 0, done: true });
      expect(await store.db.get(recordKey(lost))).toBeDefined();
      // ...until repairIndex re-creates the entry.
      expect(await store.repairIndex()).toEqual({ scanned: 2, repaired: 1 });
      expect(await store.repairIndex()).toEqual({ scanned: 2, repaired: 0 });
      expect(await store.sweep()).toMatchObject({ removed: 1, done: true });
      expect(await store.db.get(recordKey(lost))).toBeUndefined();
      expect(await indexedIds(store)).toEqual([live]);
    });
  });

  it('any write to a record that lost its index entry indexes it again', async () => {
    await withStore(async (store) => {
      const id = generateSessionId();
      const start = Date.now();
      await store.set(id, record('a', start + HOUR_MS));
      await dropIndexEntry(store, id);
      expect(await store.touch(id, start + 2 * HOUR_MS)).toBe(true);
      expect(await indexedIds(store)).toEqual([id]);
      expect(await store.sweep({ now: start + 3 * HOUR_MS })).toMatchObject({ removed: 1 });
    });
  });

  it('a record written below where the last sweep stopped is still swept', async () => {
    await withStore(async (store) => {
      const start = Date.now();
      const first = generateSessionId();
      await store.set(first, record('first', start + HOUR_MS));
      expect(await store.sweep({ now: start + 2 * HOUR_MS })).toMatchObject({ removed: 1 });
      // Earlier than every entry the last sweep already walked past.
      const earlier = generateSessionId();
      const touched = generateSessionId();
      await store.set(earlier, record('earlier', start + HOUR_MS / 2));
      await store.set(touched, record('touched', start + 10 * HOUR_MS));
      await store.touch(touched, start + HOUR_MS / 4);
      expect(await store.sweep({ now: start + 2 * HOUR_MS })).toEqual({
        removed: 2,
        scanned: 2,
        done: true,
      });
      expect(await indexedIds(store)).toEqual([]);
    });
  });

  it('records that expire while a sweep runs are found by the next sweep', async () => {
    await withStore(async (store) => {
      const start = Date.now();
      const old = Array.from({ length: 3000 }, () => generateSessionId());
      await Promise.all(old.map((id) => store.set(id, record(id, start + HOUR_MS))));
      // Started after the sweep's iterator, so it cannot see them, and due before where it stops.
      const late = Array.from({ length: 200 }, () => generateSessionId());
      const sweeping = store.sweep({ now: start + 2 * HOUR_MS, limit: 100_000 });
      const writing = late.map((id) => store.set(id, record(id, start + HOUR_MS / 2)));
      const first = await sweeping;
      await Promise.all(writing);
      const second = await store.sweep({ now: start + 2 * HOUR_MS });
      expect(second.done).toBe(true);
      expect(first.removed + second.removed).toBe(3200);
      expect(await indexedIds(store)).toEqual([]);
    });
  }, 60_000);

  it('a write racing a sweep of the same id is never lost', async () => {
    await withStore(async (store) => {
      const start = Date.now();
      const ids = Array.from({ length: 2000 }, () => generateSessionId());
      await Promise.all(ids.map((id) => store.set(id, record(id, start + HOUR_MS))));
      // Each touch renews a record the concurrent sweep considers expired; they interleave
      // with the sweep's batches.
      const sweeping = store.sweep({ now: start + 2 * HOUR_MS, limit: 100_000 });
      const touching: Promise<boolean>[] = [];
      for (const [i, id] of ids.entries()) {
        touching.push(store.touch(id, start + 10 * HOUR_MS));
        if (i % 4 === 0) await new Promise((resolve) => setImmediate(resolve));
      }
      const [touched] = await Promise.all([Promise.all(touching), sweeping]);
      for (const [i, id] of ids.entries()) {
        const found = await store.get(id);
        expect(found !== undefined).toBe(touched[i]);
        if (found !== undefined) expect(found.expiresAt).toBe(start + 10 * HOUR_MS);
      }
      expect(await store.sweep({ now: start + 2 * HOUR_MS })).toMatchObject({ removed: 0 });
      expect(await store.count()).toBe(touched.filter(Boolean).length);
    });
  }, 60_000);
});

describe('LevelStore: corrupt records', () => {
  const corrupt = (store: LevelStore, id: string) =>
    store.db.put(recordKey(id), Uint8Array.of(0x01, 0x02));

  it('conditional writes and touch reject with ERR_CORRUPT_RECORD; delete removes the bytes', async () => {
    await withStore(async (store) => {
      const id = generateSessionId();
      await store.set(id, record('a'));
      await corrupt(store, id);
      for (const attempt of [
        store.set(id, record('b'), { only: 'absent' }),
        store.set(id, record('b'), { only: 'present' }),
        store.touch(id, Date.now() + HOUR_MS),
      ]) {
        expect(isSessionError(await rejection(attempt), 'ERR_CORRUPT_RECORD')).toBe(true);
      }
      // Not known to be live, so false, but the damaged bytes are gone.
      expect(await store.delete(id)).toBe(false);
      expect(await store.get(id)).toBeUndefined();
    });
  });

  it('sweep removes a corrupt record once its index entry is due, and the stale entry of an overwrite', async () => {
    await withStore(async (store) => {
      const start = Date.now();
      const due = generateSessionId();
      const overwritten = generateSessionId();
      await store.set(due, record('due', start + HOUR_MS));
      await store.set(overwritten, record('old', start + HOUR_MS));
      await corrupt(store, due);
      await corrupt(store, overwritten);
      // An overwrite cannot read the old expiresAt, so the old entry stays behind until sweep.
      await store.set(overwritten, record('new', start + 10 * HOUR_MS));
      expect(await store.sweep({ now: start + 2 * HOUR_MS })).toEqual({
        removed: 1,
        scanned: 2,
        done: true,
      });
      expect(await store.db.get(recordKey(due))).toBeUndefined();
      expect(text(await store.get(overwritten))).toBe('new');
      expect(await indexedIds(store)).toEqual([overwritten]);
    });
  });
});

describe("LevelStore: inside an app's database", () => {
  async function appDatabase() {
    const db = new ClassicLevel<string, string>(freshPath());
    await db.open();
    // Keys that sort before, around and after the store's sublevel prefix '!sessions!', which
    // belongs to the store.
    const appKeys: [string, string][] = [
      [' first', '1'],
      ['!sessions', 'close to the prefix'],
      ['!sessions"', "the sublevel's upper bound"],
      ['!sessionsx', 'after'],
      ['r-looks-like-a-record', 'app'],
      ['x-looks-like-an-index-entry', 'app'],
      ['user:1', 'alice'],
      ['~last', 'z'],
    ];
    await db.batch(appKeys.map(([key, value]) => ({ type: 'put', key, value })));
    return { db, appKeys };
  }

  it("keeps sessions in a sublevel and leaves the app's keys untouched, including on clear()", async () => {
    const { db, appKeys } = await appDatabase();
    try {
      const store = await LevelStore.open({ db });
      const start = Date.now();
      const ids = [generateSessionId(), generateSessionId(), generateSessionId()];
      for (const id of ids) await store.set(id, record(id, start + HOUR_MS));
      await store.touch(ids[0] as string, start + 10 * HOUR_MS);
      expect(await store.count()).toBe(3);
      expect((await collect(store.ids())).sort()).toEqual([...ids].sort());
      expect(await store.sweep({ now: start + 2 * HOUR_MS })).toMatchObject({
        removed: 2,
        done: true,
      });
      await store.clear();
      expect(await store.count()).toBe(0);
      await store.close();

      // Closing the store leaves the app's database open, with all of its own keys.
      expect(db.status).toBe('open');
      expect(await db.iterator().all()).toEqual(
        [...appKeys].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
      );
    } finally {
      await db.close();
    }
  });

  it('stores in different sublevels, or in a sublevel of a sublevel, do not see each other', async () => {
    const { db, appKeys } = await appDatabase();
    try {
      const web = await LevelStore.open({ db });
      const admin = await LevelStore.open({ db, sublevel: 'admin-sessions' });
      const nested = await LevelStore.open({ db: db.sublevel('tenant-1') });
      const id = generateSessionId();
      await web.set(id, record('web'));
      await admin.set(id, record('admin'));
      await nested.set(id, record('nested'));
      expect(text(await web.get(id))).toBe('web');
      expect(text(await admin.get(id))).toBe('admin');
      expect(text(await nested.get(id))).toBe('nested');
      await admin.clear();
      expect(await admin.get(id)).toBeUndefined();
      expect(text(await web.get(id))).toBe('web');
      expect(text(await nested.get(id))).toBe('nested');
      await Promise.all([web.close(), admin.close(), nested.close()]);
      for (const [key, value] of appKeys) expect(await db.get(key)).toBe(value);
    } finally {
      await db.close();
    }
  });

  it('sessions in an app database survive reopening it', async () => {
    const path = freshPath();
    const id = generateSessionId();
    const first = new ClassicLevel(path);
    const store = await LevelStore.open({ db: first });
    await store.set(id, record('kept'));
    await store.close();
    await first.close();

    const second = new ClassicLevel(path);
    try {
      const reopened = await LevelStore.open({ db: second });
      expect(text(await reopened.get(id))).toBe('kept');
      // Returned data is the caller's own copy, not a view of the app database's bytes.
      const found = await reopened.get(id);
      found?.data.fill(0);
      expect(text(await reopened.get(id))).toBe('kept');
      await reopened.close();
    } finally {
      await second.close();
    }
  });
});

describe('LevelStore: reads and grouped writes', () => {
  it('with syncReads: false every operation reads asynchronously and keeps the same semantics', async () => {
    const store = await LevelStore.open({ path: freshPath(), syncReads: false });
    try {
      const start = Date.now();
      const [live, expired, corrupt] = [
        generateSessionId(),
        generateSessionId(),
        generateSessionId(),
      ];
      expect(await store.set(live, record('a'), { only: 'absent' })).toBe(true);
      expect(await store.set(live, record('b'), { only: 'absent' })).toBe(false);
      expect(await store.set(live, record('c'), { only: 'present' })).toBe(true);
      expect(text(await store.get(live))).toBe('c');
      expect(await store.touch(live, start + 2 * HOUR_MS)).toBe(true);
      expect((await store.get(live))?.expiresAt).toBe(start + 2 * HOUR_MS);
      expect(await indexedIds(store)).toEqual([live]);

      await store.set(expired, record('old', start - 1));
      expect(await store.get(expired)).toBeUndefined();
      expect(await store.touch(expired, start + HOUR_MS)).toBe(false);
      expect(await store.set(expired, record('new'), { only: 'absent' })).toBe(true);

      await store.db.put(recordKey(corrupt), Uint8Array.of(0xde, 0xad));
      expect(isSessionError(await rejection(store.get(corrupt)), 'ERR_CORRUPT_RECORD')).toBe(true);
      expect(await store.delete(corrupt)).toBe(false);

      expect(await store.delete(live)).toBe(true);
      expect(await store.get(live)).toBeUndefined();
    } finally {
      await store.close();
    }
  });

  it('a syncReads that is not a boolean is a TypeError and leaves the directory free', async () => {
    const path = freshPath();
    const options = { path, syncReads: 'yes' } as unknown as { path: string };
    await expect(LevelStore.open(options)).rejects.toThrow(TypeError);
    const store = await LevelStore.open({ path });
    await store.close();
  });

  it('concurrent writes to many ids, committed together, each keep their record and one index entry', async () => {
    const path = freshPath();
    const start = Date.now();
    const ids = Array.from({ length: 300 }, () => generateSessionId());
    const store = await LevelStore.open({ path });
    await Promise.all(ids.map((id, i) => store.set(id, record(`v${i}`, start + HOUR_MS + i))));
    // Touch a third, delete a third and overwrite a third, all in flight at once.
    const results = await Promise.all(
      ids.map((id, i) =>
        i % 3 === 0
          ? store.touch(id, start + 2 * HOUR_MS + i)
          : i % 3 === 1
            ? store.delete(id)
            : store.set(id, record(`w${i}`, start + 3 * HOUR_MS + i), { only: 'present' }),
      ),
    );
    expect(results.every((result) => result === true)).toBe(true);
    await store.close();

    const reopened = await LevelStore.open({ path });
    try {
      const kept = ids.filter((_, i) => i % 3 !== 1);
      expect((await indexedIds(reopened)).sort()).toEqual([...kept].sort());
      for (const [i, id] of ids.entries()) {
        const found = await reopened.get(id);
        if (i % 3 === 0) expect(found?.expiresAt).toBe(start + 2 * HOUR_MS + i);
        if (i % 3 === 1) expect(found).toBeUndefined();
        if (i % 3 === 2) expect(text(found)).toBe(`w${i}`);
      }
      expect(await reopened.sweep({ now: start + 4 * HOUR_MS })).toMatchObject({
        removed: kept.length,
        done: true,
      });
    } finally {
      await reopened.close();
    }
  });

  it('writes waiting to be committed together all reject with ERR_STORE_IO when the database closes', async () => {
    const db = new ClassicLevel(freshPath());
    await db.open();
    const store = await LevelStore.open({ db });
    const writes = Array.from({ length: 20 }, (_, i) =>
      rejection(store.set(generateSessionId(), record(`v${i}`))),
    );
    const closing = db.close();
    for (const error of await Promise.all(writes)) {
      expect(isSessionError(error, 'ERR_STORE_IO')).toBe(true);
    }
    await closing;
    await store.close();
  });
});

describe('LevelStore: closed', () => {
  it('repairIndex rejects with ERR_STORE_CLOSED after close()', async () => {
    const store = await LevelStore.open({ path: freshPath() });
    await store.close();
    expect(isSessionError(await rejection(store.repairIndex()), 'ERR_STORE_CLOSED')).toBe(true);
  });
});
