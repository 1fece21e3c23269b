import { type ChildProcess, fork } from 'node:child_process';
import {
  existsSync,
  readdirSync,
  readFileSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  generateSessionId,
  isSessionError,
  type LockedRecord,
  manual,
  SessionManager,
} from '@sessile/core';
import { GUARD_STALE_MS } from '@sessile/core/store';
import { describe, expect, it } from 'vitest';
import { DbmStore, sessionStripe } from '../src/index.js';
import { useTestPaths } from './helpers.js';

const HOUR_MS = 3_600_000;
/** How long a claim waits for a guard another live process holds (core's HostGuards). */
const GUARD_WAIT_MS = 3 * GUARD_STALE_MS + 5000;
const { newPath, children } = useTestPaths('locked');

function bytes(...values: number[]): Uint8Array {
  return new Uint8Array(values);
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'ok';
  } catch (error) {
    return isSessionError(error) ? error.code : String(error);
  }
}

function acquireAndGet(store: DbmStore, id: string, waitMs = 5000): Promise<LockedRecord> {
  const { acquireAndGet } = store.locks;
  if (acquireAndGet === undefined) throw new Error('DbmStore.locks offers no acquireAndGet');
  return acquireAndGet.call(store.locks, id, { leaseMs: 60_000, waitMs });
}

interface ChildMessage {
  type: string;
  data?: string;
  written?: boolean;
}

function spawnCommitter(path: string, id: string): ChildProcess {
  const script = fileURLToPath(new URL('./fixtures/locked-commit.mjs', import.meta.url));
  const child = fork(script, [path, id], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(child);
  return child;
}

function nextMessage(child: ChildProcess, type: string): Promise<ChildMessage> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: ChildMessage) => {
      if (message.type !== type) return;
      child.off('message', onMessage);
      resolve(message);
    };
    child.on('message', onMessage);
    child.once('exit', (code, signal) =>
      reject(new Error(`child exited early (${code ?? signal})`)),
    );
  });
}

