import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { CookieJar } from '@sessile/conformance/http';
import { manual, type SessionManager, type SessionStore } from '@sessile/core';
import { SqliteStore } from '@sessile/sqlite';
import Fastify from 'fastify';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { fastifySessile } from '../src/index.js';

type Data = { user?: string; count?: number };

const SECRET = 'a secret of 32 characters or more for these tests';
const root = mkdtempSync(join(tmpdir(), 'sessile-fastify-commit-on-error-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

let opened = 0;

/** A Fastify app over a real SQLite file whose routes change the session, then fail or not. */
async function start(commitOnError?: boolean) {
  const store = await SqliteStore.open({ path: join(root, `${++opened}.db`) });
  const app = Fastify();
  app.register(fastifySessile, {
    store,
    secret: SECRET,
    cleanup: manual(),
    ...(commitOnError === undefined ? {} : { commitOnError }),
  });
  const bump = (data: Data) => {
    data.count = (data.count ?? 0) + 1;
  };
  app.register(async (routes) => {
    routes.get('/login', async (request) => {
      Object.assign(request.session.data, { user: 'ada', count: 0 });
      return 'ok';
    });
    routes.get('/throw', async (request) => {
      bump(request.session.data);
      throw new Error('the handler failed after changing the session');
    });
    routes.get('/throw-503', async (request) => {
      bump(request.session.data);
      throw Object.assign(new Error('the backend is down'), { statusCode: 503 });
    });
    routes.get('/reply-500', async (request, reply) => {
      bump(request.session.data);
      return reply.code(500).send({ error: 'answered by the handler' });
    });
    routes.get('/bad-request', async (request, reply) => {
      bump(request.session.data);
      return reply.code(400).send('bad request');
    });
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  cleanups.push(async () => {
    await app.close();
    await store.close();
  });
  return { url, store, manager: app.sessile.manager };
}

/** Every session the store holds, decoded: its data by id. */
async function storedSessions(store: SessionStore, manager: SessionManager) {
  const found: Record<string, unknown> = {};
  for await (const id of store.ids()) {
    const record = await store.get(id);
    if (record !== undefined) found[id] = manager.codec.decode(record.data, id).data;
  }
  return found;
}

async function loggedIn(url: string): Promise<CookieJar> {
  const jar = new CookieJar();
  expect((await jar.fetch(`${url}/login`)).status).toBe(200);
  return jar;
}

describe('@sessile/fastify commitOnError: false', () => {
  it('a handler that throws, or a reply of 500 or above, saves none of its changes', async () => {
    const { url, store, manager } = await start(false);
    const jar = await loggedIn(url);
    const before = await storedSessions(store, manager);
    expect(Object.values(before)).toEqual([{ user: 'ada', count: 0 }]);
    for (const [path, status] of [
      ['/throw', 500],
      ['/throw-503', 503],
      ['/reply-500', 500],
    ] as const) {
      const response = await jar.fetch(`${url}${path}`);
      expect(response.status, path).toBe(status);
      expect(response.headers.getSetCookie(), path).toEqual([]);
      expect(await storedSessions(store, manager), path).toEqual(before);
    }
    // The session is still there and unlocked; a 4xx answer is not a failure and commits.
    expect((await jar.fetch(`${url}/bad-request`)).status).toBe(400);
    expect(Object.values(await storedSessions(store, manager))).toEqual([
      { user: 'ada', count: 1 },
    ]);
  });

  it('a new session whose first request fails is not stored and gets no cookie', async () => {
    const { url, store } = await start(false);
    const response = await new CookieJar().fetch(`${url}/throw`);
    expect(response.status).toBe(500);
    expect(response.headers.getSetCookie()).toEqual([]);
    expect(await store.count()).toBe(0);
  });
});

describe('@sessile/fastify commitOnError default (true)', () => {
  it('a handler that throws after changing the session answers 500, and the change is saved', async () => {
    const { url, store, manager } = await start();
    const jar = await loggedIn(url);
    expect((await jar.fetch(`${url}/throw`)).status).toBe(500);
    expect(Object.values(await storedSessions(store, manager))).toEqual([
      { user: 'ada', count: 1 },
    ]);
  });

  it('refuses a commitOnError that is not a boolean', async () => {
    const store = await SqliteStore.open({ path: join(root, 'refused.db') });
    cleanups.push(() => store.close());
    const app = Fastify();
    app.register(fastifySessile, {
      store,
      secret: SECRET,
      cleanup: manual(),
      commitOnError: 0 as unknown as boolean,
    });
    await expect(app.ready()).rejects.toThrow(
      '@sessile/fastify: commitOnError must be a boolean, got 0',
    );
    await app.close();
  });
});

describe('@sessile/fastify when the commit fails', () => {
  it("answers a plain 500 without the handler's headers, which claimed a save that did not happen", async () => {
    const store = await SqliteStore.open({
      path: join(root, 'too-large.db'),
      maxRecordBytes: 1024,
    });
    const app = Fastify();
    app.register(fastifySessile, { store, secret: SECRET, cleanup: manual() });
    app.get('/login', async (request, reply) => {
      request.session.data.user = 'x'.repeat(4096);
      reply.header('cache-control', 'public, max-age=86400');
      reply.header('set-cookie', 'logged_in=1; Path=/');
      return reply.redirect('/dashboard');
    });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    cleanups.push(async () => {
      await app.close();
      await store.close();
    });
    const response = await fetch(`${url}/login`, { redirect: 'manual' });
    expect(response.status).toBe(500);
    expect(response.headers.get('location')).toBeNull();
    expect(response.headers.get('cache-control')).toBeNull();
    expect(response.headers.getSetCookie()).toEqual([]);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(JSON.parse(await response.text())).toMatchObject({ statusCode: 500 });
    expect(await store.count()).toBe(0);
  });

  it('destroys a streamed reply it does not send, so what the stream holds open is closed', async () => {
    const store = await SqliteStore.open({
      path: join(root, 'too-large-stream.db'),
      maxRecordBytes: 1024,
    });
    const app = Fastify();
    app.register(fastifySessile, { store, secret: SECRET, cleanup: manual() });
    const body = new Readable({ read() {} });
    body.push('the report');
    app.get('/report', async (request, reply) => {
      request.session.data.user = 'x'.repeat(4096);
      reply.type('text/plain');
      return body;
    });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    cleanups.push(async () => {
      await app.close();
      await store.close();
    });
    const response = await fetch(`${url}/report`);
    expect(response.status).toBe(500);
    expect(JSON.parse(await response.text())).toMatchObject({ statusCode: 500 });
    expect(body.destroyed).toBe(true);
  });
});
