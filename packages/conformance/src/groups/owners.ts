import { manual, type OwnedSession, SessionManager, type SessionStore } from '@sessile/core';
import { describe, expect, it } from 'vitest';
import {
  collect,
  decodeValue,
  delay,
  expectCode,
  expectTypeError,
  HOUR_MS,
  newId,
  record,
  withStore,
} from '../helpers.js';
import type { ConformanceOptions } from '../options.js';
import { type ChildHandle, requireCrossProcess, spawnChild } from './spawn.js';

/** A record carrying `owner`, or none when `owner` is undefined. */
export function ownedRecord(value: unknown, owner: string | undefined, expiresAt?: number) {
  const written = record(value, expiresAt);
  return owner === undefined ? written : { ...written, owner };
}

/** What `ownedBy` lists, as ids sorted for comparison. */
export async function ownedIds(store: SessionStore, owner: string): Promise<string[]> {
  return listed(await ownedByOf(store)(owner));
}

function listed(sessions: OwnedSession[]): string[] {
  return sessions.map((session) => session.id).sort();
}

function ownedByOf(store: SessionStore): (owner: string) => Promise<OwnedSession[]> {
  const ownedBy = store.ownedBy;
  if (typeof ownedBy !== 'function') {
    throw new Error('the store declares capabilities.ownerIndex but has no ownedBy method');
  }
  return (owner) => ownedBy.call(store, owner);
}

/**
 * Every live record's owner must agree with the index both ways: a record is listed under its
 * owner exactly when `get` reports that owner. Scans `ids()`, so only for small test stores.
 */
export async function expectIndexMatchesRecords(
  store: SessionStore,
  owners: readonly string[],
  when = '',
): Promise<void> {
  const byRecord = new Map<string, string[]>(owners.map((owner) => [owner, []]));
  for (const id of await collect(store.ids())) {
    const owner = (await store.get(id))?.owner;
    if (owner !== undefined) byRecord.get(owner)?.push(id);
  }
  for (const owner of owners) {
    expect(
      await ownedIds(store, owner),
      `sessions listed for owner #${owners.indexOf(owner)}${when === '' ? '' : `, ${when}`}`,
    ).toEqual((byRecord.get(owner) ?? []).sort());
  }
}

/**
 * Logs `owner` in `times` times, a few at once, through a SessionManager capped at one session
 * per owner, as concurrent logins of one user from several devices would.
 */
export async function loginTimes(store: SessionStore, owner: string, times: number): Promise<void> {
  const manager = new SessionManager({ store, cleanup: manual(), maxSessionsPerOwner: 1 });
  try {
    const login = async () => {
      const session = await manager.open(undefined);
      await session.regenerate();
      session.data.user = owner;
      await session.setOwner(owner);
      await session.commit();
    };
    for (let i = 0; i < times; i += 5) {
      await Promise.all(Array.from({ length: Math.min(5, times - i) }, login));
    }
  } finally {
    await manager.close();
  }
}

const BAD_OWNERS: Array<[string, unknown]> = [
  ['empty', ''],
  ['257 characters', 'u'.repeat(257)],
  ['a lone surrogate', 'user\ud800'],
  ['number', 42],
  ['null', null],
  ['object', { toString: () => 'user-1' }],
];

/**
 * Owners a store must keep apart: shared prefixes, separators a key layout might use, case,
 * trailing space, NUL, and the composed and decomposed spellings of one letter.
 */
export const LOOKALIKE_OWNERS: readonly string[] = [
  'u',
  'u1',
  'u10',
  'u1:',
  'u1:x',
  'u1/x',
  'u1\u0000',
  'u1\u0000x',
  'u1 ',
  'U1',
  'u1%',
  'u1*',
  'ü1',
  'u\u03081',
  'Zoë 👩‍💻 用户',
  'x'.repeat(256),
  `${'x'.repeat(255)}y`,
];

