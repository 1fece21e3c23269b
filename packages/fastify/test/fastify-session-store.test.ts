import fastifyCookie from '@fastify/cookie';
import fastifySession from '@fastify/session';
import { CookieJar } from '@sessile/conformance/http';
import { MemoryStore, manual, type SessionStore } from '@sessile/core';
import { toExpressStore } from '@sessile/express';
import Fastify, { type FastifyPluginAsync } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { testStores } from './stores.js';

// Loaded untyped: the plugin's module declares request.session as sessile's, and this program
// has @fastify/session's declaration of it (see tsconfig.fastify-session.test.json).
const { fastifySessile } = (await import('../src/index.js' as string)) as {
  fastifySessile: FastifyPluginAsync<Record<string, unknown>>;
};

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startApp(store: SessionStore) {
  const app = Fastify({ forceCloseConnections: true });
  await app.register(fastifyCookie);
  await app.register(fastifySession, {
    // @fastify/session's store type is its own; toExpressStore implements the same callbacks.
    store: toExpressStore(store) as never,
    secret: 'a secret with at least 32 characters in it',
    cookie: { secure: false, maxAge: 60_000 },
    saveUninitialized: false,
  });
  app.post('/increment', async (request) => {
    const count = ((request.session.get('count' as never) as number | undefined) ?? 0) + 1;
    request.session.set('count' as never, count as never);
    return { count, id: request.session.sessionId };
  });
  app.get('/count', async (request) => ({
    count: (request.session.get('count' as never) as number | undefined) ?? 0,
    id: request.session.sessionId,
  }));
  app.post('/logout', async (request) => {
    await request.session.destroy();
    return { ok: true };
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  cleanups.push(() => app.close());
  return url;
}

describe.each(testStores())(
  'toExpressStore with fastify and @fastify/session over $name',
  (fixture) => {
    it('keeps sessions across requests, maps the cookie expiry, and deletes on logout', async () => {
      const store = await fixture.open();
      cleanups.push(() => store.close());
      const url = await startApp(store);
      const jar = new CookieJar();
      const before = Date.now();
      await jar.json(`${url}/increment`, { method: 'POST' });
      const { count, id } = await jar.json<{ count: number; id: string }>(`${url}/increment`, {
        method: 'POST',
      });
      expect(count).toBe(2);
      const record = await store.get(id);
      expect(record?.expiresAt).toBeGreaterThanOrEqual(before + 60_000);
      expect(record?.expiresAt).toBeLessThanOrEqual(Date.now() + 60_000);
      expect(await jar.json(`${url}/count`)).toMatchObject({ count: 2, id });

      await jar.json(`${url}/logout`, { method: 'POST' });
      expect(await store.get(id)).toBeUndefined();
    });
  },
);

describe('@sessile/fastify registered after @fastify/session', () => {
  it('refuses to register after @fastify/session, naming it and what to do, instead of Fastify\'s "decorator already added"', async () => {
    const store = new MemoryStore();
    const app = Fastify();
    await app.register(fastifyCookie);
    await app.register(fastifySession, { secret: 'a secret with at least 32 characters in it' });
    app.register(fastifySessile, {
      store,
      secret: 'a secret with at least 32 characters in it',
      cleanup: manual(),
    });
    await expect(app.ready()).rejects.toThrow(
      '@sessile/fastify: request.session is already declared by another plugin (@fastify/session?): register one session plugin. Remove the other, or keep @fastify/session and give it toExpressStore(store) from @sessile/express as its store instead',
    );
    await app.close().catch(() => undefined);
    await store.close();
  });
});