describe('DbmStore locked requests: lock and read in one step, write and unlock in one step', () => {
  it('acquireAndGet returns what a get after the lock returns: the record, nothing, or nothing once expired', async () => {
    const store = await DbmStore.open({ path: newPath() });
    try {
      const [live, missing, expired] = [
        generateSessionId(),
        generateSessionId(),
        generateSessionId(),
      ];
      const record = { data: bytes(1, 2, 3), expiresAt: Date.now() + HOUR_MS, owner: 'ada' };
      await store.set(live, record);
      await store.set(expired, { data: bytes(4), expiresAt: Date.now() + 30 });
      await new Promise((resolve) => setTimeout(resolve, 60));

      const locked = await acquireAndGet(store, live);
      expect(locked.record).toEqual(record);
      expect(locked.record).toEqual(await store.get(live));
      // The lock is held: another request for the session waits.
      expect(await codeOf(store.locks.acquire(live, { waitMs: 30 }))).toBe('ERR_LOCK_TIMEOUT');
      await locked.lock.release();

      for (const id of [missing, expired]) {
        const { lock, record: none } = await acquireAndGet(store, id);
        expect(none).toBeUndefined();
        expect(await store.get(id)).toBeUndefined();
        await lock.release();
      }
      expect(store.stats().sessionLocks.acquired).toBe(3);
    } finally {
      await store.close();
    }
  });

  it('a fenced write given release frees the lock with it, and a queued waiter then gets the lock and the write', async () => {
    const store = await DbmStore.open({ path: newPath() });
    try {
      const id = generateSessionId();
      await store.set(id, { data: bytes(1), expiresAt: Date.now() + HOUR_MS });
      const first = await acquireAndGet(store, id);
      const waiter = acquireAndGet(store, id);
      const expiresAt = Date.now() + HOUR_MS;
      expect(
        await store.set(id, { data: bytes(2), expiresAt }, { lock: first.lock, release: true }),
      ).toBe(true);
      const second = await waiter;
      expect(second.record).toEqual({ data: bytes(2), expiresAt });
      // The first holder's lock is released, not lost: a later release is a no-op.
      await first.lock.release();
      expect(first.lock.signal.aborted).toBe(false);
      // touch and delete free it the same way.
      expect(await store.touch(id, expiresAt + 1000, { lock: second.lock, release: true })).toBe(
        true,
      );
      const third = await acquireAndGet(store, id, 0);
      expect(third.record?.expiresAt).toBe(expiresAt + 1000);
      expect(await store.delete(id, { lock: third.lock, release: true })).toBe(true);
      const fourth = await acquireAndGet(store, id, 0);
      expect(fourth.record).toBeUndefined();
      // A write that finds nothing to update still frees the lock.
      expect(
        await store.set(
          id,
          { data: bytes(3), expiresAt },
          { lock: fourth.lock, only: 'present', release: true },
        ),
      ).toBe(false);
      const fifth = await store.locks.acquire(id, { waitMs: 0 });
      await fifth.release();
    } finally {
      await store.close();
    }
  });

  it('a fenced write whose stripe was taken from under it writes nothing and frees nothing', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path, stripes: 8 });
    const other = await DbmStore.open({ path, stripes: 8 });
    try {
      const id = generateSessionId();
      const before = { data: bytes(1), expiresAt: Date.now() + HOUR_MS };
      await store.set(id, before);
      // A short lease: its last half is checked against the lease file, not this process's memory.
      const lock = await store.locks.acquire(id, { leaseMs: 1500 });
      unlinkSync(join(`${path}.locks`, 'stripes', `${sessionStripe(id, 8)}.lock`));
      const thief = await other.locks.acquire(id, { leaseMs: 60_000, waitMs: 0 });
      await new Promise((resolve) => setTimeout(resolve, 900));
      const after = { data: bytes(2), expiresAt: Date.now() + HOUR_MS };
      expect(await codeOf(store.set(id, after, { lock, release: true }))).toBe('ERR_LOCK_LOST');
      expect(await store.get(id)).toEqual(before);
      // The stripe still belongs to the other instance.
      expect(await codeOf(store.locks.acquire(id, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
      await thief.release();
    } finally {
      await other.close();
      await store.close();
    }
  });

  it('a fenced write well inside its lease writes nothing once its stripe file was removed by hand and another process took the stripe', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path, stripes: 8 });
    try {
      const id = generateSessionId();
      const before = { data: bytes(1), expiresAt: Date.now() + HOUR_MS };
      await store.set(id, before);
      const lock = await store.locks.acquire(id, { leaseMs: 60_000 });
      const stripeFile = join(`${path}.locks`, 'stripes', `${sessionStripe(id, 8)}.lock`);
      // An operator removing what looks like a stuck lock.
      unlinkSync(stripeFile);
      const script = fileURLToPath(new URL('./fixtures/lock-holder.mjs', import.meta.url));
      const holder = fork(script, [path, id, '8', '60000'], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      children.push(holder);
      await nextMessage(holder, 'held');
      const holdersLease = readFileSync(stripeFile, 'utf8');

      const after = { data: bytes(2), expiresAt: Date.now() + HOUR_MS };
      expect(await codeOf(store.set(id, after, { lock }))).toBe('ERR_LOCK_LOST');
      expect(await codeOf(store.touch(id, Date.now() + 2 * HOUR_MS, { lock }))).toBe(
        'ERR_LOCK_LOST',
      );
      expect(await codeOf(store.delete(id, { lock }))).toBe('ERR_LOCK_LOST');
      expect(await store.get(id)).toEqual(before);
      expect(await codeOf(lock.release())).toBe('ERR_LOCK_LOST');
      // The other process still holds the stripe.
      expect(readFileSync(stripeFile, 'utf8')).toBe(holdersLease);
      expect(await codeOf(store.locks.acquire(id, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
    } finally {
      await store.close();
    }
  }, 30_000);

  it('a stripe a commit freed is free for another instance at once, and its own again once that instance lets go', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path, stripes: 8 });
    const other = await DbmStore.open({ path, stripes: 8 });
    try {
      const id = generateSessionId();
      const expiresAt = Date.now() + HOUR_MS;
      for (let round = 1; round <= 2; round++) {
        const { lock } = await acquireAndGet(store, id);
        expect(await codeOf(other.locks.acquire(id, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
        await store.set(id, { data: bytes(round), expiresAt }, { lock, release: true });
      }
      const taken = await acquireAndGet(other, id, 0);
      expect(taken.record).toEqual({ data: bytes(2), expiresAt });
      expect(await codeOf(acquireAndGet(store, id, 0))).toBe('ERR_LOCK_TIMEOUT');
      await other.set(id, { data: bytes(3), expiresAt }, { lock: taken.lock, release: true });
      const back = await acquireAndGet(store, id, 0);
      expect(back.record).toEqual({ data: bytes(3), expiresAt });
      expect(await codeOf(other.locks.acquire(id, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
      await store.set(id, { data: bytes(4), expiresAt }, { lock: back.lock, release: true });
    } finally {
      await other.close();
      await store.close();
    }
    // Closed stores leave no stripe lease behind, released or not.
    expect(readdirSync(join(`${path}.locks`, 'stripes'))).toEqual([]);
  });

  it('across processes: a lock read in one step blocks another process, whose waiter gets the lock and the write once the commit frees it', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path });
    try {
      const id = generateSessionId();
      await store.set(id, { data: bytes(7, 7), expiresAt: Date.now() + HOUR_MS });
      const child = spawnCommitter(path, id);
      const held = await nextMessage(child, 'held');
      expect(held.data).toBe('0707');
      expect(await codeOf(store.locks.acquire(id, { waitMs: 100 }))).toBe('ERR_LOCK_TIMEOUT');

      const waiter = acquireAndGet(store, id, 30_000);
      const committed = nextMessage(child, 'committed');
      child.send({ type: 'commit', data: '0909' });
      expect((await committed).written).toBe(true);
      const { lock, record } = await waiter;
      expect(record?.data).toEqual(bytes(9, 9));
      // The child is alive and never released: its write freed the lock.
      expect(child.exitCode).toBeNull();
      await lock.release();
    } finally {
      await store.close();
    }
  }, 60_000);

  it('SessionManager over DbmStore: parallel requests on one session lose no update', async () => {
    const store = await DbmStore.open({ path: newPath() });
    const manager = new SessionManager({ store, cleanup: manual() });
    try {
      const created = await manager.open();
      created.data.counter = 0;
      await created.commit();
      await Promise.all(
        Array.from({ length: 20 }, async () => {
          const session = await manager.open(created.id);
          session.data.counter = (session.data.counter as number) + 1;
          await session.commit();
        }),
      );
      const final = await manager.open(created.id);
      expect(final.data.counter).toBe(20);
      await final.commit();
      // Every commit freed its lock.
      expect(store.locks.size).toBe(0);
      expect(
        await codeOf(store.locks.acquire(created.id, { waitMs: 0 }).then((l) => l.release())),
      ).toBe('ok');
    } finally {
      await manager.close();
      await store.close();
    }
  });

  it("close() ends an acquire's wait on a stripe guard another live process holds, without waiting the guard out", async () => {
    const path = newPath();
    const store = await DbmStore.open({ path });
    const id = generateSessionId();
    // A lease on the id's stripe that ran out, as a process that stopped leaves it: taking it
    // over needs the stripe's guard, which a live process holds, its heartbeat kept fresh.
    const stripe = join(
      `${path}.locks`,
      'stripes',
      `${sessionStripe(id, store.locks.stripes)}.lock`,
    );
    const lease = { token: 'ended', expiresAt: Date.now() - 1000, pid: 1, host: hostname() };
    writeFileSync(stripe, JSON.stringify(lease));
    const guard = `${stripe}.lock`;
    writeFileSync(guard, '{"pid":1}');
    const heartbeat = setInterval(() => utimesSync(guard, new Date(), new Date()), 100);
    try {
      const waiting = codeOf(store.locks.acquire(id, { waitMs: 120_000 }));
      await sleep(200);
      // Before close() reached the stripes' guards, the claim waited for the guard through
      // close() until its own deadline (GUARD_WAIT_MS), and close() with it; now a second
      // after close() begins. The race is against that deadline, less 2 s, not a speed.
      const closed = store.close().then(() => 'closed');
      const guardWaitOut = sleep(GUARD_WAIT_MS - 2000).then(() => 'waited out the guard');
      expect(await Promise.race([closed, guardWaitOut])).toBe('closed');
      expect(await waiting).toBe('ERR_STORE_CLOSED');
      expect(existsSync(guard)).toBe(true);
    } finally {
      clearInterval(heartbeat);
      unlinkSync(guard);
    }
  }, 60_000);
});
