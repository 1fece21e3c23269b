import { describe, expect, it } from 'vitest';
import { generateSessionId, jsonCodec, MemoryStore, type SessionRecord } from '../src/index.js';
import {
  BaseStore,
  ExpiryHeap,
  encodeLibrarySession,
  openStoreAdapter,
  TextRecord,
} from '../src/store.js';

const HOUR_MS = 3_600_000;
const record = (expiresAt: number) => ({ data: new Uint8Array([1]), expiresAt });

describe('MemoryStore', () => {
  it('keeps its expiry index bounded when the same sessions are touched over and over', async () => {
    const store = await MemoryStore.open();
    const start = Date.now();
    const ids = Array.from({ length: 100 }, () => generateSessionId());
    for (const id of ids) await store.set(id, record(start + HOUR_MS));
    for (let round = 1; round <= 200; round++) {
      for (const id of ids) await store.touch(id, start + HOUR_MS + round);
    }
    // Stale heap entries from 20,000 touches are compacted away; a sweep scans only live ones.
    const result = await store.sweep({ now: start + 2 * HOUR_MS, limit: 100_000 });
    expect(result.removed).toBe(100);
    expect(result.scanned).toBeLessThan(1300);
    await store.close();
  });

  it('gives back every byte value exactly, through get and lend, and from a view into a larger buffer', async () => {
    const store = await MemoryStore.open();
    const every = Uint8Array.from({ length: 256 }, (_, i) => i);
    const backing = new Uint8Array(300).fill(7);
    backing.set(every, 20);
    const view = backing.subarray(20, 276);
    const expiresAt = Date.now() + HOUR_MS;
    const ids = [generateSessionId(), generateSessionId(), generateSessionId()];
    for (const [id, data] of [
      [ids[0], every],
      [ids[1], view],
      [ids[2], new Uint8Array(0)],
    ] as const) {
      await store.set(id as string, { data, expiresAt });
      // Changing the caller's bytes afterwards changes nothing stored.
      const expected = Uint8Array.from(data);
      if (data.length > 0) data[0] = 99;
      expect(Uint8Array.from((await store.get(id as string))?.data ?? [])).toEqual(expected);
      expect(await store.lend(id as string, (lent) => Uint8Array.from(lent.data))).toEqual(
        expected,
      );
      // A lent record's data stays the same bytes however often the reader looks.
      expect(
        await store.lend(id as string, (lent) => {
          const first = lent.data;
          return first === lent.data;
        }),
      ).toBe(true);
    }
    await store.close();
  });

  it('hands out bytes a caller may transfer away without harming other records or later calls', async () => {
    const store = await MemoryStore.open();
    const [alice, bob] = [generateSessionId(), generateSessionId()];
    const expiresAt = Date.now() + HOUR_MS;
    await store.set(alice, { data: Buffer.from('alice'), expiresAt });
    await store.set(bob, { data: Buffer.from('bob'), expiresAt });
    const bobs = (await store.get(bob))?.data as Uint8Array;
    const alices = (await store.get(alice))?.data as Uint8Array<ArrayBuffer>;
    // Sent to a worker, say: the transfer must not detach memory that other answers share.
    const moved = structuredClone(alices, { transfer: [alices.buffer] });
    expect(Buffer.from(moved).toString()).toBe('alice');
    expect(Buffer.from(bobs).toString()).toBe('bob');
    for (let i = 0; i < 100; i++) {
      expect(Buffer.from((await store.get(bob))?.data ?? []).toString()).toBe('bob');
    }
    await store.close();
  });

  it('reads sessions with and without non-ASCII text alike through the library adapter', async () => {
    const store = await MemoryStore.open();
    const { read } = openStoreAdapter(store, {}, 'test');
    const sessions = [
      { user: 'ada', cart: [1, 2] },
      { user: 'José', note: '日本語 \u2028 😀', quote: '"\\' },
    ];
    for (const session of sessions) {
      const id = generateSessionId();
      const data = encodeLibrarySession(jsonCodec(), id, session, Date.now());
      await store.set(id, { data, expiresAt: Date.now() + HOUR_MS });
      expect(await read(id)).toEqual(session);
    }
    // Bytes that are not UTF-8 JSON fail as the codec fails them, whichever way they are kept.
    const id = generateSessionId();
    await store.set(id, {
      data: Uint8Array.from([0x7b, 0xff, 0x7d]),
      expiresAt: Date.now() + HOUR_MS,
    });
    await expect(read(id)).rejects.toMatchObject({ code: 'ERR_CORRUPT_RECORD' });
    const ascii = generateSessionId();
    await store.set(ascii, { data: Buffer.from('{"data":{}'), expiresAt: Date.now() + HOUR_MS });
    await expect(read(ascii)).rejects.toMatchObject({ code: 'ERR_CORRUPT_RECORD' });
    await store.close();
  });

  it("takes the library adapters' TextRecords only as their own: frozen, without an owner, not from a subclass", async () => {
    const store = await MemoryStore.open();
    const adapter = openStoreAdapter(store, {}, 'test');
    const id = generateSessionId();
    const record = adapter.record(id, { user: 'zoë' }, Date.now(), Date.now() + HOUR_MS);
    expect(record).toBeInstanceOf(TextRecord);
    // Nothing can be added to it unchecked, an owner least of all.
    expect(() => Object.assign(record, { owner: 'o'.repeat(70_000) })).toThrow(TypeError);
    // A subclass could carry an owner: it is checked as any plain record is.
    class Owned extends TextRecord {
      get owner(): unknown {
        return 42;
      }
    }
    const owned = new Owned('{', '"a":1', '}', Date.now() + HOUR_MS);
    // Deliberately not a valid record: its owner is a number.
    await expect(store.set(id, owned as unknown as SessionRecord)).rejects.toMatchObject({
      code: 'ERR_INVALID_OWNER',
    });
    expect(await store.set(id, record)).toBe(true);
    expect(await adapter.read(id)).toEqual({ user: 'zoë' });
    // A subclass of a store class that takes text inherits the check, not the text.
    class Copying extends MemoryStore {}
    const copying = new Copying();
    expect(openStoreAdapter(copying, {}, 'test').record(id, {}, 0, 1)).not.toBeInstanceOf(
      TextRecord,
    );
    await copying.close();
    await store.close();
  });

  it('rejects a listing that close() cuts short, instead of ending it as if complete', async () => {
    const store = await MemoryStore.open();
    const expiresAt = Date.now() + HOUR_MS;
    for (let i = 0; i < 50; i++)
      await store.set(generateSessionId(), { data: new Uint8Array(1), expiresAt });
    const listed: string[] = [];
    const listing = (async () => {
      for await (const id of store.ids()) {
        listed.push(id);
        if (listed.length === 2) await store.close();
      }
    })();
    await expect(listing).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
    expect(listed).toHaveLength(2);
  });

  it('rejects records above maxRecordBytes and accepts records at it', async () => {
    const store = await MemoryStore.open({ maxRecordBytes: 8 });
    const id = generateSessionId();
    await expect(
      store.set(id, { data: new Uint8Array(9), expiresAt: Date.now() + HOUR_MS }),
    ).rejects.toMatchObject({
      code: 'ERR_RECORD_TOO_LARGE',
    });
    expect(await store.set(id, { data: new Uint8Array(8), expiresAt: Date.now() + HOUR_MS })).toBe(
      true,
    );
    await store.close();
  });

  it('close waits for operations already in flight', async () => {
    const store = await MemoryStore.open();
    const id = generateSessionId();
    const write = store.set(id, record(Date.now() + HOUR_MS));
    const closing = store.close();
    await expect(write).resolves.toBe(true);
    await closing;
    await expect(store.get(id)).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
  });
});

