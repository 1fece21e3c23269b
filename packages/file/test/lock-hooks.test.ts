import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSessionId, type LockedRecord, SessionManager } from '@sessile/core';
import { FileStore, SHARD_LENGTH } from '@sessile/file';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { codeOf, HOUR_MS, recordOf, textOf } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'sessile-file-lock-hooks-'));
afterAll(() => rmSync(root, { recursive: true, force: true }), 120_000);

const stores: FileStore[] = [];
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
});

let directories = 0;
async function openStore(path = join(root, `store-${++directories}`)): Promise<FileStore> {
  const store = await FileStore.open({ path });
  stores.push(store);
  return store;
}

function leaseFileOf(store: FileStore, id: string): string {
  return join(store.path, '.locks', id.slice(0, SHARD_LENGTH), id);
}

function acquireAndGet(store: FileStore, id: string, options = {}): Promise<LockedRecord> {
  const { acquireAndGet } = store.locks;
  if (acquireAndGet === undefined) throw new Error('FileStore locks offer no acquireAndGet');
  return acquireAndGet(id, options);
}

describe('a lock that loads its record (acquireAndGet)', () => {
  it('resolves the record a get made after the claim returns: live, absent, expired', async () => {
    const store = await openStore();
    const live = generateSessionId();
    const expired = generateSessionId();
    await store.set(live, recordOf('live'));
    await store.set(expired, recordOf('old', Date.now() + 30));
    await new Promise((resolve) => setTimeout(resolve, 60));
    for (const id of [live, expired, generateSessionId()]) {
      const { lock, record } = await acquireAndGet(store, id, { leaseMs: 60_000 });
      expect(record).toEqual(await store.get(id));
      const lease = JSON.parse(readFileSync(leaseFileOf(store, id), 'utf8'));
      expect(lease.token).toBe(lock.token);
      await lock.release();
    }
    expect(textOf((await acquireAndGet(store, live)).record)).toBe('live');
  });

  it('reads a write another process made before it freed the lock', async () => {
    const holder = await openStore();
    const waiter = await openStore(holder.path);
    const id = generateSessionId();
    await holder.set(id, recordOf('first'));
    const { lock } = await acquireAndGet(holder, id, { leaseMs: 60_000 });
    const waiting = acquireAndGet(waiter, id, { waitMs: 30_000, leaseMs: 60_000 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await holder.set(id, recordOf('second'), { lock, only: 'present' });
    await lock.release();
    const next = await waiting;
    expect(textOf(next.record)).toBe('second');
    await next.lock.release();
  });

  it('rejects a corrupt record with ERR_CORRUPT_RECORD and frees the lease it took', async () => {
    const store = await openStore();
    const id = generateSessionId();
    await store.set(id, recordOf('fine'));
    const file = join(store.path, id.slice(0, SHARD_LENGTH), id);
    writeFileSync(file, readFileSync(file).subarray(0, 30));
    expect(await codeOf(acquireAndGet(store, id, { waitMs: 0 }))).toBe('ERR_CORRUPT_RECORD');
    expect(existsSync(leaseFileOf(store, id))).toBe(false);
    const lock = await store.locks.acquire(id, { waitMs: 0 });
    await lock.release();
  });
});

describe('a fenced write that frees its lock (release)', () => {
  it('set, touch and delete free the lease once written; a later release resolves', async () => {
    const store = await openStore();
    const writes: Array<
      (id: string, options: Parameters<FileStore['set']>[2]) => Promise<boolean>
    > = [
      (id, options) => store.set(id, recordOf('new'), { ...options, only: 'present' }),
      (id, options) => store.touch(id, Date.now() + 2 * HOUR_MS, options),
      (id, options) => store.delete(id, options),
    ];
    for (const write of writes) {
      const id = generateSessionId();
      await store.set(id, recordOf('old'));
      const lock = await store.locks.acquire(id, { leaseMs: 60_000 });
      expect(existsSync(leaseFileOf(store, id))).toBe(true);
      expect(await write(id, { lock, release: true })).toBe(true);
      expect(existsSync(leaseFileOf(store, id))).toBe(false);
      await lock.release();
      const again = await store.locks.acquire(id, { waitMs: 0 });
      await again.release();
    }
  });

  it('resolves once written when freeing the lease then fails: the write landed, and the lease ends by itself', async () => {
    const id = generateSessionId();
    let breakLease = false;
    const store = await FileStore.open({
      path: join(root, `store-${++directories}`),
      reuseFiles: false,
      renameFile: async (from, to) => {
        await rename(from, to);
        // Once the write has checked its lease and landed, a lease file that cannot be
        // unlinked (here a directory in its place; an I/O error): the release that follows fails.
        if (!breakLease) return;
        rmSync(leaseFileOf(store, id));
        mkdirSync(leaseFileOf(store, id));
      },
    });
    stores.push(store);
    await store.set(id, recordOf('old'));
    const lock = await store.locks.acquire(id, { leaseMs: 60_000 });
    breakLease = true;
    expect(await store.set(id, recordOf('new'), { lock, release: true })).toBe(true);
    expect(textOf(await store.get(id))).toBe('new');
    rmSync(leaseFileOf(store, id), { recursive: true });
  });

  it('frees the lease also when the write finds nothing to change', async () => {
    const store = await openStore();
    const id = generateSessionId();
    const lock = await store.locks.acquire(id, { leaseMs: 60_000 });
    expect(await store.set(id, recordOf('x'), { lock, release: true, only: 'present' })).toBe(
      false,
    );
    expect(existsSync(leaseFileOf(store, id))).toBe(false);
    const again = await store.locks.acquire(id, { waitMs: 0 });
    await again.release();
  });

  it('a waiter in another process gets the key after the write, and reads what it wrote', async () => {
    const holder = await openStore();
    const waiter = await openStore(holder.path);
    const id = generateSessionId();
    await holder.set(id, recordOf('before'));
    const lock = await holder.locks.acquire(id, { leaseMs: 60_000 });
    let granted = false;
    const waiting = acquireAndGet(waiter, id, { waitMs: 30_000, leaseMs: 60_000 }).then((next) => {
      granted = true;
      return next;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(granted).toBe(false);
    await holder.set(id, recordOf('after'), { lock, release: true, only: 'present' });
    const next = await waiting;
    expect(textOf(next.record)).toBe('after');
    await next.lock.release();
  });

  it('a lease lost before the write writes nothing and leaves the new holder its lease', async () => {
    const first = await openStore();
    const second = await openStore(first.path);
    const id = generateSessionId();
    await first.set(id, recordOf('kept'));
    const lost = await first.locks.acquire(id, { leaseMs: 50 });
    await new Promise((resolve) => setTimeout(resolve, 80));
    const current = await second.locks.acquire(id, { waitMs: 5_000, leaseMs: 60_000 });
    for (const write of [
      () => first.set(id, recordOf('late'), { lock: lost, release: true, only: 'present' }),
      () => first.touch(id, Date.now() + 5 * HOUR_MS, { lock: lost, release: true }),
      () => first.delete(id, { lock: lost, release: true }),
    ]) {
      expect(await codeOf(write())).toBe('ERR_LOCK_LOST');
    }
    const record = await first.get(id);
    expect(textOf(record)).toBe('kept');
    expect(record?.expiresAt).toBeLessThan(Date.now() + 2 * HOUR_MS);
    expect(JSON.parse(readFileSync(leaseFileOf(first, id), 'utf8')).token).toBe(current.token);
    await current.release();
  });

  it('through SessionManager: open, change, commit leaves the record saved and no lease behind', async () => {
    const store = await openStore();
    const other = await openStore(store.path);
    const manager = new SessionManager<{ count?: number }>({ store });
    const otherManager = new SessionManager<{ count?: number }>({ store: other });
    const created = await manager.open(undefined);
    created.data.count = 1;
    expect(await created.commit()).toBe('saved');
    for (let round = 0; round < 4; round++) {
      const session = await (round % 2 === 0 ? otherManager : manager).open(created.id);
      session.data.count = (session.data.count ?? 0) + 1;
      expect(await session.commit()).toBe('saved');
      expect(existsSync(leaseFileOf(store, created.id))).toBe(false);
    }
    const last = await manager.open(created.id);
    expect(last.data.count).toBe(5);
    expect(await last.commit()).toBe('unchanged');
    await manager.close();
    await otherManager.close();
  });
});
