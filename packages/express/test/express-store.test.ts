import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { CookieJar } from '@sessile/conformance/http';
import {
  aesGcmCodec,
  generateAesKey,
  generateSessionId,
  isSessionError,
  jsonCodec,
  MemoryStore,
  type SessionRecord,
  type SessionStore,
  type SetOptions,
} from '@sessile/core';
import { RedisStore } from '@sessile/redis';
import express from 'express';
import session from 'express-session';
import { createClient } from 'redis';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type ExpressSessionData,
  type ExpressSessionStore,
  encodeExpressSession,
  sessile,
  toExpressStore,
} from '../src/index.js';
import { closeServer, listen, testStores } from './helpers.js';

declare module 'express-session' {
  interface SessionData {
    count: number;
    user: string;
  }
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function call<T>(run: (callback: (error: unknown, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) =>
    run((error, value) => (error ? reject(error) : resolve(value as T))),
  );
}

async function startApp(expressStore: ExpressSessionStore, maxAgeMs = 60_000) {
  const app = express();
  app.use(
    session({
      store: expressStore,
      secret: 'express-session secret',
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: maxAgeMs },
    }),
  );
  app.post('/increment', (req, res) => {
    req.session.count = (req.session.count ?? 0) + 1;
    res.json({ count: req.session.count, id: req.sessionID });
  });
  app.get('/count', (req, res) => {
    res.json({ count: req.session.count ?? 0, user: req.session.user ?? null, id: req.sessionID });
  });
  app.post('/login', (req, res, next) => {
    req.session.regenerate((error) => {
      if (error) return next(error);
      req.session.user = 'alice';
      res.json({ id: req.sessionID });
    });
  });
  app.post('/login-for-this-visit', (req, res) => {
    req.session.user = 'alice';
    // express-session's documented way to a cookie that lasts until the browser closes.
    Object.assign(req.session.cookie, { expires: false });
    res.json({ id: req.sessionID });
  });
  app.post('/logout', (req, res, next) => {
    req.session.destroy((error) => (error ? next(error) : res.json({ ok: true })));
  });
  const server = createServer(app);
  const url = await listen(server);
  cleanups.push(() => closeServer(server));
  return url;
}

