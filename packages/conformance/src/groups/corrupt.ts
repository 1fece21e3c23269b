import { describe, expect, it } from 'vitest';
import { bytesOf, collect, decodeValue, expectCode, newId, record, withStore } from '../helpers.js';
import type { ConformanceOptions } from '../options.js';

export function corruptTests(
  options: ConformanceOptions,
  corrupt: NonNullable<ConformanceOptions['corrupt']>,
): void {
  describe('corrupt record', () => {
    it(
      'rejects that id with ERR_CORRUPT_RECORD; every other id stays readable',
      () =>
        withStore(options, async (store) => {
          const damaged = newId();
          const others = [newId(), newId(), newId()];
          await store.set(damaged, record({ damaged: true }));
          for (const id of others) await store.set(id, record({ id }));
          await corrupt(store, damaged);

          await expectCode(store.get(damaged), 'ERR_CORRUPT_RECORD');
          for (const id of others)
            expect(decodeValue((await store.get(id))?.data ?? bytesOf(null))).toEqual({ id });
          // Listing, counting and sweeping go on around the damaged record.
          await store.count();
          expect(await collect(store.ids())).toEqual(expect.arrayContaining(others));
          await store.sweep();
          // Overwriting repairs it.
          expect(await store.set(damaged, record({ repaired: true }))).toBe(true);
          expect(decodeValue((await store.get(damaged))?.data ?? bytesOf(null))).toEqual({
            repaired: true,
          });
        }),
      60_000,
    );
  });
}