describe('MemoryStore touch', () => {
  it('moves the expiry a sweep goes by, and keeps the data', async () => {
    const store = await MemoryStore.open();
    const start = Date.now();
    const id = generateSessionId();
    await store.set(id, { data: new Uint8Array([4, 5, 6]), expiresAt: start + HOUR_MS });
    expect(await store.touch(id, start + 3 * HOUR_MS)).toBe(true);
    // Past the first expiry, before the new one: the stale heap entry removes nothing.
    expect(await store.sweep({ now: start + 2 * HOUR_MS })).toMatchObject({ removed: 0 });
    const kept = await store.get(id);
    expect(kept?.expiresAt).toBe(start + 3 * HOUR_MS);
    expect([...(kept?.data ?? [])]).toEqual([4, 5, 6]);
    expect(await store.sweep({ now: start + 4 * HOUR_MS })).toMatchObject({ removed: 1 });
    expect(await store.count()).toBe(0);
    await store.close();
  });
});

describe('MemoryStore owner index', () => {
  it('lists what a model of the same writes, deletes, moves and expiries lists', async () => {
    const store = await MemoryStore.open();
    const start = Date.now();
    const ids = Array.from({ length: 40 }, () => generateSessionId());
    const owners = ['ada', 'grace', 'alan', undefined];
    // id -> [owner, expiresAt] of what the store should hold.
    const model = new Map<string, [string | undefined, number]>();
    let seed = 11;
    const random = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return Math.floor((seed / 2_147_483_648) * n);
    };
    for (let step = 0; step < 1500; step++) {
      const id = ids[random(ids.length)] as string;
      const roll = random(10);
      if (roll < 6) {
        const owner = owners[random(owners.length)];
        // Some records are written already expired, so a sweep has work; none expires while
        // the test runs, which would race the listing against the model's clock.
        const expiresAt = random(4) === 0 ? start - 1000 - step : start + HOUR_MS + step;
        const data = new Uint8Array([step % 256]);
        await store.set(id, owner === undefined ? { data, expiresAt } : { data, expiresAt, owner });
        model.set(id, [owner, expiresAt]);
      } else if (roll < 8) {
        await store.delete(id);
        model.delete(id);
      } else {
        await store.sweep({ now: start, limit: 10 });
        for (const [key, [, expiresAt]] of model) if (expiresAt <= start) model.delete(key);
      }
      if (step % 50 === 0 || step === 1499) {
        for (const owner of owners) {
          if (owner === undefined) continue;
          const listed = (await store.ownedBy(owner)).map((session) => session.id).sort();
          const expected = [...model]
            .filter(([, [who, expiresAt]]) => who === owner && expiresAt > Date.now())
            .map(([key]) => key)
            .sort();
          expect(listed).toEqual(expected);
        }
      }
    }
    await store.close();
  });
});

