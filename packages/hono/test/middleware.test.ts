import { EventEmitter, once } from 'node:events';
import { connect as connectHttp2 } from 'node:http2';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { CookieJar, hangUpWhileWaiting } from '@sessile/conformance/http';
import { MemoryStore, manual, SessionManager } from '@sessile/core';
import { type Context, Hono } from 'hono';
import { setCookie } from 'hono/cookie';
import { MemoryStore as HonoSessionsMemoryStore, sessionMiddleware } from 'hono-sessions';
import { afterEach, describe, expect, it } from 'vitest';
import { type SessileEnv, type SessileHonoOptions, sessile } from '../src/index.js';
import { http2Get, start, startHttp2 } from './helpers.js';

const SECRET = 'a secret of 32 characters or more for these tests';

describe('@sessile/hono beside hono-sessions on one request', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  for (const order of ['after', 'before'] as const) {
    it(`fails the request saying which middleware and what to do when hono-sessions runs ${order} sessile(), and leaves the lock free`, async () => {
      const store = new MemoryStore();
      const sessions = sessile<{ count?: number }>({
        store,
        secret: SECRET,
        cleanup: manual(),
        lock: { waitMs: 60_000 },
      });
      cleanups.push(async () => {
        await sessions.close();
        await store.close();
      });
      const honoSessions = sessionMiddleware({
        store: new HonoSessionsMemoryStore(),
        encryptionKey: 'a key of 32 characters or more for hono-sessions',
        expireAfterSeconds: 900,
      });
      const app = new Hono<SessileEnv<{ count?: number }>>();
      const errors: string[] = [];
      app.onError((error, c) => {
        errors.push(error.message);
        return c.text('failed', 500);
      });
      app.use('/both/*', order === 'after' ? sessions : honoSessions);
      app.use('/both/*', order === 'after' ? honoSessions : sessions);
      app.use('/alone/*', sessions);
      const count = (c: Context<SessileEnv<{ count?: number }>>) => {
        const { data } = c.get('session');
        data.count = (data.count ?? 0) + 1;
        return c.json(data);
      };
      app.get('/both/count', count);
      app.get('/alone/count', count);
      const server = await start(app.fetch);
      cleanups.push(() => server.close());
      const jar = new CookieJar();
      expect(await jar.json(`${server.url}/alone/count`)).toEqual({ count: 1 });

      const both = await jar.fetch(`${server.url}/both/count`);
      expect(both.status).toBe(500);
      await both.text();
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatch(/^@sessile\/hono: /);
      expect(errors[0]).toContain(
        order === 'after'
          ? 'another session middleware after sessile()'
          : 'another session middleware before sessile()',
      );
      expect(errors[0]).toContain("hono-sessions' sessionMiddleware");
      expect(errors[0]).toContain('toHonoSessionsStore(store)');
      // The session was committed and unlocked: its next request neither waits nor lost a visit.
      expect(await jar.json(`${server.url}/alone/count`)).toEqual({ count: 2 });
    });
  }

  it("refuses a logout by c.set('session', undefined) with a TypeError naming invalidate()", async () => {
    const store = new MemoryStore();
    const sessions = sessile<{ user?: string }>({ store, secret: SECRET, cleanup: manual() });
    cleanups.push(async () => {
      await sessions.close();
      await store.close();
    });
    const app = new Hono<SessileEnv<{ user?: string }>>();
    const errors: string[] = [];
    app.onError((error, c) => {
      errors.push(error.message);
      return c.text('failed', 500);
    });
    app.use(sessions);
    app.get('/login', (c) => {
      c.get('session').data.user = 'ada';
      return c.text('in');
    });
    app.get('/logout', (c) => {
      // koa-session's and cookie-session's logout.
      (c.set as (key: string, value: unknown) => void)('session', undefined);
      return c.text('out');
    });
    const server = await start(app.fetch);
    cleanups.push(() => server.close());
    const jar = new CookieJar();
    await jar.fetch(`${server.url}/login`);
    const logout = await jar.fetch(`${server.url}/logout`);
    expect(logout.status).toBe(500);
    await logout.text();
    expect(errors[0]).toContain("await c.get('session').invalidate()");
    expect(await store.count()).toBe(1);
  });
});

