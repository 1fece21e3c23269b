import { createServer } from 'node:http';
import { CookieJar } from '@sessile/conformance/http';
import {
  aesGcmCodec,
  generateAesKey,
  isSessionError,
  MemoryStore,
  type SessionStore,
} from '@sessile/core';
import Koa from 'koa';
import session from 'koa-session';
import { afterEach, describe, expect, it } from 'vitest';
import { type KoaSessionStore, toKoaSessionStore } from '../src/index.js';
import { closeServer, listen, testStores } from './helpers.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startApp(koaStore: KoaSessionStore, maxAge: number | 'session' = 60_000) {
  const app = new Koa();
  app.keys = ['koa-session signing key'];
  app.use(session({ store: koaStore, maxAge }, app));
  app.use(async (ctx) => {
    if (ctx.method === 'POST' && ctx.path === '/increment') {
      ctx.session.count = (ctx.session.count ?? 0) + 1;
      ctx.body = { count: ctx.session.count };
    } else if (ctx.method === 'POST' && ctx.path === '/logout') {
      ctx.session = null;
      ctx.body = { ok: true };
    } else {
      ctx.body = { count: ctx.session.count ?? 0 };
    }
  });
  const server = createServer(app.callback());
  const url = await listen(server);
  cleanups.push(() => closeServer(server));
  return url;
}

async function openStore(fixture: { open(): Promise<SessionStore> }): Promise<SessionStore> {
  const store = await fixture.open();
  cleanups.push(() => store.close());
  return store;
}

describe.each(testStores())('toKoaSessionStore() under koa-session over $name', (fixture) => {
  it('keeps a session across requests under the key in its cookie, until logout', async () => {
    const store = await openStore(fixture);
    const url = await startApp(toKoaSessionStore(store));
    const jar = new CookieJar();
    expect(await jar.json(`${url}/increment`, { method: 'POST' })).toEqual({ count: 1 });
    expect(await jar.json(`${url}/increment`, { method: 'POST' })).toEqual({ count: 2 });
    expect(await jar.json(`${url}/count`)).toEqual({ count: 2 });

    const key = jar.cookies.get('koa.sess');
    expect(key).toBeDefined();
    const record = await store.get(key as string);
    expect(record).toBeDefined();
    expect(await store.count()).toBe(1);

    expect(await jar.json(`${url}/logout`, { method: 'POST' })).toEqual({ ok: true });
    expect(await store.get(key as string)).toBeUndefined();
    expect(await new CookieJar().json(`${url}/count`)).toEqual({ count: 0 });
    expect(await store.count()).toBe(0);
  });

  it('stores a record that lives as long as koa-session asked', async () => {
    const store = await openStore(fixture);
    const koaStore = toKoaSessionStore(store, { defaultTtlMs: 3_600_000 });
    const before = Date.now();
    await koaStore.set('a-koa-session-key-0001', { count: 1 }, 120_000);
    await koaStore.set('a-koa-session-key-0002', { count: 2 }, 'session');
    const after = Date.now();
    const timed = await store.get('a-koa-session-key-0001');
    const browserSession = await store.get('a-koa-session-key-0002');
    expect(timed?.expiresAt).toBeGreaterThanOrEqual(before + 120_000);
    expect(timed?.expiresAt).toBeLessThanOrEqual(after + 120_000);
    expect(browserSession?.expiresAt).toBeGreaterThanOrEqual(before + 3_600_000);
    expect(browserSession?.expiresAt).toBeLessThanOrEqual(after + 3_600_000);
    expect(await koaStore.get('a-koa-session-key-0002')).toEqual({ count: 2 });
  });
});

describe('toKoaSessionStore()', () => {
  it('reads a key that is not a sessile id as absent, and refuses to store one', async () => {
    const koaStore = toKoaSessionStore(new MemoryStore());
    expect(await koaStore.get('../../etc/passwd')).toBeUndefined();
    await koaStore.destroy('koa:sess:short');
    const refused = await koaStore.set('koa:sess:short', { count: 1 }, 60_000).catch((e) => e);
    expect(isSessionError(refused, 'ERR_INVALID_SESSION_ID')).toBe(true);
  });

  it("refuses a maxAge that is not a finite number of milliseconds or 'session', naming it", async () => {
    const store = new MemoryStore();
    cleanups.push(() => store.close());
    const koaStore = toKoaSessionStore(store);
    for (const maxAge of [Number.NaN, Number.POSITIVE_INFINITY, '1d']) {
      await expect(
        koaStore.set('a-koa-session-key-0003', { count: 1 }, maxAge as number),
      ).rejects.toThrow(
        /^toKoaSessionStore\(\): set's maxAge must be a finite number of milliseconds or 'session', got /,
      );
    }
    expect(await store.count()).toBe(0);
  });

  it('gives a client who sends an unknown key a fresh session', async () => {
    const store = new MemoryStore();
    cleanups.push(() => store.close());
    const url = await startApp(toKoaSessionStore(store));
    const jar = new CookieJar();
    jar.cookies.set('koa.sess', 'not-a-key-anyone-issued-0000');
    expect(await jar.json(`${url}/count`)).toEqual({ count: 0 });
  });

  it('encrypts at rest with aesGcmCodec', async () => {
    const store = new MemoryStore();
    cleanups.push(() => store.close());
    const koaStore = toKoaSessionStore(store, { codec: aesGcmCodec({ keys: [generateAesKey()] }) });
    await koaStore.set('an-encrypted-session-001', { secret: 'plain words' }, 60_000);
    const record = await store.get('an-encrypted-session-001');
    expect(Buffer.from(record?.data ?? []).toString('latin1')).not.toContain('plain words');
    expect(await koaStore.get('an-encrypted-session-001')).toEqual({ secret: 'plain words' });
  });

  it('refuses what it cannot use with a TypeError', () => {
    expect(() => toKoaSessionStore({} as SessionStore)).toThrow(TypeError);
    const store = new MemoryStore();
    expect(() => toKoaSessionStore(store, { ttl: 5 } as never)).toThrow(/ttl/);
    expect(() => toKoaSessionStore(store, { defaultTtlMs: 0 })).toThrow(TypeError);
    // A codec factory passed uncalled, or anything else without encode and decode.
    expect(() => toKoaSessionStore(store, { codec: aesGcmCodec as never })).toThrow(
      /codec must be a SessionCodec.*aesGcmCodec\(\{ keys \}\)/,
    );
    expect(() => toKoaSessionStore(store, { codec: {} as never })).toThrow(/codec must be/);
  });
});
