import { isSessionError } from '@sessile/core';
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

    it(
      'an ERR_CORRUPT_RECORD message never contains the session id',
      () =>
        withStore(options, async (store) => {
          const damaged = newId();
          await store.set(damaged, record({ damaged: true }));
          await corrupt(store, damaged);
          // Ids are bearer secrets, and error messages end up in logs.
          const reads: Record<string, () => Promise<unknown>> = { get: () => store.get(damaged) };
          if (typeof store.lend === 'function') {
            reads.lend = () => store.lend?.(damaged, () => true) as Promise<unknown>;
          }
          for (const [method, read] of Object.entries(reads)) {
            const error = await read().then(
              () => undefined,
              (caught: unknown) => caught,
            );
            expect(isSessionError(error, 'ERR_CORRUPT_RECORD'), `${method}: ${String(error)}`).toBe(
              true,
            );
            expect((error as Error).message, `the message of ${method}`).not.toContain(damaged);
          }
        }),
      60_000,
    );
  });
}
