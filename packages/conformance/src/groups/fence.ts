import { describe, expect, it } from 'vitest';
import { decodeValue, delay, expectCode, newId, record, withStore } from '../helpers.js';
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
      expect(await store.set(id, record({ n: 1 }), { lock, only: 'absent' })).toBe(true);
      expect(await store.set(id, record({ n: 2 }), { lock, only: 'absent' })).toBe(false);
      expect(await store.touch(id, Date.now() + 60_000, { lock })).toBe(true);
      expect(await store.delete(id, { lock })).toBe(true);
      expect(await store.delete(id, { lock })).toBe(false);
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
}