export function ownerTests(
  options: ConformanceOptions,
  ownerIndex: boolean,
  expiry: 'sweep' | 'native' = 'sweep',
): void {
  const scale = options.timeScale ?? 1;
  const test = (name: string, body: Parameters<typeof withStore>[1]) =>
    it(name, () => withStore(options, body), 30_000 * scale);

  describe('owners', () => {
    test('a record with a malformed owner rejects with ERR_INVALID_OWNER and writes nothing', async (store) => {
      const id = newId();
      for (const [, owner] of BAD_OWNERS) {
        await expectCode(
          store.set(id, { ...record({ v: 1 }), owner } as never),
          'ERR_INVALID_OWNER',
        );
      }
      expect(await store.get(id)).toBeUndefined();
      expect(await store.count()).toBe(0);
    });

    test('a record with a misspelt owner field rejects with a TypeError naming it and writes nothing', async (store) => {
      const id = newId();
      // Dropped unseen, `ownr` would leave the session out of its owner's listing and revocation.
      await expectTypeError(
        "set() of a record with the field 'ownr'",
        () => store.set(id, { ...record({ v: 1 }), ownr: 'ada' } as never),
        /ownr/,
      );
      expect(await store.get(id)).toBeUndefined();
      expect(await store.count()).toBe(0);
    });

    test('a record read back, with or without its owner, can be written again as it is', async (store) => {
      const [owned, plain] = [newId(), newId()];
      await store.set(owned, ownedRecord({ v: 1 }, 'user-1'));
      await store.set(plain, record({ v: 2 }));
      for (const id of [owned, plain]) {
        const read = await store.get(id);
        if (read === undefined) throw new Error('the record just written is absent');
        const copy = newId();
        expect(await store.set(copy, read)).toBe(true);
        const again = await store.get(copy);
        expect([again?.expiresAt, again?.owner]).toEqual([read.expiresAt, read.owner]);
        expect(decodeValue(again?.data ?? new Uint8Array())).toEqual(decodeValue(read.data));
      }
      if (ownerIndex && typeof store.ownedBy === 'function') {
        const [listed] = await store.ownedBy('user-1');
        if (listed === undefined) throw new Error('ownedBy left out the session just written');
        expect(await store.set(newId(), listed.record)).toBe(true);
      }
    });

    if (!ownerIndex) {
      test('a store without an owner index rejects ownedBy with ERR_UNSUPPORTED', async (store) => {
        await store.set(newId(), ownedRecord({ v: 1 }, 'user-1'));
        if (typeof store.ownedBy === 'function') {
          await expectCode(store.ownedBy('user-1'), 'ERR_UNSUPPORTED');
        }
      });
      return;
    }

    test('ownedBy lists exactly the live sessions of that owner, with their records', async (store) => {
      const ada = [newId(), newId(), newId()];
      const bob = [newId()];
      const nobody = newId();
      for (const [i, id] of ada.entries()) {
        await store.set(id, ownedRecord({ ada: i }, 'ada', Date.now() + (i + 1) * HOUR_MS));
      }
      await store.set(bob[0] as string, ownedRecord({ bob: 0 }, 'bob'));
      await store.set(nobody, ownedRecord({ nobody: true }, undefined));
      const sessions = await ownedByOf(store)('ada');
      expect(listed(sessions)).toEqual([...ada].sort());
      for (const session of sessions) {
        const stored = await store.get(session.id);
        expect(session.record.owner).toBe('ada');
        expect(session.record.expiresAt).toBe(stored?.expiresAt);
        expect(Array.from(session.record.data)).toEqual(Array.from(stored?.data ?? []));
      }
      expect(await ownedIds(store, 'bob')).toEqual(bob);
      expect(await ownedIds(store, 'carol')).toEqual([]);
      expect((await store.get(nobody))?.owner).toBeUndefined();
      expect((await store.get(bob[0] as string))?.owner).toBe('bob');
    });

    test('a deleted session is no longer listed', async (store) => {
      const kept = newId();
      const deleted = newId();
      await store.set(kept, ownedRecord({ v: 1 }, 'ada'));
      await store.set(deleted, ownedRecord({ v: 2 }, 'ada'));
      expect(await store.delete(deleted)).toBe(true);
      expect(await ownedIds(store, 'ada')).toEqual([kept]);
      // The id written again for someone else is theirs alone: no entry of ada's is left to list it.
      await store.set(deleted, ownedRecord({ v: 3 }, 'bob'));
      expect(await ownedIds(store, 'ada')).toEqual([kept]);
      expect(await ownedIds(store, 'bob')).toEqual([deleted]);
    });

    test('ownedBy hands out copies: changing a listed record changes nothing stored', async (store) => {
      const id = newId();
      await store.set(id, ownedRecord({ v: 1 }, 'ada'));
      const [listedSession] = await ownedByOf(store)('ada');
      const before = Buffer.from((await store.get(id))?.data ?? []);
      listedSession?.record.data.fill(0);
      expect(Buffer.from((await store.get(id))?.data ?? []), 'get after ownedBy').toEqual(before);
      const [again] = await ownedByOf(store)('ada');
      expect(Buffer.from(again?.record.data ?? []), 'ownedBy again').toEqual(before);
    });

    test('an expired session is never listed, before any sweep', async (store) => {
      const live = newId();
      const expiring = newId();
      const touchedAway = newId();
      const bornExpired = newId();
      await store.set(live, ownedRecord({ v: 1 }, 'ada'));
      await store.set(expiring, ownedRecord({ v: 2 }, 'ada', Date.now() + 150 * scale));
      await store.set(touchedAway, ownedRecord({ v: 3 }, 'ada'));
      await store.set(bornExpired, ownedRecord({ v: 4 }, 'ada', Date.now() - 1000));
      expect(await store.touch(touchedAway, Date.now() - 1000)).toBe(true);
      await delay(400 * scale);
      expect(await ownedIds(store, 'ada')).toEqual([live]);
    });

    test('an expired session written again for another owner or none is not listed under the old one, before any sweep', async (store) => {
      const lapsed = newId();
      const bornExpired = newId();
      const disowned = newId();
      await store.set(lapsed, ownedRecord({ v: 1 }, 'ada', Date.now() + 150 * scale));
      await store.set(bornExpired, ownedRecord({ v: 2 }, 'ada', Date.now() - 1000));
      await store.set(disowned, ownedRecord({ v: 3 }, 'ada', Date.now() + 150 * scale));
      await delay(400 * scale);
      // An expired record may be replaced by a create: the id is then bob's, or nobody's.
      expect(await store.set(lapsed, ownedRecord({ v: 4 }, 'bob'), { only: 'absent' })).toBe(true);
      expect(await store.set(bornExpired, ownedRecord({ v: 5 }, 'bob'))).toBe(true);
      expect(await store.set(disowned, ownedRecord({ v: 6 }, undefined), { only: 'absent' })).toBe(
        true,
      );
      expect(await ownedIds(store, 'ada'), "bob's and nobody's sessions listed for ada").toEqual(
        [],
      );
      expect(await ownedIds(store, 'bob')).toEqual([lapsed, bornExpired].sort());
    });

    test('a session written again by its owner with an earlier expiry is not listed once that expiry passed', async (store) => {
      const shortened = newId();
      const endedBySave = newId();
      const kept = newId();
      await store.set(shortened, ownedRecord({ v: 1 }, 'ada'));
      await store.set(endedBySave, ownedRecord({ v: 2 }, 'ada'));
      await store.set(kept, ownedRecord({ v: 3 }, 'ada'));
      expect(
        await store.set(shortened, ownedRecord({ v: 4 }, 'ada', Date.now() + 150 * scale), {
          only: 'present',
        }),
      ).toBe(true);
      // A save of an already expired record, as a logout that keeps the record may write.
      expect(await store.set(endedBySave, ownedRecord({ v: 5 }, 'ada', Date.now() - 1000))).toBe(
        true,
      );
      await delay(400 * scale);
      expect(await store.get(shortened)).toBeUndefined();
      expect(await ownedIds(store, 'ada')).toEqual([kept]);
    });

    // A native store's backend expires records by its own clock; sweep({ now }) cannot move it.
    if (expiry === 'sweep') {
      test('a swept session is no longer listed', async (store) => {
        const now = Date.now();
        const swept = newId();
        const kept = newId();
        await store.set(swept, ownedRecord({ v: 1 }, 'ada', now + HOUR_MS));
        await store.set(kept, ownedRecord({ v: 2 }, 'ada', now + 5 * HOUR_MS));
        let done = false;
        for (let calls = 0; !done && calls < 1000; calls++) {
          done = (await store.sweep({ now: now + 2 * HOUR_MS })).done;
        }
        expect(await store.get(swept)).toBeUndefined();
        expect(await ownedIds(store, 'ada')).toEqual([kept]);
        // Written again after the sweep, the id is listed once more.
        await store.set(swept, ownedRecord({ v: 3 }, 'ada'));
        expect(await ownedIds(store, 'ada')).toEqual([kept, swept].sort());
      });

      test('an id swept and written again for another owner is listed under that owner only', async (store) => {
        const now = Date.now();
        const id = newId();
        await store.set(id, ownedRecord({ v: 1 }, 'ada', now + HOUR_MS));
        let done = false;
        for (let calls = 0; !done && calls < 1000; calls++) {
          done = (await store.sweep({ now: now + 2 * HOUR_MS })).done;
        }
        await store.set(id, ownedRecord({ v: 2 }, 'bob', now + 5 * HOUR_MS));
        expect(await ownedIds(store, 'ada'), 'the swept record left no entry behind').toEqual([]);
        expect(await ownedIds(store, 'bob')).toEqual([id]);
      });
    }

    test('rewriting a session with another owner or none moves it in the index', async (store) => {
      const moved = newId();
      const disowned = newId();
      await store.set(moved, ownedRecord({ v: 1 }, 'ada'));
      await store.set(disowned, ownedRecord({ v: 2 }, 'ada'));
      expect(await store.set(moved, ownedRecord({ v: 3 }, 'bob'))).toBe(true);
      expect(await store.set(disowned, ownedRecord({ v: 4 }, undefined), { only: 'present' })).toBe(
        true,
      );
      expect(await ownedIds(store, 'ada')).toEqual([]);
      expect(await ownedIds(store, 'bob')).toEqual([moved]);
      expect((await store.get(moved))?.owner).toBe('bob');
      expect((await store.get(disowned))?.owner).toBeUndefined();
      // Given an owner again, it is listed again.
      await store.set(disowned, ownedRecord({ v: 5 }, 'ada'));
      expect(await ownedIds(store, 'ada')).toEqual([disowned]);
    });

    test('touch keeps the owner', async (store) => {
      const id = newId();
      await store.set(id, ownedRecord({ v: 1 }, 'ada'));
      const later = Date.now() + 5 * HOUR_MS;
      expect(await store.touch(id, later)).toBe(true);
      expect((await store.get(id))?.owner).toBe('ada');
      const [session] = await ownedByOf(store)('ada');
      expect(session?.id).toBe(id);
      expect(session?.record.expiresAt).toBe(later);
    });

    test("a refused only: 'absent' or only: 'present' write leaves the index as it was", async (store) => {
      const id = newId();
      await store.set(id, ownedRecord({ v: 1 }, 'ada'));
      expect(await store.set(id, ownedRecord({ v: 2 }, 'bob'), { only: 'absent' })).toBe(false);
      const absent = newId();
      expect(await store.set(absent, ownedRecord({ v: 3 }, 'bob'), { only: 'present' })).toBe(
        false,
      );
      const deleted = newId();
      await store.set(deleted, ownedRecord({ v: 4 }, 'bob'));
      await store.delete(deleted);
      expect(await store.set(deleted, ownedRecord({ v: 5 }, 'bob'), { only: 'present' })).toBe(
        false,
      );
      expect(await ownedIds(store, 'ada')).toEqual([id]);
      expect(await ownedIds(store, 'bob')).toEqual([]);
      expect((await store.get(id))?.owner).toBe('ada');
    });

    test('a fenced write under a held lock records the owner', async (store) => {
      const id = newId();
      const lock = await store.locks.acquire(id, { leaseMs: 60_000 });
      try {
        expect(await store.set(id, ownedRecord({ v: 1 }, 'ada'), { lock })).toBe(true);
        expect(await store.touch(id, Date.now() + 2 * HOUR_MS, { lock })).toBe(true);
      } finally {
        await lock.release();
      }
      expect(await ownedIds(store, 'ada')).toEqual([id]);
    });

    test('clear() empties the index', async (store) => {
      await store.set(newId(), ownedRecord({ v: 1 }, 'ada'));
      await store.set(newId(), ownedRecord({ v: 2 }, 'bob'));
      const reused = newId();
      await store.set(reused, ownedRecord({ v: 3 }, 'ada'));
      await store.clear();
      expect(await ownedIds(store, 'ada')).toEqual([]);
      expect(await ownedIds(store, 'bob')).toEqual([]);
      const id = newId();
      await store.set(id, ownedRecord({ v: 4 }, 'ada'));
      // An id cleared and written again for another owner is not listed under the old one.
      await store.set(reused, ownedRecord({ v: 5 }, 'bob'));
      expect(await ownedIds(store, 'ada')).toEqual([id]);
      expect(await ownedIds(store, 'bob')).toEqual([reused]);
    });

    test('owners are opaque: look-alike owners sharing a prefix are distinct', async (store) => {
      const idsOf = new Map<string, string[]>();
      for (const owner of LOOKALIKE_OWNERS) {
        const ids = [newId(), newId()];
        idsOf.set(owner, ids);
        for (const id of ids) await store.set(id, ownedRecord({ owner }, owner));
      }
      for (const [index, owner] of LOOKALIKE_OWNERS.entries()) {
        expect(await ownedIds(store, owner), `owner #${index}`).toEqual(
          [...(idsOf.get(owner) ?? [])].sort(),
        );
        for (const id of idsOf.get(owner) ?? []) expect((await store.get(id))?.owner).toBe(owner);
      }
      expect(await ownedIds(store, 'u1\u0000x\u0000')).toEqual([]);
      expect(await ownedIds(store, 'x'.repeat(255))).toEqual([]);
    });

    test('ownedBy rejects a malformed owner with ERR_INVALID_OWNER', async (store) => {
      for (const [name, owner] of BAD_OWNERS) {
        await expectCode(ownedByOf(store)(owner as string), 'ERR_INVALID_OWNER').catch(
          (error: Error) => {
            throw new Error(`ownedBy(${name}): ${error.message}`);
          },
        );
      }
    });

    test('a closed store rejects ownedBy with ERR_STORE_CLOSED', async () => {
      const store = await options.open();
      await store.set(newId(), ownedRecord({ v: 1 }, 'ada'));
      await store.close();
      await expectCode(ownedByOf(store)('ada'), 'ERR_STORE_CLOSED');
    });

    test('100 racing writes of one id with two owners leave it listed under the last one only', async (store) => {
      const id = newId();
      const others = [newId(), newId()];
      for (const other of others) await store.set(other, ownedRecord({ other }, 'ada'));
      // Races ending in each kind of write, five times each: one that always ends in a delete
      // leaves no record, so an index checked against records at read time would hide entries
      // its writes lost, and a race loses an entry only some of the time.
      const lasts = ['ada', 'bob', undefined, 'delete'] as const;
      for (const last of Array.from({ length: 5 }, () => lasts).flat()) {
        await Promise.all([
          ...Array.from({ length: 100 }, (_, i) => {
            const owner = i % 3 === 2 ? undefined : i % 3 === 0 ? 'ada' : 'bob';
            return i % 10 === 9
              ? store.delete(id)
              : store.set(id, ownedRecord({ i }, owner), i % 4 === 1 ? { only: 'present' } : {});
          }),
          last === 'delete' ? store.delete(id) : store.set(id, ownedRecord({ last }, last)),
        ]);
        await expectIndexMatchesRecords(
          store,
          ['ada', 'bob'],
          `after a race whose last write was ${last === 'delete' ? 'a delete' : `a set with owner ${last ?? 'none'}`}`,
        );
      }
      expect(await ownedIds(store, 'ada')).toEqual(expect.arrayContaining([...others].sort()));
    });

    test('20 concurrent logins of one owner under maxSessionsPerOwner: 1 leave one live session', async (store) => {
      await Promise.all(Array.from({ length: 4 }, () => loginTimes(store, 'ada', 5)));
      expect((await ownedIds(store, 'ada')).length).toBe(1);
      expect(await store.count()).toBe(1);
    });

    if (options.reopen !== undefined) {
      it(
        'the index survives close() and reopen()',
        async () => {
          const first = await options.open();
          const kept = newId();
          const moved = newId();
          const deleted = newId();
          try {
            await first.set(kept, ownedRecord({ v: 1 }, 'ada'));
            await first.set(moved, ownedRecord({ v: 2 }, 'ada'));
            await first.set(deleted, ownedRecord({ v: 3 }, 'ada'));
            await first.set(moved, ownedRecord({ v: 4 }, 'bob'));
            await first.delete(deleted);
          } finally {
            await first.close();
          }
          const second = await (options.reopen as () => Promise<SessionStore>)();
          try {
            expect(await ownedIds(second, 'ada')).toEqual([kept]);
            expect(await ownedIds(second, 'bob')).toEqual([moved]);
            await expectIndexMatchesRecords(second, ['ada', 'bob']);
          } finally {
            await second.close();
          }
        },
        60_000 * scale,
      );
    }
  });
}

