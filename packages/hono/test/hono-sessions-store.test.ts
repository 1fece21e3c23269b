import { CookieJar } from '@sessile/conformance/http';
import { aesGcmCodec, MemoryStore, type SessionStore } from '@sessile/core';
import { Hono } from 'hono';
import { type Session, sessionMiddleware } from 'hono-sessions';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type HonoSessionsData,
  type HonoSessionsStore,
  toHonoSessionsStore,
} from '../src/index.js';
import { start, testStores } from './helpers.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

type Variables = { session: Session<{ count: number }>; session_key_rotation: boolean };

async function startApp(honoStore: HonoSessionsStore, encryptionKey?: string) {
  const app = new Hono<{ Variables: Variables }>();
  app.use('*', sessionMiddleware({ store: honoStore, encryptionKey, expireAfterSeconds: 900 }));
  app.post('/increment', (c) => {
    const session = c.get('session');
    session.set('count', (session.get('count') ?? 0) + 1);
    return c.json({ count: session.get('count') });
  });
  app.get('/count', (c) => c.json({ count: c.get('session').get('count') ?? 0 }));
  app.post('/login', (c) => {
    c.set('session_key_rotation', true);
    return c.json({ ok: true });
  });
  app.post('/logout', (c) => {
    c.get('session').deleteSession();
    return c.json({ ok: true });
  });
  const server = await start(app.fetch);
  cleanups.push(() => server.close());
  return server.url;
}

async function openStore(fixture: { open(): Promise<SessionStore> }): Promise<SessionStore> {
  const store = await fixture.open();
  cleanups.push(() => store.close());
  return store;
}

function session(count: number, expire: string | null): HonoSessionsData {
  return {
    _data: { count: { value: count, flash: false } },
    _expire: expire,
    _delete: false,
    _accessed: null,
  };
}

describe.each(testStores())('toHonoSessionsStore() under hono-sessions over $name', (fixture) => {
  it('keeps a session across requests under the id in its cookie, through rotation, until logout', async () => {
    const store = await openStore(fixture);
    const url = await startApp(toHonoSessionsStore(store));
    const jar = new CookieJar();
    expect(await jar.json(`${url}/increment`, { method: 'POST' })).toEqual({ count: 1 });
    expect(await jar.json(`${url}/increment`, { method: 'POST' })).toEqual({ count: 2 });
    const first = jar.cookies.get('session') as string;
    expect(await store.get(first)).toBeDefined();

    await jar.json(`${url}/login`, { method: 'POST' });
    const rotated = jar.cookies.get('session') as string;
    expect(rotated).not.toBe(first);
    expect(await store.get(first)).toBeUndefined();
    expect(await jar.json(`${url}/count`)).toEqual({ count: 2 });

    await jar.json(`${url}/logout`, { method: 'POST' });
    expect(await store.get(rotated)).toBeUndefined();
  });

  it('stores each session until its _expire', async () => {
    const store = await openStore(fixture);
    const honoStore = toHonoSessionsStore(store);
    const expire = new Date(Date.now() + 600_000);
    await honoStore.createSession(
      '4a1f0c52-6f0e-4c2b-9d7e-0a3a5b0c9e11',
      session(1, expire.toISOString()),
    );
    expect((await store.get('4a1f0c52-6f0e-4c2b-9d7e-0a3a5b0c9e11'))?.expiresAt).toBe(
      expire.getTime(),
    );
    expect(await honoStore.getSessionById('4a1f0c52-6f0e-4c2b-9d7e-0a3a5b0c9e11')).toEqual(
      session(1, expire.toISOString()),
    );
  });

  it('never brings a deleted session back with a late persist, and never overwrites on create', async () => {
    const store = await openStore(fixture);
    const honoStore = toHonoSessionsStore(store);
    const id = '0d3c2b1a-9e8f-4a6b-8c5d-7e6f5a4b3c2d';
    await honoStore.createSession(id, session(1, null));
    await honoStore.createSession(id, session(5, null));
    expect((await honoStore.getSessionById(id))?._data.count).toEqual({ value: 1, flash: false });

    await honoStore.deleteSession(id);
    await honoStore.persistSessionData(id, session(999, null));
    expect(await honoStore.getSessionById(id)).toBeNull();
    expect(await store.count()).toBe(0);
  });
});

describe('toHonoSessionsStore()', () => {
  it('works behind an encrypted cookie', async () => {
    const store = new MemoryStore();
    cleanups.push(() => store.close());
    const url = await startApp(
      toHonoSessionsStore(store),
      'an encryption key of 32 characters or more',
    );
    const jar = new CookieJar();
    await jar.json(`${url}/increment`, { method: 'POST' });
    expect(await jar.json(`${url}/increment`, { method: 'POST' })).toEqual({ count: 2 });
    expect(await store.count()).toBe(1);
  });

  it('reads an id that is not a sessile id as absent', async () => {
    const honoStore = toHonoSessionsStore(new MemoryStore());
    expect(await honoStore.getSessionById('../../etc/passwd')).toBeNull();
    expect(await honoStore.getSessionById(undefined)).toBeNull();
    await honoStore.deleteSession('short');
  });

  it('deletes instead of storing a session whose _expire has passed', async () => {
    const store = new MemoryStore();
    const honoStore = toHonoSessionsStore(store);
    const id = '5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e';
    await honoStore.createSession(id, session(1, null));
    await honoStore.persistSessionData(id, session(2, new Date(Date.now() - 1000).toISOString()));
    expect(await store.count()).toBe(0);
  });

  it('refuses what it cannot use with a TypeError', () => {
    expect(() => toHonoSessionsStore({} as SessionStore)).toThrow(TypeError);
    const store = new MemoryStore();
    expect(() => toHonoSessionsStore(store, { ttl: 5 } as never)).toThrow(/ttl/);
    expect(() => toHonoSessionsStore(store, { defaultTtlMs: -1 })).toThrow(TypeError);
    expect(() => toHonoSessionsStore(store, { codec: aesGcmCodec as never })).toThrow(
      /codec must be a SessionCodec.*aesGcmCodec\(\{ keys \}\)/,
    );
    expect(() => toHonoSessionsStore(store, { codec: {} as never })).toThrow(/codec must be/);
  });
});
