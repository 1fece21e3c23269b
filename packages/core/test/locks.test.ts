import { describe, expect, it } from 'vitest';
import { isSessionError, MemoryStore } from '../src/index.js';
import {
  claimThenRead,
  KeyedLocks,
  LeaseLocks,
  MemoryLeases,
  StripedLocks,
  stripeOf,
} from '../src/store.js';
import { codeOf, leaseLock } from './helpers.js';

const idA = 'aaaaaaaaaaaaaaaaaaaa';
const idB = 'bbbbbbbbbbbbbbbbbbbb';

describe('KeyedLocks', () => {
  it('grants waiters in arrival order', async () => {
    const locks = new KeyedLocks();
    const first = await locks.acquire(idA);
    const order: number[] = [];
    const waiters = [1, 2, 3].map((n) =>
      locks.acquire(idA).then(async (lock) => {
        order.push(n);
        await lock.release();
      }),
    );
    await first.release();
    await Promise.all(waiters);
    expect(order).toEqual([1, 2, 3]);
  });

  it('never makes different ids wait for each other', async () => {
    const locks = new KeyedLocks();
    const a = await locks.acquire(idA);
    const b = await locks.acquire(idB, { waitMs: 0 });
    await Promise.all([a.release(), b.release()]);
  });

  it('frees per-id state once the last holder and waiter leave', async () => {
    const locks = new KeyedLocks();
    const ids = Array.from({ length: 500 }, (_, n) => `session-${String(n).padStart(12, '0')}`);
    const held = await Promise.all(ids.map((id) => locks.acquire(id)));
    expect(locks.size).toBe(500);
    const timedOut = await codeOf(locks.acquire(ids[0] as string, { waitMs: 5 }));
    expect(timedOut).toBe('ERR_LOCK_TIMEOUT');
    await Promise.all(held.map((lock) => lock.release()));
    expect(locks.size).toBe(0);
  });

  it('a waiter that timed out or aborted leaves the queue without taking the lock', async () => {
    const locks = new KeyedLocks();
    const holder = await locks.acquire(idA);
    const controller = new AbortController();
    const aborted = locks.acquire(idA, { signal: controller.signal });
    const timedOut = locks.acquire(idA, { waitMs: 10 });
    controller.abort(new Error('client went away'));
    await expect(aborted).rejects.toThrow('client went away');
    expect(await codeOf(timedOut)).toBe('ERR_LOCK_TIMEOUT');
    await holder.release();
    const next = await locks.acquire(idA, { waitMs: 0 });
    await next.release();
    expect(locks.size).toBe(0);
  });

  it('hands a queue over across event-loop turns, so timers and other work still run', async () => {
    const locks = new KeyedLocks();
    const first = await locks.acquire(idA);
    let granted = 0;
    let grantedWhenTimerFired: number | undefined;
    const waiters = Array.from({ length: 200 }, () =>
      locks.acquire(idA).then(async (lock) => {
        granted++;
        await lock.release();
      }),
    );
    setTimeout(() => {
      grantedWhenTimerFired = granted;
    }, 0);
    await first.release();
    await Promise.all(waiters);
    expect(granted).toBe(200);
    expect(grantedWhenTimerFired).toBeDefined();
    expect(grantedWhenTimerFired).toBeLessThan(200);
  });

  it('an expired lease passes the lock to the next waiter and tells the old holder', async () => {
    const locks = new KeyedLocks();
    const old = await locks.acquire(idA, { leaseMs: 50 });
    const lostReasons: unknown[] = [];
    old.signal.addEventListener('abort', () => lostReasons.push(old.signal.reason));
    const next = await locks.acquire(idA, { waitMs: 5000 });
    expect(lostReasons).toHaveLength(1);
    expect(isSessionError(lostReasons[0], 'ERR_LOCK_LOST')).toBe(true);
    expect(await codeOf(old.release())).toBe('ERR_LOCK_LOST');
    expect(await codeOf(old.release())).toBe('ERR_LOCK_LOST');
    await next.release();
  });

  it('a lease found lost by extend (the event loop stalled past its end) frees the id for the next acquire', async () => {
    const locks = new KeyedLocks();
    const old = leaseLock(await locks.acquire(idA, { leaseMs: 50 }));
    // A stall longer than the lease: the extend runs before the lease-end timer can.
    const until = Date.now() + 120;
    while (Date.now() < until) {
      // busy: a long GC pause or a paused container
    }
    expect(await codeOf(old.extend())).toBe('ERR_LOCK_LOST');
    expect(old.lost).toBe(true);
    const next = leaseLock(await locks.acquire(idA, { waitMs: 2000 }));
    expect(next.held).toBe(true);
    await next.release();
    expect(await codeOf(old.release())).toBe('ERR_LOCK_LOST');
  });

  it('a fenced write made once release() was called, before it settled, rejects and writes nothing', async () => {
    const store = new MemoryStore();
    const id = 'fenced-after-release-0001';
    await store.set(id, { data: new Uint8Array([0]), expiresAt: Date.now() + 60_000 });
    const held = await store.locks.acquire(id);
    const next = store.locks.acquire(id, { waitMs: 2000 });
    const released = held.release();
    const stale = store.set(
      id,
      { data: new Uint8Array([1]), expiresAt: Date.now() + 60_000 },
      {
        lock: held,
      },
    );
    expect(await codeOf(stale)).toBe('ERR_LOCK_LOST');
    await released;
    const after = await next;
    expect([...((await store.get(id))?.data ?? [])]).toEqual([0]);
    await after.release();
    await store.close();
  });

  it('a fenced write after a stall past the lease loses the lock for good, so its holder does not release it too', async () => {
    const store = new MemoryStore();
    const id = 'fenced-after-stall-00001';
    const held = leaseLock(await store.locks.acquire(id, { leaseMs: 50 }));
    const until = Date.now() + 120;
    while (Date.now() < until) {
      // busy: the lease-end timer cannot run
    }
    const write = store.set(
      id,
      { data: new Uint8Array([1]), expiresAt: Date.now() + 60_000 },
      {
        lock: held,
      },
    );
    expect(await codeOf(write)).toBe('ERR_LOCK_LOST');
    expect(held.lost).toBe(true);
    expect(await store.get(id)).toBeUndefined();
    const next = leaseLock(await store.locks.acquire(id, { waitMs: 2000 }));
    expect(next.held).toBe(true);
    await next.release();
    await store.close();
  });

  it('close rejects waiting and later acquires with ERR_STORE_CLOSED', async () => {
    const locks = new KeyedLocks();
    const holder = await locks.acquire(idA);
    const waiting = locks.acquire(idA);
    await locks.close();
    expect(await codeOf(waiting)).toBe('ERR_STORE_CLOSED');
    expect(await codeOf(locks.acquire(idB))).toBe('ERR_STORE_CLOSED');
    await holder.release();
  });

  it('rejects misuse with TypeError, never throwing synchronously', async () => {
    const locks = new KeyedLocks();
    const calls = [
      () => locks.acquire(idA, { leaseMs: 0 }),
      () => locks.acquire(idA, { waitMs: -1 }),
      () => locks.acquire(idA, { waitMs: Number.NaN }),
      () => locks.acquire(idA, { waitMs: '5' as unknown as number }),
      () => locks.acquire(idA, 'fast' as never),
    ];
    for (const call of calls) {
      let promise: Promise<unknown> | undefined;
      expect(() => {
        promise = call();
      }).not.toThrow();
      await expect(promise).rejects.toThrow(TypeError);
    }
    for (const badId of ['../etc/passwd', 42]) {
      let promise: Promise<unknown> | undefined;
      expect(() => {
        promise = locks.acquire(badId as string);
      }).not.toThrow();
      expect(await codeOf(promise as Promise<unknown>)).toBe('ERR_INVALID_SESSION_ID');
    }
  });

  it('refuses durations past the timer limit instead of losing the lock at once', async () => {
    const locks = new KeyedLocks();
    await expect(locks.acquire(idA, { leaseMs: 2 ** 31 })).rejects.toThrow(/leaseMs.*2147483647/);
    await expect(locks.acquire(idA, { waitMs: 2 ** 31 })).rejects.toThrow(/waitMs.*2147483647/);
    await expect(locks.acquire(idA, { waitMs: Number.POSITIVE_INFINITY })).rejects.toThrow(
      TypeError,
    );
    const longest = await locks.acquire(idA, { leaseMs: 2 ** 31 - 1 });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(longest.signal.aborted).toBe(false);
    expect(await codeOf(locks.acquire(idA, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
    await expect(longest.extend(2 ** 31)).rejects.toThrow(TypeError);
    await longest.release();
  });

  it('names a misspelt acquire option', async () => {
    const locks = new KeyedLocks();
    await expect(locks.acquire(idA, { waitMS: 5 } as never)).rejects.toThrow(
      /unknown option 'waitMS'; did you mean 'waitMs'/,
    );
  });
});

describe('StripedLocks', () => {
  it('maps ids to stripes with a stable hash', () => {
    expect(stripeOf(idA, 32)).toBe(stripeOf(idA, 32));
    const used = new Set(
      Array.from({ length: 1000 }, (_, n) => stripeOf(`id-${n}-padding-padding`, 32)),
    );
    expect(used.size).toBe(32);
  });

  it('makes unrelated ids that share a stripe wait, and counts the collision', async () => {
    const locks = new StripedLocks({ stripes: 1 });
    const a = await locks.acquire(idA);
    expect(await codeOf(locks.acquire(idB, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
    const waitingB = locks.acquire(idB);
    await a.release();
    const b = await waitingB;
    const waitingA = locks.acquire(idA);
    await b.release();
    await (await waitingA).release();
    expect(locks.stats()).toEqual({ stripes: 1, acquired: 3, waits: 3, collisions: 3 });
  });

  it('does not count a wait on the same id as a collision', async () => {
    const locks = new StripedLocks({ stripes: 8 });
    const first = await locks.acquire(idA);
    const second = locks.acquire(idA);
    await first.release();
    await (await second).release();
    expect(locks.stats()).toMatchObject({ waits: 1, collisions: 0 });
  });

  it('rejects a pool size that is not a positive integer', () => {
    expect(() => new StripedLocks({ stripes: 0 })).toThrow(TypeError);
    expect(() => new StripedLocks({ stripes: 2.5 })).toThrow(TypeError);
  });

  it('names a misspelt option instead of ignoring it', () => {
    expect(() => new StripedLocks({ stripe: 8 } as never)).toThrow(
      new TypeError("StripedLocks: unknown option 'stripe'; did you mean 'stripes'?"),
    );
    expect(() => new StripedLocks(null as never)).toThrow(TypeError);
  });
});

describe('LeaseLocks options', () => {
  it('names a misspelt option, and refuses one of the wrong type', () => {
    expect(() => new LeaseLocks(new MemoryLeases(), { keyof: String } as never)).toThrow(
      new TypeError("LeaseLocks: unknown option 'keyof'; did you mean 'keyOf'?"),
    );
    expect(() => new LeaseLocks(new MemoryLeases(), { keyOf: 'stripe' } as never)).toThrow(
      new TypeError("LeaseLocks: keyOf must be a function, got 'stripe' (a string)"),
    );
    expect(() => new LeaseLocks(new MemoryLeases(), { location: 42 } as never)).toThrow(
      new TypeError('LeaseLocks: location must be a string, got 42'),
    );
  });
});

describe('claimThenRead', () => {
  const claimOf = (token: string) => ({
    key: 'k',
    id: 'session-id-of-sixteen',
    token,
    expiresAt: Date.now() + 60_000,
    waited: false,
  });
  const record = { data: new Uint8Array([1]), expiresAt: Date.now() + 60_000 };

  it('reads once the lease is taken, and never while another holds it', async () => {
    const leases = new MemoryLeases();
    const reads: string[] = [];
    const read = async (id: string) => {
      reads.push(id);
      return record;
    };
    expect(await claimThenRead(leases, claimOf('first'), read)).toEqual({ taken: true, record });
    expect(await claimThenRead(leases, claimOf('second'), read)).toEqual({ taken: false });
    expect(reads).toEqual(['session-id-of-sixteen']);
  });

  it("frees the lease when the read fails, and reports the read's error", async () => {
    const leases = new MemoryLeases();
    const failure = new Error('the record could not be read');
    await expect(
      claimThenRead(leases, claimOf('first'), async () => {
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(leases.claim(claimOf('next'))).toBe(true);
  });
});