type Read<T> = (record: Readonly<SessionRecord>, id: string) => T;
type Lend = <T>(id: string, now: number, read: Read<T>) => T | undefined | Promise<T | undefined>;
/** BaseStore's own `_lend`, which reads through `_get`; MemoryStore lends its records instead. */
const lendThroughGet = (BaseStore.prototype as unknown as { _lend: Lend })._lend;

/** A MemoryStore that lends what its `_get` answers, as a store over a backend does. */
class ReadsThroughGet extends MemoryStore {
  protected override _lend<T>(id: string, now: number, read: Read<T>) {
    return lendThroughGet.call<
      this,
      [string, number, Read<T>],
      T | undefined | Promise<T | undefined>
    >(this, id, now, read);
  }
}

/** A MemoryStore whose reads fail inside the backend, before returning a promise. */
class FailingReadStore extends ReadsThroughGet {
  protected override _get(): Promise<SessionRecord | undefined> {
    throw new Error('disk on fire');
  }
}

/** A MemoryStore whose reads answer on a later turn, as a backend across a network does. */
class LaterReadStore extends ReadsThroughGet {
  protected override _get(id: string, now: number): Promise<SessionRecord | undefined> {
    const record = super._get(id, now);
    return new Promise((resolve) => setImmediate(() => resolve(record)));
  }
}

describe('BaseStore around a backend', () => {
  it('hands a value a hook answers at once, and a promise it answers later, to the caller alike', async () => {
    const id = generateSessionId();
    for (const store of [new MemoryStore(), new LaterReadStore()]) {
      await store.set(id, { data: new Uint8Array([7]), expiresAt: Date.now() + HOUR_MS });
      const read = store.get(id);
      expect(read).toBeInstanceOf(Promise);
      // close() waits for a read still in flight, and the read still gets its record.
      const closing = store.close();
      expect([...((await read)?.data ?? [])]).toEqual([7]);
      await closing;
      await expect(store.get(id)).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
    }
  });

  it('turns a backend that throws at once into a rejection with ERR_STORE_IO and its cause', async () => {
    const store = new FailingReadStore();
    const read = store.get(generateSessionId());
    expect(read).toBeInstanceOf(Promise);
    const error = await read.catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'ERR_STORE_IO', message: 'get failed: disk on fire' });
    expect((error as Error).cause).toBeInstanceOf(Error);
    // The failed call no longer counts as in flight, so close() settles.
    await store.close();
    expect(store.closed).toBe(true);
  });

  it('lends through the get hook, and tells a backend failure from what read throws', async () => {
    const id = generateSessionId();
    const later = new LaterReadStore();
    await later.set(id, { data: new Uint8Array([7, 8]), expiresAt: Date.now() + HOUR_MS });
    expect(await later.lend(id, (record, lentId) => [lentId, ...record.data])).toEqual([id, 7, 8]);
    const mine = new SyntaxError('not mine to wrap');
    const thrown = (): never => {
      throw mine;
    };
    await expect(later.lend(id, thrown)).rejects.toBe(mine);
    const failing = new FailingReadStore().lend(id, (record) => record);
    expect(failing).toBeInstanceOf(Promise);
    await expect(failing).rejects.toMatchObject({ code: 'ERR_STORE_IO' });
    for (const store of [later, new MemoryStore()]) {
      await expect(store.lend(id, 'decode' as never)).rejects.toBeInstanceOf(TypeError);
      await expect(store.lend('../etc', (record) => record)).rejects.toMatchObject({
        code: 'ERR_INVALID_SESSION_ID',
      });
    }
  });

  it("rejects with what a getter of the caller's record or options throws, as it is, not as a store failure", async () => {
    const store = await MemoryStore.open();
    const id = generateSessionId();
    const mine = new RangeError('getter of the caller');
    const throwing = <T extends object>(base: T, key: string): T =>
      Object.defineProperty({ ...base }, key, {
        get() {
          throw mine;
        },
      });
    const good = record(Date.now() + HOUR_MS);
    const calls = [
      store.set(id, throwing(good, 'data')),
      store.set(id, good, throwing({}, 'only')),
      store.touch(id, Date.now() + HOUR_MS, throwing({}, 'lock')),
      store.delete(id, throwing({}, 'release')),
      store.sweep(throwing({}, 'limit')),
    ];
    for (const call of calls) await expect(call).rejects.toBe(mine);
    expect(await store.count()).toBe(0);
    await store.close();
  });

  it('rejects a call after close() instead of throwing', async () => {
    const store = await MemoryStore.open();
    await store.close();
    const write = store.set(generateSessionId(), record(Date.now() + HOUR_MS));
    expect(write).toBeInstanceOf(Promise);
    await expect(write).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
  });
});