describe.each(testStores())(
  'toExpressStore with express 5 and express-session over $name',
  (fixture) => {
    async function openStore(): Promise<SessionStore> {
      const store = await fixture.open();
      cleanups.push(() => store.close());
      return store;
    }

    it('keeps sessions across requests, regenerates on login and deletes on logout', async () => {
      const store = await openStore();
      const url = await startApp(toExpressStore(store));
      const jar = new CookieJar();
      await jar.json(`${url}/increment`, { method: 'POST' });
      const { count, id } = await jar.json<{ count: number; id: string }>(`${url}/increment`, {
        method: 'POST',
      });
      expect(count).toBe(2);
      expect(await store.count()).toBe(1);

      const { id: loggedIn } = await jar.json<{ id: string }>(`${url}/login`, { method: 'POST' });
      expect(loggedIn).not.toBe(id);
      expect(await store.get(id)).toBeUndefined();
      expect(await jar.json(`${url}/count`)).toMatchObject({ user: 'alice', id: loggedIn });

      await jar.json(`${url}/logout`, { method: 'POST' });
      expect(await store.get(loggedIn)).toBeUndefined();
    });

    it('reads a session that sessile() took over and saved as absent, so express-session answers instead of failing', async () => {
      const store = await openStore();
      const url = await startApp(toExpressStore(store));
      const jar = new CookieJar();
      const { id } = await jar.json<{ id: string }>(`${url}/login`, { method: 'POST' });
      // A request with the same connect.sid reaches an instance already on sessile() (a
      // rolling deploy of the migration's step 2), which adopts the session and saves it.
      const sessions = sessile({
        store,
        secret: 'a secret of 32 characters or more for these tests',
        acceptExpressSession: { secret: 'express-session secret' },
      });
      const app = express();
      app.use(sessions);
      app.get('/', (req, res) => {
        const taken = (req as unknown as { session: { id: string; data: { seen?: boolean } } })
          .session;
        taken.data.seen = true;
        res.json({ id: taken.id });
      });
      const server = createServer(app);
      const sessileUrl = await listen(server);
      cleanups.push(async () => {
        await closeServer(server);
        await sessions.close();
      });
      const adopter = jar.clone();
      expect(await adopter.json(sessileUrl)).toEqual({ id });
      // Back on an express-session instance with connect.sid: signed out, not a 500.
      const response = await jar.fetch(`${url}/count`);
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ count: 0, user: null });
    });

    it("maps the session cookie's expiry onto the record's expiresAt", async () => {
      const store = await openStore();
      const url = await startApp(toExpressStore(store), 60_000);
      const jar = new CookieJar();
      const before = Date.now();
      const { id } = await jar.json<{ id: string }>(`${url}/increment`, { method: 'POST' });
      const record = await store.get(id);
      expect(record?.expiresAt).toBeGreaterThanOrEqual(before + 60_000);
      expect(record?.expiresAt).toBeLessThanOrEqual(Date.now() + 60_000);
    });

    it('keeps a session whose cookie lasts this browser visit only (expires = false) for defaultTtlMs', async () => {
      const store = await openStore();
      const defaultTtlMs = 10 * 60_000;
      const url = await startApp(toExpressStore(store, { defaultTtlMs }));
      const jar = new CookieJar();
      const before = Date.now();
      const response = await jar.fetch(`${url}/login-for-this-visit`, { method: 'POST' });
      const { id } = (await response.json()) as { id: string };
      // The browser holds it as a session cookie, without Expires.
      expect(response.headers.get('set-cookie')).not.toMatch(/expires=/i);
      const record = await store.get(id);
      expect(record?.expiresAt).toBeGreaterThanOrEqual(before + defaultTtlMs);
      expect(record?.expiresAt).toBeLessThanOrEqual(Date.now() + defaultTtlMs);
      // Still signed in on the next requests, which only touch the session.
      expect(await jar.json(`${url}/count`)).toMatchObject({ user: 'alice', id });
      expect(await jar.json(`${url}/count`)).toMatchObject({ user: 'alice', id });
      expect((await store.get(id))?.expiresAt).toBeGreaterThanOrEqual(before + defaultTtlMs);
    });
  },
);

const REDIS_URL = 'redis://127.0.0.1:6379';

describe('toExpressStore over Redis (needs Redis at 127.0.0.1:6379)', () => {
  it('all() leaves out a record a newer version wrote, as it leaves out a damaged one', async () => {
    // node-redis, the Redis store's own client, writes what this version cannot.
    const raw = createClient({ url: REDIS_URL });
    await raw.connect();
    const prefix = `sessile-express-test-${randomBytes(6).toString('hex')}:`;
    const store = await RedisStore.open({ client: raw, prefix });
    cleanups.push(async () => {
      await store.clear();
      await store.close();
      await raw.close();
    });
    const expressStore = toExpressStore(store);
    const [good, damaged, newer] = [generateSessionId(), generateSessionId(), generateSessionId()];
    const session = { cookie: { expires: new Date(Date.now() + 60_000).toISOString() }, n: 1 };
    await call<void>((done) => expressStore.set(good, session, done));
    await raw.set(`${prefix}s:{${damaged}}`, 'not a record', { PX: 60_000 });
    // A header of record format 4, as a later version might write it in a rolling deploy.
    const hex = (value: number) =>
      Buffer.from(new Float64Array([value]).buffer)
        .reverse()
        .toString('hex');
    await raw.set(`${prefix}s:{${newer}}`, `~s4${hex(Date.now() + 60_000)}${hex(0)}0000{}`, {
      PX: 60_000,
    });
    const refusal = await store.get(newer).then(
      () => 'resolved',
      (error: { code?: string }) => error.code,
    );
    expect(refusal).toBe('ERR_UNSUPPORTED');
    expect(await call((done) => expressStore.all(done))).toEqual([{ ...session, id: good }]);
  });
});

