import { isSessionError, type SessionStore } from '@sessile/core';
import { describe, expect, it } from 'vitest';
import { decodeValue, delay, expectCode, newId, record, withStore } from '../helpers.js';
import type { ConformanceOptions } from '../options.js';

/** One locked read-modify-write: the cycle that loses updates without a lock. */
export async function lockedIncrement(store: SessionStore, id: string): Promise<void> {
  const lock = await store.locks.acquire(id, { waitMs: 120_000, leaseMs: 60_000 });
  try {
    const current = await store.get(id);
    const { n } = (current === undefined ? { n: 0 } : decodeValue(current.data)) as { n: number };
    // Yield between read and write so an unlocked store would interleave and lose updates.
    await new Promise((resolve) => setImmediate(resolve));
    await store.set(id, record({ n: n + 1 }));
  } finally {
    await lock.release();
  }
}

export function lockTests(options: ConformanceOptions): void {
  const scale = options.timeScale ?? 1;
  const test = (name: string, body: Parameters<typeof withStore>[1]) =>
    it(name, () => withStore(options, body), 180_000 * scale);

  describe('locks', () => {
    test('200 concurrent locked increments of one session end at exactly 200', async (store) => {
      const id = newId();
      await store.set(id, record({ n: 0 }));
      await Promise.all(Array.from({ length: 200 }, () => lockedIncrement(store, id)));
      expect(decodeValue((await store.get(id))?.data ?? new Uint8Array())).toEqual({ n: 200 });
    });

    test('an acquire that waits past waitMs rejects with ERR_LOCK_TIMEOUT', async (store) => {
      const id = newId();
      const held = await store.locks.acquire(id, { leaseMs: 60_000 });
      await expectCode(store.locks.acquire(id, { waitMs: 0 }), 'ERR_LOCK_TIMEOUT');
      await expectCode(store.locks.acquire(id, { waitMs: 100 }), 'ERR_LOCK_TIMEOUT');
      await held.release();
      const next = await store.locks.acquire(id, { waitMs: 0 });
      await next.release();
    });

    test('a takeover after the lease ends is reported to the old holder', async (store) => {
      const id = newId();
      const old = await store.locks.acquire(id, { leaseMs: 300 * scale });
      const next = await store.locks.acquire(id, { waitMs: 30_000 * scale, leaseMs: 60_000 });
      // The old holder learns it at its next call at the latest, and its signal says so too.
      await expectCode(old.release(), 'ERR_LOCK_LOST');
      await expectCode(old.extend(1000), 'ERR_LOCK_LOST');
      const taken = await store.locks.acquire(id, { waitMs: 0 }).then(
        async (lock) => {
          await lock.release();
          return true;
        },
        (error: unknown) => {
          if (isSessionError(error, 'ERR_LOCK_TIMEOUT')) return false;
          throw error;
        },
      );
      expect(
        taken,
        "the old holder's release() and extend() must leave the new holder's lock as it was, but another acquire got the lock",
      ).toBe(false);
      expect(old.signal.aborted).toBe(true);
      expect(isSessionError(old.signal.reason, 'ERR_LOCK_LOST')).toBe(true);
      expect(next.signal.aborted).toBe(false);
      await next.release();
    });

    test('extend keeps the lock past its first lease', async (store) => {
      const id = newId();
      const lock = await store.locks.acquire(id, { leaseMs: 400 * scale });
      await lock.extend(60_000);
      expect(lock.expiresAt).toBeGreaterThan(Date.now() + 30_000);
      await expectCode(store.locks.acquire(id, { waitMs: 1200 * scale }), 'ERR_LOCK_TIMEOUT');
      expect(lock.signal.aborted).toBe(false);
      await lock.release();
    });

    test('tokens are unique and release is idempotent', async (store) => {
      const tokens = new Set<string>();
      const id = newId();
      for (let i = 0; i < 20; i++) {
        const lock = await store.locks.acquire(id, { waitMs: 10_000 });
        tokens.add(lock.token);
        await lock.release();
        await lock.release();
      }
      const other = await store.locks.acquire(newId());
      tokens.add(other.token);
      await other.release();
      expect(tokens.size).toBe(21);
      const again = await store.locks.acquire(id, { waitMs: 0 });
      await again.release();
    });

    test('await using releases the lock at the end of the block', async (store) => {
      const id = newId();
      {
        await using lock = await store.locks.acquire(id);
        expect(lock.signal.aborted).toBe(false);
      }
      const again = await store.locks.acquire(id, { waitMs: 0 });
      await again.release();
    });

    test('waiters in one process get the lock in arrival order', async (store) => {
      const id = newId();
      const held = await store.locks.acquire(id, { leaseMs: 60_000 });
      const order: number[] = [];
      const waiters = Array.from({ length: 8 }, (_, n) =>
        store.locks.acquire(id, { waitMs: 60_000 * scale }).then(async (lock) => {
          order.push(n);
          // Yield while holding, so a later waiter could overtake if the queue were not fair.
          await delay(2);
          await lock.release();
        }),
      );
      await delay(20);
      await held.release();
      await Promise.all(waiters);
      expect(order, 'local waiters must be served first come, first served').toEqual([
        0, 1, 2, 3, 4, 5, 6, 7,
      ]);
    });

    test('lock calls with bad arguments reject instead of throwing', async (store) => {
      // Past 2^31 - 1 ms, setTimeout fires at once: such a wait or lease would end at once.
      const calls: Array<[string, () => Promise<unknown>]> = [
        ['acquire of a bad id', () => store.locks.acquire('../../etc/passwd')],
        ['acquire with leaseMs 0', () => store.locks.acquire(newId(), { leaseMs: 0 })],
        ['acquire with waitMs -1', () => store.locks.acquire(newId(), { waitMs: -1 })],
        ['acquire with leaseMs 2 ** 31', () => store.locks.acquire(newId(), { leaseMs: 2 ** 31 })],
        ['acquire with waitMs 2 ** 31', () => store.locks.acquire(newId(), { waitMs: 2 ** 31 })],
      ];
      const held = await store.locks.acquire(newId(), { leaseMs: 60_000 });
      calls.push(
        ['extend(2 ** 31)', () => held.extend(2 ** 31)],
        ['extend(0)', () => held.extend(0)],
      );
      for (const [name, call] of calls) {
        let promise: Promise<unknown> | undefined;
        expect(() => {
          promise = call();
        }, `${name} must return a promise that rejects, not throw`).not.toThrow();
        const outcome = await (promise as Promise<unknown>).then(
          async (value) => {
            if (typeof (value as { release?: unknown })?.release === 'function') {
              await (value as { release(): Promise<void> }).release();
            }
            return 'resolved';
          },
          () => 'rejected',
        );
        expect(outcome, `${name} must reject`).toBe('rejected');
      }
      expect(held.signal.aborted, 'a refused extend() leaves the lock held').toBe(false);
      await held.release();
      await expectCode(store.locks.acquire('../../etc/passwd'), 'ERR_INVALID_SESSION_ID');
    });

    test('aborting a waiting acquire rejects it with the signal reason', async (store) => {
      const id = newId();
      const held = await store.locks.acquire(id, { leaseMs: 60_000 });
      const controller = new AbortController();
      const waiting = store.locks.acquire(id, { waitMs: 60_000, signal: controller.signal });
      await delay(20);
      const reason = new Error('request aborted');
      controller.abort(reason);
      await expect(waiting).rejects.toBe(reason);
      await held.release();
      const next = await store.locks.acquire(id, { waitMs: 0 });
      await next.release();
    });
  });
}
