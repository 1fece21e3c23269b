import type { SessionStore } from '@sessile/core';
import { describe, expect, it } from 'vitest';
import {
  collect,
  delay,
  expectCode,
  newId,
  record,
  unexpectedOutcomes,
  withStore,
} from '../helpers.js';
import type { ConformanceOptions } from '../options.js';

/**
 * Every public method, called with a valid id, so a trait can run it in a given state; `lend`
 * and `ownedBy` where the store has them.
 */
function everyMethod(store: SessionStore, id: string): Record<string, () => unknown> {
  const optional: Record<string, () => unknown> = {};
  if (typeof store.lend === 'function') optional.lend = () => store.lend?.(id, () => 1);
  if (store.capabilities.ownerIndex) optional.ownedBy = () => store.ownedBy?.('user-1');
  return {
    ...optional,
    get: () => store.get(id),
    set: () => store.set(id, record({ v: 1 })),
    'set absent': () => store.set(id, record({ v: 1 }), { only: 'absent' }),
    'set present': () => store.set(id, record({ v: 1 }), { only: 'present' }),
    touch: () => store.touch(id, Date.now() + 60_000),
    delete: () => store.delete(id),
    sweep: () => store.sweep(),
    count: () => store.count(),
    ids: () => collect(store.ids()),
    clear: () => store.clear(),
    'locks.acquire': () => store.locks.acquire(id, { waitMs: 0 }),
  };
}

const TAKES_AN_ID = new Set([
  'lend',
  'get',
  'set',
  'set absent',
  'set present',
  'touch',
  'delete',
  'locks.acquire',
]);

const BAD_IDS: Array<[string, unknown]> = [
  ['empty', ''],
  ['too short (15)', 'a'.repeat(15)],
  ['too long (129)', 'a'.repeat(129)],
  ['../x', '../x'],
  ['a/b', 'a/b'],
  ['long traversal', '../../../../../../etc/passwd'],
  ['slash inside a valid length', `${'a'.repeat(10)}/${'b'.repeat(10)}`],
  ['backslash', `${'a'.repeat(10)}\\${'b'.repeat(10)}`],
  ['NUL', `${'a'.repeat(20)}\u0000`],
  ['space', `${'a'.repeat(10)} ${'b'.repeat(10)}`],
  ['dot', `${'a'.repeat(10)}.${'b'.repeat(10)}`],
  ['non-ASCII', `${'a'.repeat(20)}é`],
  // A store that trims would make these aliases of a valid id.
  ['trailing newline', `${'a'.repeat(20)}\n`],
  ['leading space', ` ${'a'.repeat(20)}`],
  ['tab', `${'a'.repeat(10)}\t${'b'.repeat(10)}`],
  ['number', 1234567890123456],
  ['null', null],
  ['undefined', undefined],
  ['object', { toString: () => 'a'.repeat(20) }],
];

export function traitTests(options: ConformanceOptions): void {
  describe('traits', () => {
    it('a closed store rejects every method with ERR_STORE_CLOSED', async () => {
      const store = await options.open();
      const id = newId();
      await store.set(id, record({ v: 1 }));
      await store.close();
      expect(
        await unexpectedOutcomes(everyMethod(store, id), 'ERR_STORE_CLOSED'),
        'methods of a closed store that did not return a promise rejecting with ERR_STORE_CLOSED',
      ).toEqual({});
    });

    it('refuses a lock with ERR_STORE_CLOSED once close() has begun, while an operation is still in flight', async () => {
      const store = await options.open();
      const id = newId();
      await store.set(id, record({ v: 1 }));
      const reading = store.get(id);
      const closing = store.close();
      await expectCode(store.locks.acquire(newId(), { waitMs: 0 }), 'ERR_STORE_CLOSED');
      expect(await reading).toBeDefined();
      await closing;
    });

    it('close() rejects a lock wait already pending with ERR_STORE_CLOSED, not at its waitMs', async () => {
      const store = await options.open();
      const id = newId();
      const held = await store.locks.acquire(id, { leaseMs: 60_000 });
      // A store that leaves the wait to run out rejects it with ERR_LOCK_TIMEOUT after waitMs.
      const waiting = store.locks.acquire(id, { waitMs: 30_000, leaseMs: 60_000 });
      const waited = expectCode(waiting, 'ERR_STORE_CLOSED');
      await delay(50);
      await store.close();
      await waited;
      await held.release().catch(() => undefined);
    }, 90_000);

    for (const [label, badId] of BAD_IDS) {
      it(`a bad id (${label}) rejects with ERR_INVALID_SESSION_ID and touches nothing`, () =>
        withStore(options, async (store) => {
          const keep = [newId(), newId()];
          for (const id of keep) await store.set(id, record({ id }));
          const withId = Object.entries(everyMethod(store, badId as string)).filter(([name]) =>
            TAKES_AN_ID.has(name),
          );
          expect(
            await unexpectedOutcomes(Object.fromEntries(withId), 'ERR_INVALID_SESSION_ID'),
          ).toEqual({});
          expect(await store.count()).toBe(2);
          expect((await collect(store.ids())).sort()).toEqual([...keep].sort());
        }));
    }

    it(
      'an oversized record rejects with ERR_RECORD_TOO_LARGE and writes nothing',
      () =>
        withStore(options, async (store) => {
          const fresh = newId();
          const existing = newId();
          await store.set(existing, record({ keep: true }));
          const before = await store.get(existing);
          const tooLarge = {
            data: new Uint8Array(store.maxRecordBytes + 1),
            expiresAt: Date.now() + 60_000,
          };
          await expectCode(store.set(fresh, tooLarge), 'ERR_RECORD_TOO_LARGE');
          await expectCode(store.set(existing, tooLarge), 'ERR_RECORD_TOO_LARGE');
          await expectCode(
            store.set(existing, tooLarge, { only: 'present' }),
            'ERR_RECORD_TOO_LARGE',
          );
          expect(await store.get(fresh)).toBeUndefined();
          expect(
            Buffer.from((await store.get(existing))?.data ?? []).equals(
              Buffer.from(before?.data ?? []),
            ),
          ).toBe(true);
          expect(await store.count()).toBe(1);
        }),
      30_000,
    );
  });
}
