import { fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isSessionError, manual, SessionManager } from '@sessile/core';
import { SqliteStore, type SqliteStoreOptions } from '@sessile/sqlite';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HOUR_MS, idOf, record, textOf } from './helpers.js';

const COUNTER = fileURLToPath(new URL('./fixtures/counter.mjs', import.meta.url));

let dir = '';
let path = '';
const cleanups: Array<() => unknown> = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sessile-sqlite-locked-'));
  path = join(dir, 'sessions.db');
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  rmSync(dir, { recursive: true, force: true });
});

async function openStore(options: Partial<SqliteStoreOptions> = {}): Promise<SqliteStore> {
  const store = await SqliteStore.open({ path, ...options });
  cleanups.push(() => store.close());
  return store;
}

function openDatabase(): Database.Database {
  const db = new Database(path);
  cleanups.push(() => db.close());
  return db;
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (error) {
    expect(isSessionError(error), String(error)).toBe(true);
    return (error as { code: string }).code;
  }
  return undefined;
}

/** The lock table's rows, read through a connection of the test's own. */
function lockRows(db: Database.Database): Array<{ id: string; token: string }> {
  return db.prepare('SELECT id, token FROM sessions_locks ORDER BY id').all() as Array<{
    id: string;
    token: string;
  }>;
}

/**
 * Empties the WAL and pins it with an open read transaction, so no checkpoint copies or rewinds
 * it and every commit after this stays in the file for `commitsInWal`.
 */
function pinEmptyWal(probe: Database.Database): void {
  probe.pragma('wal_checkpoint(TRUNCATE)');
  probe.exec('BEGIN');
  probe.prepare('SELECT count(*) FROM sessions').get();
}

/** Commits in the WAL: frames of the current salt whose header records the database size. */
function commitsInWal(): number {
  const wal = readFileSync(`${path}-wal`);
  if (wal.length < 32) return 0;
  const pageBytes = wal.readUInt32BE(8);
  const salts = [wal.readUInt32BE(16), wal.readUInt32BE(20)];
  let commits = 0;
  for (let at = 32; at + 24 + pageBytes <= wal.length; at += 24 + pageBytes) {
    if (wal.readUInt32BE(at + 8) !== salts[0] || wal.readUInt32BE(at + 12) !== salts[1]) break;
    if (wal.readUInt32BE(at + 4) !== 0) commits++;
  }
  return commits;
}

