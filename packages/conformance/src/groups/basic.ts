import { jsonCodec, type SessionRecord } from '@sessile/core';
import {
  encodeLibrarySession,
  openStoreAdapter,
  READS_TEXT,
  RECORD_TEXT,
} from '@sessile/core/store';
import { describe, expect, it } from 'vitest';
import {
  bytesOf,
  collect,
  decodeValue,
  expectTypeError,
  HOUR_MS,
  newId,
  record,
  withStore,
} from '../helpers.js';
import type { ConformanceOptions } from '../options.js';

export function basicTests(options: ConformanceOptions): void {
  const test = (name: string, body: Parameters<typeof withStore>[1]) =>
    it(name, () => withStore(options, body), 30_000);

  describe('basic', () => {
    test('get returns undefined for an id never written', async (store) => {
      expect(await store.get(newId())).toBeUndefined();
    });

    test('set then get returns the same bytes and expiresAt', async (store) => {
      const id = newId();
      const written = record({ user: 'ada', roles: ['admin'] });
      expect(await store.set(id, written)).toBe(true);
      const read = await store.get(id);
      expect(read?.expiresAt).toBe(written.expiresAt);
      expect(decodeValue(read?.data ?? new Uint8Array())).toEqual({
        user: 'ada',
        roles: ['admin'],
      });
    });

    test('lend, where a store has it, reads what get returns and reports absence', async (store) => {
      expect(['function', 'undefined']).toContain(typeof store.lend);
      if (store.lend === undefined) return;
      const id = newId();
      const owned = newId();
      const expired = newId();
      await store.set(id, record({ user: 'ada' }));
      await store.set(owned, { ...record({ user: 'bob' }), owner: 'user-1' });
      await store.set(expired, record({ user: 'eve' }, Date.now() - 1000));
      for (const each of [id, owned]) {
        const got = await store.get(each);
        const lent = await store.lend(each, (lentRecord, lentId) => ({
          id: lentId,
          value: decodeValue(lentRecord.data),
          expiresAt: lentRecord.expiresAt,
          owner: lentRecord.owner,
        }));
        expect(lent).toEqual({
          id: each,
          value: decodeValue(got?.data ?? bytesOf(null)),
          expiresAt: got?.expiresAt,
          owner: got?.owner,
        });
      }
      const calls: string[] = [];
      for (const each of [newId(), expired]) {
        expect(
          await store.lend(each, (_, lentId) => calls.push(lentId)),
          'lend of a missing or expired record resolves undefined',
        ).toBeUndefined();
      }
      expect(calls, 'lend never calls its reader for a missing or expired record').toEqual([]);
      // What read throws rejects the call as it is, and leaves the record as it was.
      const failure = new Error('read failed');
      await expect(
        store.lend(id, () => {
          throw failure;
        }),
      ).rejects.toBe(failure);
      // So does the rejection of a promise it returns: it is not a store failure.
      await expect(store.lend(id, () => Promise.reject(failure))).rejects.toBe(failure);
      expect(decodeValue((await store.get(id))?.data ?? bytesOf(null))).toEqual({ user: 'ada' });
    });

    test("a library adapter's sessions, ASCII or not, read back the same through get, lend and the adapter", async (store) => {
      const adapter = openStoreAdapter(store, {}, 'conformance');
      const textOf = (lent: Readonly<SessionRecord>) => ({
        text: (lent as { [RECORD_TEXT]?: unknown })[RECORD_TEXT],
        decoded: new TextDecoder().decode(lent.data),
      });
      // A reader of text, as the adapters are: a store may lend it the record's text.
      const textReader = Object.defineProperty(textOf, READS_TEXT, { value: true });
      for (const session of [{ user: 'ada' }, { user: 'zoë 🍪', note: '\u2028' }]) {
        const id = newId();
        const now = Date.now();
        // A TextRecord for a store whose class takes text, plain bytes for any other.
        await store.set(id, adapter.record(id, session, now, now + HOUR_MS));
        const expected = encodeLibrarySession(jsonCodec(), id, session, now);
        expect(Buffer.from((await store.get(id))?.data ?? [])).toEqual(Buffer.from(expected));
        expect(await adapter.read(id)).toEqual(session);
        if (store.lend === undefined) continue;
        const lent = await store.lend(id, textReader);
        expect(lent?.decoded).toBe(new TextDecoder().decode(expected));
        // Where a store lends text, it is exactly what the bytes decode to.
        if (lent?.text !== undefined) expect(lent.text).toBe(lent.decoded);
      }
    });

    test('set without a condition overwrites', async (store) => {
      const id = newId();
      await store.set(id, record({ v: 1 }));
      expect(await store.set(id, record({ v: 2 })), 'set over a live record answers true').toBe(
        true,
      );
      expect(
        decodeValue((await store.get(id))?.data ?? bytesOf(null)),
        'set without a condition replaces the record',
      ).toEqual({ v: 2 });
    });

    test("only: 'absent' creates once and never overwrites", async (store) => {
      const id = newId();
      expect(
        await store.set(id, record({ v: 1 }), { only: 'absent' }),
        "set with only: 'absent' on an id with no record writes and answers true",
      ).toBe(true);
      expect(
        await store.set(id, record({ v: 2 }), { only: 'absent' }),
        "set with only: 'absent' over a live record answers false",
      ).toBe(false);
      expect(
        decodeValue((await store.get(id))?.data ?? bytesOf(null)),
        "a refused only: 'absent' set leaves the record as it was",
      ).toEqual({ v: 1 });
    });

    test("only: 'present' updates a live record and writes nothing when absent", async (store) => {
      const id = newId();
      expect(
        await store.set(id, record({ v: 1 }), { only: 'present' }),
        "set with only: 'present' on an id with no record answers false",
      ).toBe(false);
      expect(await store.get(id), "a refused only: 'present' set writes nothing").toBeUndefined();
      await store.set(id, record({ v: 1 }));
      expect(
        await store.set(id, record({ v: 2 }), { only: 'present' }),
        "set with only: 'present' over a live record writes and answers true",
      ).toBe(true);
      expect(
        decodeValue((await store.get(id))?.data ?? bytesOf(null)),
        "an only: 'present' set replaces the record",
      ).toEqual({ v: 2 });
    });

    test("only: 'present' after delete does not resurrect the session", async (store) => {
      const id = newId();
      await store.set(id, record({ loggedIn: true }));
      expect(await store.delete(id), 'delete of a live record answers true').toBe(true);
      expect(
        await store.set(id, record({ loggedIn: true, late: true }), { only: 'present' }),
        "set with only: 'present' after a delete answers false",
      ).toBe(false);
      expect(
        await store.get(id),
        "an only: 'present' set after a delete writes nothing (a late save must not log the user back in)",
      ).toBeUndefined();
      expect(await store.count(), 'count() after the delete').toBe(0);
    });

    test('touch moves expiresAt of a live record and reports absence', async (store) => {
      const id = newId();
      await store.set(id, record({ v: 1 }));
      const later = Date.now() + 5 * HOUR_MS;
      expect(await store.touch(id, later)).toBe(true);
      const read = await store.get(id);
      expect(read?.expiresAt).toBe(later);
      expect(decodeValue(read?.data ?? bytesOf(null))).toEqual({ v: 1 });
      expect(await store.touch(newId(), later)).toBe(false);
      expect(await store.count()).toBe(1);
    });

    test('delete removes a record and reports whether one was there', async (store) => {
      const id = newId();
      const other = newId();
      await store.set(id, record({ v: 1 }));
      await store.set(other, record({ v: 2 }));
      expect(await store.delete(id), 'a delete of a live record resolves true').toBe(true);
      expect(
        await store.delete(id),
        'a second delete finds nothing: the first removed the record before it resolved',
      ).toBe(false);
      expect(await store.get(id), 'a get after an awaited delete finds nothing').toBeUndefined();
      expect(await store.get(other), 'a delete removes that id only').toBeDefined();
    });

    test('empty, binary and maximum-size payloads round-trip exactly', async (store) => {
      const empty = newId();
      const binary = newId();
      const large = newId();
      const allBytes = Uint8Array.from({ length: 512 }, (_, i) => i % 256);
      const largeBytes = Uint8Array.from(
        { length: store.maxRecordBytes },
        (_, i) => (i * 31) % 251,
      );
      const expiresAt = Date.now() + HOUR_MS;
      await store.set(empty, { data: new Uint8Array(0), expiresAt });
      await store.set(binary, { data: allBytes, expiresAt });
      await store.set(large, { data: largeBytes, expiresAt });
      expect((await store.get(empty))?.data.byteLength).toBe(0);
      expect(Buffer.from((await store.get(binary))?.data ?? []).equals(Buffer.from(allBytes))).toBe(
        true,
      );
      expect(
        Buffer.from((await store.get(large))?.data ?? []).equals(Buffer.from(largeBytes)),
      ).toBe(true);
    });

    test('ids of every allowed length and character work', async (store) => {
      const charset = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      // Every allowed length, each id using the whole charset in a different rotation.
      const ids = Array.from({ length: 128 - 16 + 1 }, (_, offset) => {
        const rotated = charset.slice(offset % 64) + charset.slice(0, offset % 64);
        return rotated.repeat(2).slice(0, 16 + offset);
      });
      for (const [index, id] of ids.entries()) {
        expect(await store.set(id, record({ index }))).toBe(true);
      }
      for (const [index, id] of ids.entries()) {
        expect(decodeValue((await store.get(id))?.data ?? bytesOf(null))).toEqual({ index });
      }
      expect((await collect(store.ids())).sort()).toEqual([...ids].sort());
    });

    test('ids that differ only in case are different sessions', async (store) => {
      const id = `aB${newId()}`;
      const [lower, upper] = [id.toLowerCase(), id.toUpperCase()];
      const why =
        'ids are case-sensitive: does the backend compare them without case (a _ci collation, a case-insensitive file system)?';
      expect(await store.set(lower, record({ v: 'lower' }), { only: 'absent' }), why).toBe(true);
      expect(await store.set(upper, record({ v: 'upper' }), { only: 'absent' }), why).toBe(true);
      expect(decodeValue((await store.get(lower))?.data ?? bytesOf(null)), why).toEqual({
        v: 'lower',
      });
      expect(decodeValue((await store.get(upper))?.data ?? bytesOf(null)), why).toEqual({
        v: 'upper',
      });
      expect(await store.delete(upper), why).toBe(true);
      expect(await store.get(lower), why).toBeDefined();
      expect(await collect(store.ids()), why).toEqual([lower]);
    });

    test('count and ids list each live record once', async (store) => {
      const ids = [newId(), newId(), newId()];
      for (const id of ids) await store.set(id, record({ id }));
      await store.set(ids[0] as string, record({ again: true }));
      expect(await store.count()).toBe(3);
      expect((await collect(store.ids())).sort()).toEqual([...ids].sort());
    });

    test('clear removes every record', async (store) => {
      for (let i = 0; i < 5; i++) await store.set(newId(), record({ i }));
      await store.clear();
      expect(await store.count()).toBe(0);
      expect(await collect(store.ids())).toEqual([]);
    });

    it('count, ids, get and clear() see the records of their own store only, not those of another open() beside it', async () => {
      const first = await options.open();
      const second = await options.open();
      try {
        const [own, kept] = [newId(), newId()];
        await first.set(own, record({ first: true }));
        await second.set(kept, record({ second: true }));
        const scoped = 'a store counts, lists and reads its own records only';
        expect(await first.count(), scoped).toBe(1);
        expect(await collect(first.ids()), scoped).toEqual([own]);
        expect(await first.get(kept), scoped).toBeUndefined();
        await first.clear();
        expect(await first.count()).toBe(0);
        expect(
          await collect(second.ids()),
          'clear() removes every record of this store, and nothing else (not every key of the server or file)',
        ).toEqual([kept]);
      } finally {
        await second.close();
        await first.close();
      }
    }, 30_000);

    test('stored bytes do not change when the caller mutates its buffers', async (store) => {
      // A Node Buffer too: its slice() is a view, not a copy.
      for (const data of [Uint8Array.from([1, 2, 3, 4]), Buffer.from([1, 2, 3, 4])]) {
        const id = newId();
        await store.set(id, { data, expiresAt: Date.now() + HOUR_MS });
        data.fill(9);
        const first = await store.get(id);
        first?.data.fill(7);
        const second = await store.get(id);
        expect(Array.from(second?.data ?? [])).toEqual([1, 2, 3, 4]);
      }
    });

    test('what set() was given is stored, though the caller changes its record and buffer before it resolves', async (store) => {
      const id = newId();
      const expiresAt = Date.now() + HOUR_MS;
      const data = Uint8Array.from([1, 2, 3, 4]);
      const given: { data: Uint8Array; expiresAt: number; owner?: string } = { data, expiresAt };
      const written = store.set(id, given);
      // A store may write later (a batch, a group commit): the caller reuses what it passed.
      data.fill(9);
      given.data = new Uint8Array(store.maxRecordBytes + 1);
      given.expiresAt = Number.NaN;
      given.owner = 'x'.repeat(300);
      expect(await written).toBe(true);
      const stored = await store.get(id);
      expect(Array.from(stored?.data ?? []), 'the bytes as given').toEqual([1, 2, 3, 4]);
      expect(stored?.expiresAt, 'the expiresAt as given').toBe(expiresAt);
      expect(stored?.owner, 'no owner, as given').toBeUndefined();
      expect(await store.count()).toBe(1);
    });

    test('close is idempotent and sets closed', async (store) => {
      expect(store.closed).toBe(false);
      await store.close();
      await store.close();
      expect(store.closed).toBe(true);
    });

    test('misuse rejects with a TypeError and writes nothing', async (store) => {
      const id = newId();
      const bad: Array<[string, unknown]> = [
        ['null', null],
        ['data a string', { data: 'text', expiresAt: Date.now() + HOUR_MS }],
        ['expiresAt NaN', { data: new Uint8Array(1), expiresAt: Number.NaN }],
        ['no expiresAt', { data: new Uint8Array(1) }],
        // Past the last time a Date can hold: a reader turning it into one gets Invalid Date.
        ['expiresAt Infinity', { data: new Uint8Array(1), expiresAt: Number.POSITIVE_INFINITY }],
        ['expiresAt past 8.64e15', { data: new Uint8Array(1), expiresAt: 8.64e15 + 1 }],
      ];
      for (const [label, value] of bad) {
        await expectTypeError(`set() of a record with ${label}`, () =>
          store.set(id, value as never),
        );
      }
      await expectTypeError("set() with only: 'sometimes'", () =>
        store.set(id, record({}), { only: 'sometimes' as never }),
      );
      for (const expiresAt of [Number.NaN, Number.POSITIVE_INFINITY, 8.64e15 + 1]) {
        await expectTypeError(`touch() to expiresAt ${expiresAt}`, () =>
          store.touch(id, expiresAt),
        );
      }
      // A misspelt option would otherwise be dropped: { olny: 'absent' } overwrites a session.
      await expectTypeError(
        "set() with the unknown option 'olny'",
        () => store.set(id, record({}), { olny: 'absent' } as never),
        /olny/,
      );
      await expectTypeError(
        "touch() with the unknown option 'lok'",
        () => store.touch(id, Date.now() + HOUR_MS, { lok: true } as never),
        /lok/,
      );
      await expectTypeError(
        "delete() with the unknown option 'lok'",
        () => store.delete(id, { lok: true } as never),
        /lok/,
      );
      await expectTypeError('sweep() with limit 0', () => store.sweep({ limit: 0 }));
      // A misspelt limit or budget would otherwise sweep without the bound the caller asked for.
      await expectTypeError(
        "sweep() with the unknown option 'limt'",
        () => store.sweep({ limt: 5 } as never),
        /limt/,
      );
      for (const options of ['fast', 42, null]) {
        await expectTypeError(`sweep(${JSON.stringify(options)})`, () =>
          store.sweep(options as never),
        );
      }
      expect(await store.count(), 'a refused call writes nothing').toBe(0);
    });
  });
}