/** The owner index seen across processes (`shared` `'host'` or wider) and after a crash. */
export function crossProcessOwnerTests(
  options: ConformanceOptions,
  shared: string,
  durable: boolean,
): void {
  const scale = options.timeScale ?? 1;
  const children: ChildHandle[] = [];

  describe('owners across processes', () => {
    it(
      'what a child process writes, deletes and moves is what the parent lists',
      async () => {
        const cross = requireCrossProcess(options, shared);
        const store = await options.open();
        try {
          const ids = Array.from({ length: 6 }, () => newId());
          await store.set(ids[5] as string, ownedRecord({ parent: true }, 'ada'));
          const child = spawnChild(cross, {
            kind: 'owner-writes',
            ids: ids.slice(0, 5),
            owner: 'ada',
            other: 'bob',
          });
          children.push(child);
          await child.next('done');
          // The child wrote ids[0..4] for ada, deleted ids[0], moved ids[1] to bob, disowned ids[2].
          expect(await ownedIds(store, 'ada')).toEqual([ids[3], ids[4], ids[5]].sort());
          expect(await ownedIds(store, 'bob')).toEqual([ids[1]]);
          expect((await store.get(ids[2] as string))?.owner).toBeUndefined();
        } finally {
          for (const child of children.splice(0)) child.kill();
          await store.close();
        }
      },
      120_000 * scale,
    );

    it(
      '3 child processes logging one owner in under maxSessionsPerOwner: 1 leave one live session',
      async () => {
        const cross = requireCrossProcess(options, shared);
        const store = await options.open();
        try {
          const workers = Array.from({ length: 3 }, () =>
            spawnChild(cross, { kind: 'logins', owner: 'ada', times: 10 }),
          );
          children.push(...workers);
          await Promise.all(workers.map((worker) => worker.next('done')));
          expect((await ownedIds(store, 'ada')).length).toBe(1);
          expect(await store.count()).toBe(1);
        } finally {
          for (const child of children.splice(0)) child.kill();
          await store.close();
        }
      },
      120_000 * scale,
    );

    if (!durable) return;
    it(
      'after a writer is killed with SIGKILL and the store reopened, the index matches the records',
      async () => {
        const cross = requireCrossProcess(options, shared);
        const { reopen } = options;
        if (reopen === undefined) {
          throw new Error(
            'the store declares capabilities.durable, so the suite needs options.reopen',
          );
        }
        const store = await options.open();
        const child = spawnChild(cross, { kind: 'owner-stream', owner: 'ada', other: 'bob' });
        children.push(child);
        try {
          await child.count('owned', 60);
        } finally {
          child.kill();
          await child.exited;
          children.splice(children.indexOf(child), 1);
          await store.close();
        }
        const idsOf = (type: string) =>
          new Set(
            child.messages.flatMap((message) =>
              message.type === type && 'id' in message ? [message.id] : [],
            ),
          );
        const owned = idsOf('owned');
        const disowning = idsOf('disowning');
        const gone = idsOf('gone');
        expect(gone.size).toBeGreaterThan(0);
        const reopened = await reopen();
        try {
          const listed = await ownedIds(reopened, 'ada');
          for (const id of owned) {
            if (!disowning.has(id)) expect(listed, 'an acknowledged write is listed').toContain(id);
          }
          for (const id of gone) {
            expect(listed, 'an acknowledged delete or move is not listed').not.toContain(id);
          }
          await expectIndexMatchesRecords(reopened, ['ada', 'bob']);
        } finally {
          await reopened.close();
        }
      },
      120_000 * scale,
    );
  });
}
