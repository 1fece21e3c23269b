import { describe, expect, it } from 'vitest';
import { collect, delay, HOUR_MS, newId, record, withStore } from '../helpers.js';
import type { ConformanceOptions } from '../options.js';

export function expiryTests(options: ConformanceOptions): void {
  const scale = options.timeScale ?? 1;
  const test = (name: string, body: Parameters<typeof withStore>[1]) =>
    it(name, () => withStore(options, body), 30_000 * scale);

  describe('expiry', () => {
    test('a record past expiresAt is absent for every read before any sweep', async (store) => {
      const id = newId();
      const live = newId();
      await store.set(id, record({ v: 1 }, Date.now() + 150 * scale));
      await store.set(live, record({ v: 2 }));
      await delay(400 * scale);
      // Expired means absent before any sweep: each read compares expiresAt with the time now.
      expect(await store.get(id), 'get of an expired record').toBeUndefined();
      expect(await store.touch(id, Date.now() + HOUR_MS), 'touch of an expired record').toBe(false);
      expect(await store.get(id), 'get after a touch of an expired record').toBeUndefined();
      expect(await store.count(), 'count() counts live records only').toBe(1);
      expect(await collect(store.ids()), 'ids() lists live records only').toEqual([live]);
      expect(await store.delete(id), 'delete of an expired record').toBe(false);
    });

    test('an expired record counts as absent for conditional set', async (store) => {
      const id = newId();
      await store.set(id, record({ v: 1 }, Date.now() + 150 * scale));
      await delay(400 * scale);
      expect(
        await store.set(id, record({ late: true }), { only: 'present' }),
        "set with only: 'present' over an expired record answers false",
      ).toBe(false);
      expect(
        await store.get(id),
        "a refused only: 'present' set over an expired record writes nothing",
      ).toBeUndefined();
      expect(
        await store.set(id, record({ fresh: true }), { only: 'absent' }),
        "set with only: 'absent' over an expired record writes and answers true",
      ).toBe(true);
      expect(await store.get(id), "the only: 'absent' set over an expired record").toBeDefined();
    });

    test('set with a past expiresAt leaves nothing visible', async (store) => {
      const id = newId();
      await store.set(id, record({ v: 1 }, Date.now() - 1000));
      expect(await store.get(id), 'get of a record written already expired').toBeUndefined();
      expect(await store.count(), 'count() counts live records only').toBe(0);
      expect(await collect(store.ids()), 'ids() lists live records only').toEqual([]);
      const existing = newId();
      await store.set(existing, record({ v: 1 }));
      await store.set(existing, record({ v: 2 }, Date.now() - 1000));
      expect(await store.get(existing)).toBeUndefined();
    });

    test('touch extends a record past its old expiry', async (store) => {
      const id = newId();
      await store.set(id, record({ v: 1 }, Date.now() + 200 * scale));
      expect(await store.touch(id, Date.now() + HOUR_MS)).toBe(true);
      await delay(450 * scale);
      expect(await store.get(id)).toBeDefined();
      expect(await store.count()).toBe(1);
    });

    test('touch to a past time ends the session', async (store) => {
      const id = newId();
      await store.set(id, record({ v: 1 }));
      expect(await store.touch(id, Date.now() - 1000)).toBe(true);
      expect(await store.get(id)).toBeUndefined();
      expect(await store.count()).toBe(0);
    });
  });
}
