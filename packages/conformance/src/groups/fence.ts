import type { SessionLock, SessionRecord, SessionStore } from '@sessile/core';
import { describe, expect, it } from 'vitest';
import { decodeValue, delay, expectCode, HOUR_MS, newId, record, withStore } from '../helpers.js';
import type { ConformanceOptions } from '../options.js';

export function fenceTests(options: ConformanceOptions): void {
  const scale = options.timeScale ?? 1;
  const test = (name: string, body: Parameters<typeof withStore>[1]) =>
    it(name, () => withStore(options, body), 60_000 * scale);

  describe('fenced writes', () => {
    test('a holder whose lease was taken over cannot set, touch or delete', async (store) => {
      const id = newId();
      await store.set(id, record({ by: 'nobody' }));
      const old = await store.locks.acquire(id, { leaseMs: 200 * scale });
      const next = await store.locks.acquire(id, { waitMs: 30_000 * scale, leaseMs: 60_000 });
      await expectCode(store.set(id, record({ by: 'old' }), { lock: old }), 'ERR_LOCK_LOST');
      await expectCode(store.touch(id, Date.now() + 1000, { lock: old }), 'ERR_LOCK_LOST');
      await expectCode(store.delete(id, { lock: old }), 'ERR_LOCK_LOST');
      expect(decodeValue((await store.get(id))?.data ?? new Uint8Array())).toEqual({
        by: 'nobody',
      });
      expect(await store.set(id, record({ by: 'next' }), { lock: next, only: 'present' })).toBe(
        true,
      );
      expect(decodeValue((await store.get(id))?.data ?? new Uint8Array())).toEqual({ by: 'next' });
      await next.release();
    });

    test('a released lock no longer lets its holder write', async (store) => {
      const id = newId();
      const lock = await store.locks.acquire(id);
      expect(await store.set(id, record({ n: 1 }), { lock })).toBe(true);
      await lock.release();
      await expectCode(store.set(id, record({ n: 2 }), { lock }), 'ERR_LOCK_LOST');
      expect(decodeValue((await store.get(id))?.data ?? new Uint8Array())).toEqual({ n: 1 });
    });

    test('a held lock writes, touches and deletes as an unfenced call would', async (store) => {
      const id = newId();
      const lock = await store.locks.acquire(id);
      expect(
        await store.set(id, record({ n: 1 }), { lock, only: 'absent' }),
        "a locked set with only: 'absent' on an id with no record answers true",
      ).toBe(true);
      expect(
        await store.set(id, record({ n: 2 }), { lock, only: 'absent' }),
        "a locked set with only: 'absent' over a live record answers false",
      ).toBe(false);
      expect(
        await store.touch(id, Date.now() + 60_000, { lock }),
        'a locked touch of a live record answers true',
      ).toBe(true);
      expect(
        await store.delete(id, { lock }),
        'a locked delete of a live record answers true',
      ).toBe(true);
      expect(await store.delete(id, { lock }), 'a locked delete of no record answers false').toBe(
        false,
      );
      await lock.release();
    });

    test('a write waits for nobody else: the next waiter gets the lock only after it', async (store) => {
      const id = newId();
      const lock = await store.locks.acquire(id);
      const order: string[] = [];
      const waiter = store.locks.acquire(id, { waitMs: 30_000 * scale }).then((next) => {
        order.push('next holder');
        return next;
      });
      await delay(5);
      const write = store.set(id, record({ n: 1 }), { lock }).then(() => order.push('write'));
      const released = lock.release();
      await Promise.all([write, released]);
      await (await waiter).release();
      expect(order).toEqual(['write', 'next holder']);
    });

    test('a lock on another id, or a bad lock, is refused with TypeError', async (store) => {
      const id = newId();
      const other = await store.locks.acquire(newId());
      await expect(store.set(id, record({ n: 1 }), { lock: other })).rejects.toThrow(TypeError);
      await expect(store.delete(id, { lock: { id } as unknown as typeof other })).rejects.toThrow(
        TypeError,
      );
      expect(await store.get(id)).toBeUndefined();
      await other.release();
    });
  });

  describe('locked reads and unlocking writes', () => {
    test('a write with release: true writes, and the lock is free for the next acquire', async (store) => {
      const id = newId();
      await store.set(id, record({ n: 0 }));
      const lock = await store.locks.acquire(id);
      expect(await store.set(id, record({ n: 1 }), { lock, only: 'present', release: true })).toBe(
        true,
      );
      await lock.release();
      const next = await store.locks.acquire(id, { waitMs: 0 });
      expect(decodeValue((await store.get(id))?.data ?? new Uint8Array())).toEqual({ n: 1 });
      expect(await store.touch(id, Date.now() + HOUR_MS, { lock: next, release: true })).toBe(true);
      await next.release();
      const last = await store.locks.acquire(id, { waitMs: 0 });
      expect(await store.delete(id, { lock: last, release: true })).toBe(true);
      await last.release();
      expect(await store.get(id)).toBeUndefined();
      await (await store.locks.acquire(id, { waitMs: 0 })).release();
    });

    test('a write with release: true under a lost lease writes nothing and frees nobody else', async (store) => {
      const id = newId();
      await store.set(id, record({ by: 'nobody' }));
      const old = await store.locks.acquire(id, { leaseMs: 200 * scale });
      const next = await store.locks.acquire(id, { waitMs: 30_000 * scale, leaseMs: 60_000 });
      await expectCode(
        store.set(id, record({ by: 'old' }), { lock: old, release: true }),
        'ERR_LOCK_LOST',
      );
      await expectCode(store.delete(id, { lock: old, release: true }), 'ERR_LOCK_LOST');
      expect(decodeValue((await store.get(id))?.data ?? new Uint8Array())).toEqual({
        by: 'nobody',
      });
      // The next holder still holds: nobody else gets the lock, and its own write goes through.
      await expectCode(store.locks.acquire(id, { waitMs: 0 }), 'ERR_LOCK_TIMEOUT');
      expect(await store.set(id, record({ by: 'next' }), { lock: next, only: 'present' })).toBe(
        true,
      );
      await next.release();
    });

    test('release: true without a lock, or not a boolean, is refused with TypeError', async (store) => {
      const id = newId();
      await expect(store.set(id, record({ n: 1 }), { release: true })).rejects.toThrow(TypeError);
      const lock = await store.locks.acquire(id);
      await expect(
        store.touch(id, Date.now(), { lock, release: 'yes' as unknown as boolean }),
      ).rejects.toThrow(TypeError);
      await lock.release();
      expect(await store.get(id)).toBeUndefined();
    });

    test('acquireAndGet, where offered, locks and reads the live record or undefined', async (store) => {
      if (store.locks.acquireAndGet === undefined) return;
      const live = newId();
      const expired = newId();
      await store.set(live, record({ n: 1 }));
      await store.set(expired, record({ n: 2 }, Date.now() - 1));
      const a = await store.locks.acquireAndGet(live);
      expect(decodeValue(a.record?.data ?? new Uint8Array())).toEqual({ n: 1 });
      expect(a.record?.expiresAt).toBe((await store.get(live))?.expiresAt);
      const b = await store.locks.acquireAndGet(expired);
      expect(b.record).toBeUndefined();
      const c = await store.locks.acquireAndGet(newId());
      expect(c.record).toBeUndefined();
      // Each is a real lock.
      await expectCode(store.locks.acquire(live, { waitMs: 0 }), 'ERR_LOCK_TIMEOUT');
      await Promise.all([a.lock.release(), b.lock.release(), c.lock.release()]);
    });

    test('acquireAndGet waits for the holder and reads what its unlocking write stored', async (store) => {
      const id = newId();
      await store.set(id, record({ n: 1 }));
      const holder = await store.locks.acquire(id);
      const next = lockAndGet(store, id, { waitMs: 30_000 * scale });
      await delay(20);
      expect(
        await store.set(id, record({ n: 2 }), { lock: holder, only: 'present', release: true }),
      ).toBe(true);
      await holder.release();
      const { lock, record: read } = await next;
      expect(decodeValue(read?.data ?? new Uint8Array())).toEqual({ n: 2 });
      await lock.release();
    });

    test('100 concurrent lock-read-write-release cycles on one session end at exactly 100', async (store) => {
      const id = newId();
      await store.set(id, record({ n: 0 }));
      const increment = async () => {
        const { lock, record: read } = await lockAndGet(store, id, {
          waitMs: 120_000 * scale,
          leaseMs: 60_000,
        });
        const { n } = decodeValue(read?.data ?? new Uint8Array()) as { n: number };
        await new Promise((resolve) => setImmediate(resolve));
        await store.set(id, record({ n: n + 1 }), { lock, only: 'present', release: true });
        await lock.release();
      };
      await Promise.all(Array.from({ length: 100 }, increment));
      expect(decodeValue((await store.get(id))?.data ?? new Uint8Array())).toEqual({ n: 100 });
    });
  });
}

/** What `SessionManager.open()` does: `acquireAndGet` where the store offers it, else acquire then get. */
async function lockAndGet(
  store: SessionStore,
  id: string,
  options: { waitMs?: number; leaseMs?: number },
): Promise<{ lock: SessionLock; record: SessionRecord | undefined }> {
  if (store.locks.acquireAndGet !== undefined) return store.locks.acquireAndGet(id, options);
  const lock = await store.locks.acquire(id, options);
  return { lock, record: await store.get(id) };
}