describe('ExpiryHeap', () => {
  it('pops the earliest entry each time, interleaved with pushes, ties included', () => {
    const heap = new ExpiryHeap();
    const timeOf = new Map<string, number>();
    let seed = 7;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed / 2_147_483_648;
    };
    const check = () => {
      const entry = heap.pop();
      if (timeOf.size === 0) return expect(entry).toBeUndefined();
      const earliest = Math.min(...timeOf.values());
      expect(entry?.expiresAt).toBe(earliest);
      // The id comes with its own time, and each pushed pair comes out once.
      expect(timeOf.get(entry?.id as string)).toBe(earliest);
      timeOf.delete(entry?.id as string);
    };
    for (let step = 0; step < 4000; step++) {
      if (random() < 0.6) {
        // Few distinct times, so many entries tie.
        const expiresAt = 1_700_000_000_000 + Math.floor(random() * 50);
        const id = `id-${step}`;
        timeOf.set(id, expiresAt);
        heap.push(expiresAt, id);
      } else {
        check();
      }
      expect(heap.size).toBe(timeOf.size);
    }
    while (timeOf.size > 0) check();
    expect(heap.pop()).toBeUndefined();
  });

  it('peeks at the earliest entry with its id, and rebuild keeps only what it is given', () => {
    const heap = new ExpiryHeap();
    heap.push(30, 'c');
    heap.push(10, 'a');
    heap.push(20, 'b');
    expect(heap.peek()).toEqual({ expiresAt: 10, id: 'a' });
    expect([heap.earliestExpiresAt, heap.earliestId]).toEqual([10, 'a']);
    heap.dropEarliest();
    expect([heap.earliestExpiresAt, heap.earliestId]).toEqual([20, 'b']);
    heap.rebuild([
      { expiresAt: 25, id: 'x' },
      { expiresAt: 15, id: 'y' },
    ]);
    expect(heap.size).toBe(2);
    expect(heap.pop()).toEqual({ expiresAt: 15, id: 'y' });
    expect(heap.pop()).toEqual({ expiresAt: 25, id: 'x' });
    expect(heap.pop()).toBeUndefined();
    expect([heap.earliestExpiresAt, heap.earliestId]).toEqual([
      Number.POSITIVE_INFINITY,
      undefined,
    ]);
  });
});

describe('MemoryStore options', () => {
  it('refuses a misspelt option by name, and open() rejects instead of throwing', async () => {
    expect(() => new MemoryStore({ maxRecordByte: 5 } as never)).toThrow(
      /unknown option 'maxRecordByte'; did you mean 'maxRecordBytes'/,
    );
    await expect(MemoryStore.open({ maxRecordByte: 5 } as never)).rejects.toThrow(TypeError);
    for (const name of ['max_record_bytes', 'MaxRecordBytes', 'maxrecordbytes']) {
      expect(() => new MemoryStore({ [name]: 5 } as never)).toThrow(
        `MemoryStore: unknown option '${name}'; did you mean 'maxRecordBytes'?`,
      );
    }
  });
});