// The HTTP scenarios every adapter passes run from conformance.test.ts; these are Hono's own.
describe('@sessile/hono middleware', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /**
   * An app whose `/hold` keeps its session's lock until `letGo()`, and whose other paths count; it
   * records the paths handled, what `app.onError` and the adapter's `onError` saw, and emits
   * `arrived <path>`, `closed <path>` (the connection) and `holding` on `requests`.
   */
  function holdingApp() {
    const store = new MemoryStore();
    const reported: unknown[] = [];
    const sessions = sessile<{ count?: number }>({
      store,
      secret: SECRET,
      cleanup: manual(),
      lock: { waitMs: 60_000 },
      onError: (error) => reported.push(error),
    });
    cleanups.push(async () => {
      await sessions.close();
      await store.close();
    });
    const app = new Hono<SessileEnv<{ count?: number }>>();
    const errors: unknown[] = [];
    app.onError((error, c) => {
      errors.push(error);
      return c.text('failed', 500);
    });
    const requests = new EventEmitter();
    app.use(async (c, next) => {
      requests.emit(`arrived ${c.req.path}`);
      c.env.outgoing.once('close', () => requests.emit(`closed ${c.req.path}`));
      await next();
    });
    app.use(sessions);
    let letGo = () => {};
    const held = new Promise<void>((resolve) => {
      letGo = resolve;
    });
    const handled: string[] = [];
    app.get('/:what', async (c) => {
      handled.push(c.req.path);
      const session = c.get('session');
      if (c.req.param('what') === 'hold') {
        requests.emit('holding');
        await held;
      }
      session.data.count = (session.data.count ?? 0) + 1;
      return c.text(String(session.data.count));
    });
    return { app, requests, letGo: () => letGo(), handled, errors, reported };
  }

  /** An app over a fresh MemoryStore, with `options` for sessile(); closed after the test. */
  function open(options: Partial<SessileHonoOptions<{ count?: number }>> = {}) {
    const store = new MemoryStore();
    const sessions = sessile<{ count?: number }>({
      store,
      secret: SECRET,
      cleanup: manual(),
      ...options,
    });
    cleanups.push(async () => {
      await sessions.close();
      await store.close();
    });
    const app = new Hono<SessileEnv<{ count?: number }>>();
    app.use(sessions);
    return { app, sessions, store };
  }

  it('with commitOnError: false, a handler that throws leaves the stored session as it was', async () => {
    const { app } = open({ commitOnError: false });
    app.get('/:what?', (c) => {
      const session = c.get('session');
      session.data.count = (session.data.count ?? 0) + 1;
      if (c.req.param('what') === 'fail') throw new Error('the handler failed after changing it');
      // Not an Error: Hono's error handler never sees it, and the server answers 500.
      if (c.req.param('what') === 'not-an-error') throw 'the handler threw a string';
      return c.json({ count: session.data.count }, c.req.param('what') === 'bad' ? 400 : 200);
    });
    const server = await start(app.fetch);
    cleanups.push(() => server.close());
    const jar = new CookieJar();
    expect(await jar.json(server.url)).toEqual({ count: 1 });
    expect((await jar.fetch(`${server.url}/fail`)).status).toBe(500);
    expect((await jar.fetch(`${server.url}/not-an-error`)).status).toBe(500);
    // The failed requests' changes were discarded; a 4xx answer still commits.
    const bad = await jar.fetch(`${server.url}/bad`);
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ count: 2 });
    expect(await jar.json(server.url)).toEqual({ count: 3 });
  });

  it("a thrown non-Error after regenerate() still sends the new id, on the server's own 500", async () => {
    const { app } = open();
    app.get('/', (c) => {
      const session = c.get('session');
      session.data.count = (session.data.count ?? 0) + 1;
      return c.json({ count: session.data.count });
    });
    app.get('/login', async (c) => {
      await c.get('session').regenerate();
      throw 'a string, which Hono does not hand its error handler';
    });
    const server = await start(app.fetch);
    cleanups.push(() => server.close());
    const jar = new CookieJar();
    expect(await jar.json(server.url)).toEqual({ count: 1 });
    const before = jar.cookies.get('sid');
    const login = await jar.fetch(`${server.url}/login`);
    expect(login.status).toBe(500);
    expect(jar.cookies.get('sid')).not.toBe(before);
    // Still signed in, with the data the old id carried.
    expect(await jar.json(server.url)).toEqual({ count: 2 });
  });

  it('keeps the Set-Cookie headers the app sets beside its own', async () => {
    const { app } = open();
    app.get('/', (c) => {
      setCookie(c, 'theme', 'dark');
      c.get('session').data.count = 1;
      return c.text('ok');
    });
    const server = await start(app.fetch);
    cleanups.push(() => server.close());
    const jar = new CookieJar();
    await jar.fetch(server.url);
    expect(jar.cookies.get('theme')).toBe('dark');
    expect(jar.cookies.has('sid')).toBe(true);
  });

  it('sets its cookie on a response whose headers are immutable (Response.redirect)', async () => {
    const { app } = open();
    app.get('/', (c) => {
      const session = c.get('session');
      session.data.count = (session.data.count ?? 0) + 1;
      if (session.data.count === 1) return Response.redirect(`${new URL(c.req.url).origin}/`, 302);
      return c.json({ count: session.data.count });
    });
    const server = await start(app.fetch);
    cleanups.push(() => server.close());
    const jar = new CookieJar();
    const redirect = await jar.fetch(server.url, { redirect: 'manual' });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get('location')).toBe(`${server.url}/`);
    expect(jar.cookies.has('sid')).toBe(true);
    expect(await jar.json(server.url)).toEqual({ count: 2 });
  });

  it('never puts a cookie on a Response the handler returns to many clients', async () => {
    const { app } = open();
    // One Response for every request, as an app may keep a redirect or an empty answer.
    const backHome = new Response(null, { status: 303, headers: { location: '/' } });
    app.get('/', (c) => {
      c.get('session').data.count = 1;
      return backHome;
    });
    const server = await start(app.fetch);
    cleanups.push(() => server.close());
    const sent: string[][] = [];
    for (let client = 0; client < 3; client++) {
      const response = await fetch(server.url, { redirect: 'manual' });
      expect(response.status).toBe(303);
      sent.push(response.headers.getSetCookie());
    }
    // Each client gets its own session's cookie, and only that one.
    for (const cookies of sent) expect(cookies).toHaveLength(1);
    expect(new Set(sent.flat()).size).toBe(3);
    expect(backHome.headers.has('set-cookie')).toBe(false);
  });

  it('refuses to run without the bindings of @hono/node-server', async () => {
    const { app, store } = open();
    const errors: unknown[] = [];
    app.onError((error, c) => {
      errors.push(error);
      return c.text('failed', 500);
    });
    app.get('/', (c) => {
      c.get('session').data.count = 1;
      return c.text('ok');
    });
    const response = await app.request('/');
    expect(response.status).toBe(500);
    expect(errors[0]).toBeInstanceOf(TypeError);
    expect(String(errors[0])).toMatch(/@hono\/node-server/);
    expect(await store.count()).toBe(0);
  });

  it('runs once per request when used by an app and its sub-app, never waiting on its own lock', async () => {
    const store = new MemoryStore();
    // A short wait: a second lock of the session the request holds can only time out.
    const sessions = sessile<{ count?: number }>({
      store,
      secret: SECRET,
      cleanup: manual(),
      lock: { waitMs: 200 },
    });
    cleanups.push(async () => {
      await sessions.close();
      await store.close();
    });
    const admin = new Hono<SessileEnv<{ count?: number }>>();
    admin.use(sessions);
    admin.get('/', (c) => {
      const { data } = c.get('session');
      data.count = (data.count ?? 0) + 1;
      return c.json({ count: data.count });
    });
    const app = new Hono<SessileEnv<{ count?: number }>>();
    app.use(sessions);
    app.route('/admin', admin);
    const server = await start(app.fetch);
    cleanups.push(() => server.close());
    const jar = new CookieJar();
    expect(await jar.json(`${server.url}/admin`)).toEqual({ count: 1 });
    const second = await jar.fetch(`${server.url}/admin`);
    expect(second.status).toBe(200);
    expect(await second.json()).toEqual({ count: 2 });
    expect(await store.count()).toBe(1);
  });

  it('cancels a streamed response it does not send when the commit fails', async () => {
    const store = new MemoryStore({ maxRecordBytes: 1024 });
    const sessions = sessile<{ user?: string }>({
      store,
      secret: SECRET,
      cleanup: manual(),
      onError: () => {},
    });
    cleanups.push(async () => {
      await sessions.close();
      await store.close();
    });
    let cancelled = false;
    const app = new Hono<SessileEnv<{ user?: string }>>();
    app.use(sessions);
    app.get('/report', (c) => {
      c.get('session').data.user = 'x'.repeat(4096);
      const body = new ReadableStream({
        pull() {},
        cancel() {
          cancelled = true;
        },
      });
      return new Response(body, { headers: { 'content-type': 'text/plain' } });
    });
    const server = await start(app.fetch);
    cleanups.push(() => server.close());
    const response = await fetch(`${server.url}/report`);
    expect(response.status).toBe(500);
    expect(await response.text()).toBe('Internal Server Error');
    expect(cancelled).toBe(true);
  });

  it('sends the cookie of a regenerated session on a response the handler writes itself', async () => {
    const { app } = open();
    app.get('/login', async (c) => {
      const session = c.get('session');
      await session.regenerate();
      session.data.count = 1;
      c.env.outgoing.writeHead(200, { 'content-type': 'text/plain' });
      c.env.outgoing.end('logged in');
      return RESPONSE_ALREADY_SENT;
    });
    app.get('/', (c) => c.json(c.get('session').data));
    const server = await start(app.fetch);
    cleanups.push(() => server.close());
    const jar = new CookieJar();
    expect(await jar.json(server.url)).toEqual({});
    const login = await jar.fetch(`${server.url}/login`);
    expect(await login.text()).toBe('logged in');
    expect(login.headers.getSetCookie()).toHaveLength(1);
    expect(await jar.json(server.url)).toEqual({ count: 1 });
  });

  it('with commitOnError: false, judges a response the handler writes itself by the status it wrote', async () => {
    const { app } = open({ commitOnError: false });
    app.get('/', (c) => {
      const session = c.get('session');
      session.data.count = (session.data.count ?? 0) + 1;
      return c.json(session.data);
    });
    app.get('/fail', (c) => {
      c.get('session').data.count = 100;
      c.env.outgoing.writeHead(500, { 'content-type': 'text/plain' });
      c.env.outgoing.end('it failed');
      return RESPONSE_ALREADY_SENT;
    });
    const server = await start(app.fetch);
    cleanups.push(() => server.close());
    const jar = new CookieJar();
    expect(await jar.json(server.url)).toEqual({ count: 1 });
    const failed = await jar.fetch(`${server.url}/fail`);
    expect(failed.status).toBe(500);
    expect(await failed.text()).toBe('it failed');
    expect(await jar.json(server.url)).toEqual({ count: 2 });
  });

  it('stops a request whose client hangs up while it waits for the lock, quietly, and leaves the lock free', async () => {
    const { app, requests, letGo, handled, errors, reported } = holdingApp();
    const server = await start(app.fetch);
    cleanups.push(() => server.close());
    // A second request of the session waits for the lock; its client hangs up.
    expect(await hangUpWhileWaiting(server.url, requests, letGo)).toEqual(['1', '2', '3']);
    expect(handled).toEqual(['/count', '/hold', '/count']);
    expect(errors).toEqual([]);
    expect(reported).toEqual([]);
  });

  it('over HTTP/2 too: stops a request whose client hangs up while it waits for the lock, quietly', async () => {
    const { app, requests, letGo, handled, errors, reported } = holdingApp();
    const server = await startHttp2(app.fetch);
    cleanups.push(() => server.close());
    const client = connectHttp2(server.url);
    cleanups.push(async () => {
      client.close();
    });
    const first = await http2Get(client, '/count');
    expect(first.body).toBe('1');
    const cookie = (first.cookies[0] as string).split(';')[0] as string;

    // A request of the session waits for the lock; its client hangs up.
    const holding = once(requests, 'holding');
    const holder = http2Get(client, '/hold', cookie);
    await holding;
    const gone = connectHttp2(server.url);
    gone.on('error', () => {});
    const arrived = once(requests, 'arrived /gone');
    const closed = once(requests, 'closed /gone');
    http2Get(gone, '/gone', cookie).catch(() => undefined);
    await arrived;
    gone.destroy();
    await closed;
    letGo();
    expect((await holder).body).toBe('2');

    const last = await http2Get(client, '/count', cookie);
    expect([last.status, last.body]).toEqual([200, '3']);
    expect(handled).toEqual(['/count', '/hold', '/count']);
    expect(errors).toEqual([]);
    expect(reported).toEqual([]);
  });

  it('leaves a manager it was given open on close()', async () => {
    const store = new MemoryStore();
    const manager = new SessionManager({ store, cleanup: manual() });
    const sessions = sessile({ manager, secret: SECRET });
    await sessions.close();
    expect(manager.closed).toBe(false);
    await manager.close();
    await store.close();
  });

  it('refuses unknown options with a TypeError naming @sessile/hono', () => {
    const store = new MemoryStore();
    expect(() =>
      sessile({ store, secret: SECRET, cleanup: manual(), maxAge: 5 } as SessileHonoOptions),
    ).toThrow(/@sessile\/hono.*maxAge/);
    void store.close();
  });
});