describe('toExpressStore callbacks', () => {
  function setup(options = {}) {
    const store = new MemoryStore();
    cleanups.push(() => store.close());
    return { store, expressStore: toExpressStore(store, options) };
  }
  const sid = 'abcdefghijklmnopqrstuvwxyz012345';
  const inOneMinute = () => new Date(Date.now() + 60_000).toISOString();

  it('implements get, set, touch, destroy, all, length and clear', async () => {
    const { store, expressStore } = setup();
    const session: ExpressSessionData = { cookie: { expires: inOneMinute() }, count: 3 };
    await call<void>((done) => expressStore.set(sid, session, done));
    expect(await call((done) => expressStore.get(sid, done))).toEqual(session);
    expect(await call((done) => expressStore.get('unknown-but-valid-id-1234', done))).toBeNull();
    expect(await call((done) => expressStore.get('../not an id', done))).toBeNull();
    expect(await call((done) => expressStore.length(done))).toBe(1);
    expect(await call((done) => expressStore.all(done))).toEqual([{ ...session, id: sid }]);

    const later = new Date(Date.now() + 120_000);
    await call<void>((done) => expressStore.touch(sid, { cookie: { expires: later } }, done));
    expect((await store.get(sid))?.expiresAt).toBe(later.getTime());

    await call<void>((done) => expressStore.destroy(sid, done));
    expect(await call((done) => expressStore.get(sid, done))).toBeNull();
    await call<void>((done) => expressStore.set(sid, session, done));
    await call<void>((done) => expressStore.clear(done));
    expect(await call((done) => expressStore.length(done))).toBe(0);
  });

  it('refuses a callback that is not a function with a TypeError at the call, doing nothing', async () => {
    const { expressStore } = setup();
    const session: ExpressSessionData = { cookie: { expires: inOneMinute() } };
    await call<void>((done) => expressStore.set(sid, session, done));
    const calls: Array<[string, (callback: never) => void]> = [
      ['get', (callback) => expressStore.get(sid, callback)],
      ['set', (callback) => expressStore.set(sid, { ...session, count: 9 }, callback)],
      ['touch', (callback) => expressStore.touch(sid, session, callback)],
      ['destroy', (callback) => expressStore.destroy(sid, callback)],
      ['all', (callback) => expressStore.all(callback)],
      ['length', (callback) => expressStore.length(callback)],
      ['clear', (callback) => expressStore.clear(callback)],
    ];
    for (const [method, invoke] of calls) {
      expect(() => invoke('not a function' as never)).toThrow(
        new TypeError(
          `toExpressStore(): ${method}'s callback must be a function, got 'not a function' (a string)`,
        ),
      );
    }
    // Nothing was written, touched, deleted or cleared.
    expect(await call((done) => expressStore.get(sid, done))).toEqual(session);
  });

  it('stores a session without a cookie expiry for defaultTtlMs, and drops one already expired', async () => {
    const { store, expressStore } = setup({ defaultTtlMs: 5_000 });
    const before = Date.now();
    await call<void>((done) => expressStore.set(sid, { cookie: { expires: null } }, done));
    const record = await store.get(sid);
    expect(record?.expiresAt).toBeGreaterThanOrEqual(before + 5_000);
    expect(record?.expiresAt).toBeLessThanOrEqual(Date.now() + 5_000);
    await call<void>((done) =>
      expressStore.set(sid, { cookie: { expires: new Date(Date.now() - 1000) } }, done),
    );
    expect(await store.get(sid)).toBeUndefined();
  });

  it('stores and touches a session whose cookie has expires false (a browser-session cookie) for defaultTtlMs', async () => {
    const defaultTtlMs = 10 * 60_000;
    const { store, expressStore } = setup({ defaultTtlMs });
    // As express-session hands it over after `req.session.cookie.expires = false`.
    const session = { cookie: { originalMaxAge: false, expires: false, path: '/' }, user: 'alice' };
    const before = Date.now();
    await call<void>((done) => expressStore.set(sid, session as ExpressSessionData, done));
    expect(await call((done) => expressStore.get(sid, done))).toEqual(session);
    expect((await store.get(sid))?.expiresAt).toBeGreaterThanOrEqual(before + defaultTtlMs);

    await store.touch(sid, Date.now() + 60_000);
    const touchedAt = Date.now();
    await call<void>((done) => expressStore.touch(sid, session as ExpressSessionData, done));
    expect((await store.get(sid))?.expiresAt).toBeGreaterThanOrEqual(touchedAt + defaultTtlMs);
    expect(await call((done) => expressStore.get(sid, done))).toEqual(session);
  });

  it("refuses, when made, a store that is not a sessile store, naming a session middleware's own", () => {
    // express-session's MemoryStore has get, set and destroy; taken for a sessile store, it
    // would fail every request.
    expect(() => toExpressStore(new session.MemoryStore() as never)).toThrow(
      /^toExpressStore\(\) needs a sessile SessionStore, got an object with get, set and destroy: a session middleware's own store; pass a sessile store, such as MemoryStore from @sessile\/core$/,
    );
    const getOnly = { get: async () => undefined };
    expect(() => toExpressStore(getOnly as never)).toThrow(
      /^toExpressStore\(\) needs a sessile SessionStore, got an object$/,
    );
  });

  it('names the adapter or the middleware store given to sessile() where a sessile store goes', async () => {
    const store = new MemoryStore();
    const secret = 'a secret of 32 characters or more for these tests';
    expect(() => sessile({ store: toExpressStore(store) as never, secret })).toThrow(
      'sessile() needs { store }: a SessionStore, got an object (an adapter for another session middleware, such as toExpressStore(store)): pass the sessile store it wraps, its .store',
    );
    expect(() => sessile({ store: new session.MemoryStore() as never, secret })).toThrow(
      "sessile() needs { store }: a SessionStore, got an object with get, set and destroy: a session middleware's own store; pass a sessile store, such as MemoryStore from @sessile/core",
    );
    await store.close();
  });

  it("names a store's open() left without await, which passes a promise of the store", async () => {
    const opening = Promise.resolve(new MemoryStore());
    const expected =
      "needs a sessile SessionStore, got an object (a promise: await the store's open() first)";
    expect(() => toExpressStore(opening as never)).toThrow(`toExpressStore() ${expected}`);
    expect(() =>
      sessile({
        store: opening as never,
        secret: 'a secret of 32 characters or more for these tests',
      }),
    ).toThrow(
      "sessile() needs { store }: a SessionStore, got an object (a promise: await the store's open() first)",
    );
    await (await opening).close();
  });

  it('hands a failure a store throws at once to the callback, never to its caller', async () => {
    const failure = new Error('the backend is unreachable');
    // A store not built on BaseStore, whose calls may throw instead of rejecting.
    class ThrowingStore extends MemoryStore {
      override lend(): never {
        throw failure;
      }
      override get(): never {
        throw failure;
      }
      override delete(): never {
        throw failure;
      }
      override count(): never {
        throw failure;
      }
      override clear(): never {
        throw failure;
      }
    }
    const store = new ThrowingStore();
    cleanups.push(() => store.close());
    const expressStore = toExpressStore(store);
    const calls: Array<(done: (error?: unknown) => void) => void> = [
      (done) => expressStore.get(sid, done),
      (done) => expressStore.destroy(sid, done),
      (done) => expressStore.length(done),
      (done) => expressStore.clear(done),
    ];
    for (const run of calls) {
      let threw: unknown;
      const answered = new Promise<unknown>((resolve) => {
        try {
          run(resolve);
        } catch (error) {
          threw = error;
          resolve(undefined);
        }
      });
      expect(await answered).toBe(failure);
      expect(threw).toBeUndefined();
    }
  });

  it('reports failures as SessionErrors through the callback', async () => {
    const { store, expressStore } = setup();
    await store.set(sid, {
      data: new TextEncoder().encode('garbage'),
      expiresAt: Date.now() + 60_000,
    });
    const error = await call((done) => expressStore.get(sid, done)).catch(
      (caught: unknown) => caught,
    );
    expect(isSessionError(error, 'ERR_CORRUPT_RECORD')).toBe(true);
    // all() leaves an undecodable record out rather than failing every session.
    expect(await call((done) => expressStore.all(done))).toEqual([]);
  });

  it('encrypts at rest with a codec, and detects tampering', async () => {
    const { store, expressStore } = setup({ codec: aesGcmCodec({ keys: [generateAesKey()] }) });
    await call<void>((done) =>
      expressStore.set(sid, { cookie: { expires: inOneMinute() }, user: 'alice' }, done),
    );
    const record = await store.get(sid);
    if (record === undefined) throw new Error('expected a record');
    expect(Buffer.from(record.data).includes('alice')).toBe(false);
    const tampered = Uint8Array.from(record.data);
    tampered[10] = (tampered[10] as number) ^ 1;
    await store.set(sid, { data: tampered, expiresAt: record.expiresAt });
    const error = await call((done) => expressStore.get(sid, done)).catch(
      (caught: unknown) => caught,
    );
    expect(isSessionError(error, 'ERR_CORRUPT_RECORD')).toBe(true);
  });

  it('stores the same JSON envelope with the default codec as jsonCodec().encode of the session round-tripped through JSON', async () => {
    const { store, expressStore } = setup();
    const expires = new Date(Date.now() + 60_000);
    const session = {
      cookie: { expires, originalMaxAge: 60_000, toJSON: undefined },
      user: 'alice',
      nested: { skipped: undefined, list: [1, 'two', null], when: new Date(0) },
      '\u2028 \ud800': 'lone surrogate',
    };
    const before = Date.now();
    await call<void>((done) => expressStore.set(sid, session, done));
    const record = await store.get(sid);
    if (record === undefined) throw new Error('expected a record');
    const stored = jsonCodec().decode(record.data, sid);
    expect(stored.createdAt).toBe(stored.lastAccessedAt);
    expect(stored.createdAt).toBeGreaterThanOrEqual(before);
    const expected = jsonCodec().encode(
      {
        createdAt: stored.createdAt,
        lastAccessedAt: stored.createdAt,
        data: JSON.parse(JSON.stringify(session)),
      },
      sid,
    );
    expect(Buffer.from(record.data).equals(Buffer.from(expected))).toBe(true);
    expect(encodeExpressSession(sid, session, jsonCodec(), stored.createdAt)).toEqual(
      encodeExpressSession(sid, session, undefined, stored.createdAt),
    );
  });

  it('stores the UTF-8 bytes of ASCII and non-ASCII sessions alike, and counts bytes against maxRecordBytes', async () => {
    const store = new MemoryStore({ maxRecordBytes: 200 });
    cleanups.push(() => store.close());
    const expressStore = toExpressStore(store);
    const expires = new Date(Date.now() + 60_000).toISOString();
    for (const user of ['alice', 'zoë 🍪']) {
      const session = { cookie: { expires }, user };
      await call<void>((done) => expressStore.set(sid, session, done));
      const record = await store.get(sid);
      if (record === undefined) throw new Error('expected a record');
      const { createdAt } = jsonCodec().decode(record.data, sid);
      expect(Buffer.from(record.data)).toEqual(
        Buffer.from(encodeExpressSession(sid, session, jsonCodec(), createdAt)),
      );
      expect(await call((done) => expressStore.get(sid, done))).toEqual(session);
    }
    // Under 200 characters in all, over 200 bytes: the limit counts the bytes.
    const wide = { cookie: { expires }, user: 'é'.repeat(60) };
    const text = new TextDecoder().decode(encodeExpressSession(sid, wide));
    expect([text.length < 200, Buffer.byteLength(text) > 200]).toEqual([true, true]);
    const error = await call<void>((done) => expressStore.set(sid, wide, done)).catch(
      (caught: unknown) => caught,
    );
    expect(isSessionError(error, 'ERR_RECORD_TOO_LARGE')).toBe(true);
    expect(await call((done) => expressStore.get(sid, done))).toEqual({
      cookie: { expires },
      user: 'zoë 🍪',
    });
  });

  it('hands a MemoryStore subclass plain records, which it may copy or clone', async () => {
    class CappedStore extends MemoryStore {
      override set(id: string, record: SessionRecord, options?: SetOptions) {
        const capped = { ...record, expiresAt: Math.min(record.expiresAt, Date.now() + 30_000) };
        return super.set(id, structuredClone(capped), options);
      }
    }
    const store = new CappedStore();
    cleanups.push(() => store.close());
    const expressStore = toExpressStore(store);
    const session = { cookie: { expires: inOneMinute() }, user: 'alice' };
    await call<void>((done) => expressStore.set(sid, session, done));
    expect(await call((done) => expressStore.get(sid, done))).toEqual(session);
    expect((await store.get(sid))?.expiresAt).toBeLessThanOrEqual(Date.now() + 30_000);
  });

  it('refuses to save a session that is not a JSON object, through the callback', async () => {
    const { store, expressStore } = setup();
    for (const session of [[1, 2], 'text', 42]) {
      const error = await call<void>((done) => expressStore.set(sid, session as never, done)).catch(
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(TypeError);
      expect(String(error)).toMatch(/must be saved as a JSON object/);
    }
    expect(await store.count()).toBe(0);
  });

  it('refuses unknown options and a defaultTtlMs that is not a positive duration', () => {
    const store = new MemoryStore();
    cleanups.push(() => store.close());
    expect(() => toExpressStore(store, { defaultTtl: 60_000 } as never)).toThrow(
      "toExpressStore(): unknown option 'defaultTtl'; did you mean 'defaultTtlMs'?",
    );
    for (const defaultTtlMs of [0, -1, '60000', Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => toExpressStore(store, { defaultTtlMs } as never)).toThrow(
        /^toExpressStore\(\): defaultTtlMs must be a number of milliseconds greater than 0/,
      );
    }
    // It arms no timer, so it may outlast Node's timer limit: a year is fine.
    expect(() => toExpressStore(store, { defaultTtlMs: 365 * 24 * 60 * 60_000 })).not.toThrow();
    expect(() => toExpressStore(store, [] as never)).toThrow(
      'toExpressStore(): options must be an object, got an array',
    );
  });

  it.each([
    [
      'ttl',
      86_400,
      /unknown option 'ttl'; .*defaultTtlMs \(in milliseconds, where the peers' ttl counted seconds\)/,
    ],
    ['serializer', JSON, /unknown option 'serializer'; codec encodes sessions/],
    ['prefix', 'sess:', /unknown option 'prefix'; a key prefix is the store's own option/],
  ])("refuses a switching app's %s option, saying what takes its place", (name, value, message) => {
    const store = new MemoryStore();
    cleanups.push(() => store.close());
    expect(() => toExpressStore(store, { [name]: value } as never)).toThrow(message);
  });

  it('emits connect once ready and disconnect on close, and is an express-session Store', async () => {
    const { expressStore } = setup();
    const events: string[] = [];
    expressStore.on('connect', () => events.push('connect'));
    expressStore.on('disconnect', () => events.push('disconnect'));
    await Promise.resolve();
    expect(events).toEqual(['connect']);
    expect(expressStore).toBeInstanceOf(session.Store);
    await expressStore.close();
    expect(events).toEqual(['connect', 'disconnect']);
    const error = await call((done) => expressStore.length(done)).catch(
      (caught: unknown) => caught,
    );
    expect(isSessionError(error, 'ERR_STORE_CLOSED')).toBe(true);
  });
});