describe('a locked request', { timeout: 60_000 }, () => {
  it('is two commits: the claim that reads the session, then the write that frees the lock', async () => {
    const store = await openStore();
    const manager = new SessionManager({ store, cleanup: manual() });
    const created = await manager.open();
    created.data.n = 1;
    await created.commit();
    const probe = openDatabase();
    pinEmptyWal(probe);

    const opened = await manager.open(created.id);
    expect(opened.id).toBe(created.id);
    expect(opened.data).toEqual({ n: 1 });
    opened.data.n = 2;
    expect(await opened.commit()).toBe('saved');
    expect(commitsInWal()).toBe(2);
    probe.exec('COMMIT');
    expect(lockRows(probe)).toEqual([]);
    // The lock is free for the next acquirer at once, without waiting for a lease to end.
    const next = await store.locks.acquire(created.id, { waitMs: 0 });
    await next.release();
    expect((await manager.open(created.id)).data).toEqual({ n: 2 });
  });

  for (const durability of ['normal', 'full'] as const) {
    it(`a write with release: true frees the lease in its own transaction; a waiter gets the key and reads it (${durability})`, async () => {
      const store = await openStore({ durability });
      const waiterStore = await openStore({ durability });
      const probe = openDatabase();
      const id = idOf(`release-${durability}`);
      await store.set(id, record('1'));
      const held = await store.locks.acquireAndGet?.(id);
      if (held === undefined) throw new Error('SqliteStore offers acquireAndGet');
      expect(textOf(held.record?.data)).toBe('1');
      expect(lockRows(probe).map((row) => row.id)).toEqual([id]);

      // A store on another connection waits, as another process would.
      const waiting = waiterStore.locks.acquireAndGet?.(id, { waitMs: 30_000 });
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(
        await store.set(id, record('2'), { lock: held.lock, only: 'present', release: true }),
      ).toBe(true);
      const next = await waiting;
      expect(textOf(next?.record?.data)).toBe('2');
      expect(lockRows(probe).map((row) => row.id)).toEqual([id]);
      expect(
        await waiterStore.touch(id, Date.now() + HOUR_MS, { lock: next?.lock, release: true }),
      ).toBe(true);
      expect(lockRows(probe)).toEqual([]);

      const last = await store.locks.acquire(id, { waitMs: 0 });
      expect(await store.delete(id, { lock: last, release: true })).toBe(true);
      expect(lockRows(probe)).toEqual([]);
      expect(await store.get(id)).toBeUndefined();
    });
  }

  it('a write with release: true that changes nothing still frees the lease', async () => {
    const store = await openStore();
    const probe = openDatabase();
    const id = idOf('nothing');
    const lock = await store.locks.acquire(id);
    expect(await store.set(id, record('x'), { lock, only: 'present', release: true })).toBe(false);
    expect(lockRows(probe)).toEqual([]);
    expect(await store.get(id)).toBeUndefined();
    const next = await store.locks.acquire(id, { waitMs: 0 });
    await next.release();
  });

  it('a lost lease writes nothing with release: true, and the new holder keeps its lock', async () => {
    const store = await openStore();
    const probe = openDatabase();
    const id = idOf('lost');
    await store.set(id, record('before'));
    const lock = await store.locks.acquire(id, { leaseMs: 60_000 });
    // Another process took the lock over; this process's own view still says held.
    probe.prepare("UPDATE sessions_locks SET token = 'another-process' WHERE id = ?").run(id);
    const stale = { lock, release: true } as const;
    expect(await codeOf(store.set(id, record('stale'), stale))).toBe('ERR_LOCK_LOST');
    expect(await codeOf(store.touch(id, Date.now() + 2 * HOUR_MS, stale))).toBe('ERR_LOCK_LOST');
    expect(await codeOf(store.delete(id, stale))).toBe('ERR_LOCK_LOST');
    expect(textOf((await store.get(id))?.data)).toBe('before');
    expect(lockRows(probe)).toEqual([{ id, token: 'another-process' }]);
  });

  it('acquireAndGet reads what a get after the claim would: live, expired, missing', async () => {
    const store = await openStore();
    const live = idOf('live');
    const expired = idOf('expired');
    await store.set(live, record('live'));
    await store.set(expired, record('old', Date.now() + 30));
    await new Promise((resolve) => setTimeout(resolve, 60));
    for (const [id, text] of [
      [live, 'live'],
      [expired, undefined],
      [idOf('missing'), undefined],
    ] as const) {
      const locked = await store.locks.acquireAndGet?.(id, { waitMs: 0 });
      expect(textOf(locked?.record?.data), id).toBe(text);
      expect(textOf((await store.get(id))?.data), id).toBe(text);
      await locked?.lock.release();
    }
  });

  it('acquireAndGet of a corrupt record rejects with ERR_CORRUPT_RECORD and holds no lease', async () => {
    const store = await openStore();
    const probe = openDatabase();
    const id = idOf('corrupt');
    await store.set(id, record('fine'));
    probe.prepare("UPDATE sessions SET data = 'not a blob' WHERE id = ?").run(id);
    const acquiring = store.locks.acquireAndGet?.(id, { waitMs: 0 });
    expect(await codeOf(acquiring ?? Promise.resolve())).toBe('ERR_CORRUPT_RECORD');
    expect(lockRows(probe)).toEqual([]);
    const lock = await store.locks.acquire(id, { waitMs: 0 });
    await lock.release();
  });

  it('3 processes adding to one counter through claim-with-read and release-with-write lose no update', async () => {
    const id = idOf('counter');
    const store = await openStore();
    await store.set(id, record('0'));
    const rounds = 40;
    const children = [0, 1].map(
      () =>
        new Promise<void>((resolve, reject) => {
          const child = fork(COUNTER, [path, id, String(rounds)], {
            stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
          });
          cleanups.push(() => {
            if (child.exitCode === null) child.kill('SIGKILL');
          });
          let done = false;
          child.on('message', (message: { type: string; message?: string }) => {
            if (message.type === 'done') done = true;
            else reject(new Error(message.message));
          });
          child.on('exit', (code) => {
            if (code === 0 && done) resolve();
            else reject(new Error(`counter child exited with code ${code}`));
          });
        }),
    );
    for (let round = 0; round < rounds; round++) {
      const locked = await store.locks.acquireAndGet?.(id, { waitMs: 60_000 });
      if (locked === undefined) throw new Error('SqliteStore offers acquireAndGet');
      const n = Number(textOf(locked.record?.data));
      const next = record(String(n + 1));
      expect(await store.set(id, next, { lock: locked.lock, only: 'present', release: true })).toBe(
        true,
      );
    }
    await Promise.all(children);
    expect(textOf((await store.get(id))?.data)).toBe(String(3 * rounds));
    expect(lockRows(openDatabase())).toEqual([]);
  }, 120_000);
});
