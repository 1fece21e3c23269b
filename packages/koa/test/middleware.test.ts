import { EventEmitter } from 'node:events';
import { createServer } from 'node:http';
import { CookieJar, hangUpWhileWaiting } from '@sessile/conformance/http';
import { jsonCodec, MemoryStore, manual, SessionManager } from '@sessile/core';
import Koa from 'koa';
import koaSession from 'koa-session';
import { afterEach, describe, expect, it } from 'vitest';
import { type SessileContext, type SessileKoaOptions, sessile } from '../src/index.js';
import { closeServer, listen } from './helpers.js';

const SECRET = 'a secret of 32 characters or more for these tests';

// The HTTP scenarios every adapter passes run from conformance.test.ts; these are Koa's own.
describe('@sessile/koa middleware', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  type Data = { count?: number; user?: string };

  /** An app over a fresh store; with `catcher`, an error middleware above sessile() answers errors. */
  /** Serves `app` on a free port until the test ends, then closes it, `sessions` and `store`. */
  async function serve(app: Koa, sessions: { close(): Promise<void> }, store: MemoryStore) {
    const server = createServer(app.callback());
    const url = await listen(server);
    cleanups.push(async () => {
      await closeServer(server);
      await sessions.close();
      await store.close();
    });
    return url;
  }

  async function startApp(
    handler: (ctx: SessileContext<Data>) => void | Promise<void>,
    { catcher = false } = {},
  ) {
    const store = new MemoryStore();
    const sessions = sessile<Data>({ store, secret: SECRET, cleanup: manual() });
    const app = new Koa();
    app.silent = true;
    if (catcher) {
      app.use(async (ctx, next) => {
        try {
          await next();
        } catch (error) {
          ctx.status = (error as { status?: number }).status ?? 500;
          ctx.body = (error as Error).message;
        }
      });
    }
    app.use(sessions);
    app.use(async (ctx) => handler(ctx as SessileContext<Data>));
    const url = await serve(app, sessions, store);
    return { url, store, sessions };
  }

  it('commits before the error of a handler reaches the middleware above, and releases the lock', async () => {
    const store = new MemoryStore();
    const sessions = sessile<{ count?: number }>({ store, secret: SECRET, cleanup: manual() });
    const app = new Koa();
    app.use(async (ctx, next) => {
      try {
        await next();
      } catch {
        // What the store holds once the error has come up through sessile().
        const id = sessions.cookie.read(ctx.get('cookie')) as string;
        const record = await store.get(id);
        ctx.status = 500;
        ctx.body = { stored: jsonCodec().decode(record?.data as Uint8Array, id).data };
      }
    });
    app.use(sessions);
    app.use(async (ctx) => {
      const session = (ctx as SessileContext<{ count?: number }>).session;
      session.data.count = (session.data.count ?? 0) + 1;
      if (ctx.path === '/fail') throw new Error('the handler failed after changing the session');
      ctx.body = { count: session.data.count };
    });
    const url = await serve(app, sessions, store);
    const jar = new CookieJar();
    expect(await jar.json(url)).toEqual({ count: 1 });
    const failed = await jar.fetch(`${url}/fail`);
    expect(failed.status).toBe(500);
    expect(await failed.json()).toEqual({ stored: { count: 2 } });
    expect(await jar.json(url)).toEqual({ count: 3 });
  });

  it('sends the cookie of a session committed before a thrown error, through Koa and through an error middleware', async () => {
    for (const catcher of [false, true]) {
      const { url, store } = await startApp(
        async (ctx) => {
          const session = ctx.session;
          if (ctx.path === '/login') {
            session.data.user = 'ada';
            ctx.body = 'in';
            return;
          }
          if (ctx.path === '/elevate') {
            await session.regenerate();
            ctx.throw(422, 'second factor malformed');
          }
          ctx.body = session.data.user ?? 'nobody';
        },
        { catcher },
      );
      const jar = new CookieJar();
      await jar.fetch(`${url}/login`);
      const failed = await jar.fetch(`${url}/elevate`);
      expect(failed.status).toBe(422);
      expect(failed.headers.getSetCookie()).toHaveLength(1);
      // The regenerated id reached the client: still signed in, and one session stored.
      expect(await (await jar.fetch(url)).text()).toBe('ada');
      expect(await store.count()).toBe(1);
    }
  });

  it('sends the cookie of a committed session when a middleware above it fails afterwards', async () => {
    const store = new MemoryStore();
    const sessions = sessile<Data>({ store, secret: SECRET, cleanup: manual() });
    const app = new Koa();
    app.silent = true;
    // A middleware above sessile() that fails once the response is ready (an audit log, say).
    app.use(async (ctx, next) => {
      await next();
      if (ctx.path === '/elevate') throw new Error('the audit log is down');
    });
    app.use(sessions);
    app.use(async (ctx) => {
      const session = (ctx as SessileContext<Data>).session;
      if (ctx.path === '/login') session.data.user = 'ada';
      if (ctx.path === '/elevate') await session.regenerate();
      ctx.body = session.data.user ?? 'nobody';
    });
    const url = await serve(app, sessions, store);
    const jar = new CookieJar();
    await jar.fetch(`${url}/login`);
    const failed = await jar.fetch(`${url}/elevate`);
    expect(failed.status).toBe(500);
    expect(failed.headers.getSetCookie()).toHaveLength(1);
    // The regenerated id reached the client: still signed in, and one session stored.
    expect(await (await jar.fetch(url)).text()).toBe('ada');
    expect(await store.count()).toBe(1);
  });

  it('never puts a cookie on the thrown error, which an app may throw again for other clients', async () => {
    const forbidden = Object.assign(new Error('forbidden'), { status: 403, expose: true });
    const { url } = await startApp((ctx) => {
      ctx.session.data.count = (ctx.session.data.count ?? 0) + 1;
      throw forbidden;
    });
    for (let client = 0; client < 3; client++) {
      const response = await fetch(url);
      expect(response.status).toBe(403);
      // Each new client gets its own session's cookie, and only that one.
      expect(response.headers.getSetCookie()).toHaveLength(1);
    }
    expect((forbidden as { headers?: unknown }).headers).toBeUndefined();
  });

  it('with commitOnError: false, a handler that throws leaves the stored session as it was', async () => {
    const store = new MemoryStore();
    const sessions = sessile<{ count?: number }>({
      store,
      secret: SECRET,
      cleanup: manual(),
      commitOnError: false,
    });
    const app = new Koa();
    app.silent = true;
    app.use(sessions);
    app.use(async (ctx) => {
      const session = (ctx as SessileContext<{ count?: number }>).session;
      session.data.count = (session.data.count ?? 0) + 1;
      if (ctx.path === '/fail') throw new Error('the handler failed after changing the session');
      // Koa answers these 500 too: a status it does not know, and a thrown non-Error.
      if (ctx.path === '/status-499') throw Object.assign(new Error('odd status'), { status: 499 });
      if (ctx.path === '/not-an-error') throw { status: 200, message: 'not an Error' };
      if (ctx.path === '/bad') ctx.status = 400;
      ctx.body = { count: session.data.count };
    });
    const url = await serve(app, sessions, store);
    const jar = new CookieJar();
    expect(await jar.json(url)).toEqual({ count: 1 });
    for (const path of ['/fail', '/status-499', '/not-an-error']) {
      expect((await jar.fetch(`${url}${path}`)).status, path).toBe(500);
    }
    // The failed requests' changes were discarded; a 4xx answer still commits.
    const bad = await jar.fetch(`${url}/bad`);
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ count: 2 });
    expect(await jar.json(url)).toEqual({ count: 3 });
  });

  it('keeps the Set-Cookie headers the app sets beside its own', async () => {
    const { url } = await startApp((ctx) => {
      ctx.cookies.set('theme', 'dark', { signed: false });
      ctx.session.data.count = 1;
      ctx.body = 'ok';
    });
    const jar = new CookieJar();
    await jar.fetch(url);
    expect(jar.cookies.get('theme')).toBe('dark');
    expect(jar.cookies.has('sid')).toBe(true);
  });

  it.each([
    ['with a cookie of its own opens its own session in its own store', 'admin_sid', 200],
    ['keeping its sessions under the same cookie name in another store is refused', 'sid', 500],
  ])('a second, different sessile() on one request %s', async (_, name, status) => {
    const publicStore = new MemoryStore();
    const adminStore = new MemoryStore();
    const publicSessions = sessile<Data>({ store: publicStore, secret: SECRET, cleanup: manual() });
    const adminSessions = sessile<Data>({
      store: adminStore,
      secret: `admin ${SECRET}`,
      cleanup: manual(),
      cookie: { name },
    });
    cleanups.push(() => publicStore.close());
    const app = new Koa();
    app.silent = true;
    app.use(publicSessions);
    app.use(async (ctx, next) => {
      (ctx as SessileContext<Data>).session.data.count = 7;
      await next();
    });
    app.use(adminSessions);
    app.use(async (ctx) => {
      const { data } = (ctx as SessileContext<Data>).session;
      data.user = 'admin';
      ctx.body = { ...data };
    });
    const url = await serve(app, adminSessions, adminStore);
    cleanups.push(() => publicSessions.close());
    const jar = new CookieJar();
    const answer = await jar.fetch(url);
    expect(answer.status).toBe(status);
    // It sees none of what the public session holds.
    if (status === 200) expect(await answer.json()).toEqual({ user: 'admin' });
    // The public session is saved where it belongs whatever the second one did.
    expect([await publicStore.count(), await adminStore.count()]).toEqual([
      1,
      status === 200 ? 1 : 0,
    ]);
  });

  it('runs once per request when used twice (an app and its router), never waiting on its own lock', async () => {
    const store = new MemoryStore();
    // A short wait: a second lock of the session the request holds can only time out.
    const sessions = sessile<Data>({
      store,
      secret: SECRET,
      cleanup: manual(),
      lock: { waitMs: 200 },
    });
    const app = new Koa();
    app.silent = true;
    app.use(sessions);
    app.use(sessions);
    app.use(async (ctx) => {
      const { data } = (ctx as SessileContext<Data>).session;
      data.count = (data.count ?? 0) + 1;
      ctx.body = { count: data.count };
    });
    const url = await serve(app, sessions, store);
    const jar = new CookieJar();
    expect(await jar.json(url)).toEqual({ count: 1 });
    const second = await jar.fetch(url);
    expect(second.status).toBe(200);
    expect(await second.json()).toEqual({ count: 2 });
    expect(await store.count()).toBe(1);
  });

  it.each([
    ['', false],
    [', committed first as a long stream does to free the lock', true],
  ])(
    'sends the cookie of a regenerated session on a response the handler writes itself (ctx.respond = false)%s',
    async (_, commitFirst) => {
      const { url } = await startApp(async (ctx) => {
        if (ctx.path === '/login') {
          await ctx.session.regenerate();
          ctx.session.data.user = 'ada';
          if (commitFirst) expect(await ctx.session.commit()).toBe('saved');
          ctx.respond = false;
          ctx.res.writeHead(200, { 'content-type': 'text/plain' });
          ctx.res.end('logged in');
          return;
        }
        ctx.body = ctx.session.data;
      });
      const jar = new CookieJar();
      expect(await jar.json(url)).toEqual({});
      const login = await jar.fetch(`${url}/login`);
      expect(await login.text()).toBe('logged in');
      expect(login.headers.getSetCookie()).toHaveLength(1);
      expect(await jar.json(url)).toEqual({ user: 'ada' });
    },
  );

  it("fails a request that passed koa-session's middleware first, saying which and what to do, and opens no session", async () => {
    const store = new MemoryStore();
    const sessions = sessile<Data>({ store, secret: SECRET, cleanup: manual() });
    const app = new Koa();
    app.silent = true;
    app.keys = [SECRET];
    const legacy = koaSession({ key: 'legacy' }, app);
    app.use(async (ctx, next) => {
      try {
        await next();
      } catch (error) {
        ctx.status = 500;
        ctx.body = `${(error as Error).name}: ${(error as Error).message}`;
      }
    });
    app.use((ctx, next) => (ctx.path.startsWith('/legacy') ? legacy(ctx, next) : next()));
    app.use(sessions);
    app.use(async (ctx) => {
      const { data } = (ctx as SessileContext<Data>).session;
      data.user = 'ada';
      ctx.body = data;
    });
    const url = await serve(app, sessions, store);
    const jar = new CookieJar();
    expect(await jar.json(url)).toEqual({ user: 'ada' });
    const both = await jar.fetch(`${url}/legacy/page`);
    expect(both.status).toBe(500);
    expect(await both.text()).toBe(
      "TypeError: @sessile/koa: koa-session's middleware ran on this request before sessile(): use one of the two on a path. Mount them on paths that do not overlap, or keep koa-session and give it toKoaSessionStore(store) as its store instead of using sessile()",
    );
    expect(both.headers.getSetCookie()).toEqual([]);
    expect(await store.count()).toBe(1);
  });

  it("refuses koa-session's logout, ctx.session = null, with a TypeError naming invalidate(), instead of leaving the user signed in", async () => {
    const { url, store } = await startApp(
      (ctx) => {
        if (ctx.path === '/logout') {
          (ctx as { session: unknown }).session = null;
          ctx.body = 'signed out';
          return;
        }
        ctx.session.data.user = 'ada';
        ctx.body = ctx.session.data;
      },
      { catcher: true },
    );
    const jar = new CookieJar();
    expect(await jar.json(url)).toEqual({ user: 'ada' });
    const logout = await jar.fetch(`${url}/logout`);
    expect(logout.status).toBe(500);
    expect(await logout.text()).toMatch(/ctx\.session\.invalidate\(\)/);
    expect(await store.count()).toBe(1);
  });

  it('stops a request whose client hangs up while it waits for the lock, quietly, and leaves the lock free', async () => {
    const store = new MemoryStore();
    const reported: unknown[] = [];
    const sessions = sessile<Data>({
      store,
      secret: SECRET,
      cleanup: manual(),
      lock: { waitMs: 60_000 },
      onError: (error) => reported.push(error),
    });
    const app = new Koa();
    const errors: unknown[] = [];
    app.on('error', (error) => errors.push(error));
    // Tells the test when a request arrived and when its connection closed.
    const requests = new EventEmitter();
    app.use(async (ctx, next) => {
      requests.emit(`arrived ${ctx.path}`);
      ctx.res.once('close', () => requests.emit(`closed ${ctx.path}`));
      await next();
    });
    app.use(sessions);
    let letGo = () => {};
    const held = new Promise<void>((resolve) => {
      letGo = resolve;
    });
    const handled: string[] = [];
    app.use(async (ctx) => {
      handled.push(ctx.path);
      const session = (ctx as SessileContext<Data>).session;
      if (ctx.path === '/hold') {
        requests.emit('holding');
        await held;
      }
      session.data.count = (session.data.count ?? 0) + 1;
      ctx.body = String(session.data.count);
    });
    const url = await serve(app, sessions, store);
    // A second request of the session waits for the lock; its client hangs up.
    expect(await hangUpWhileWaiting(url, requests, letGo)).toEqual(['1', '2', '3']);
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

  it('refuses unknown options with a TypeError naming @sessile/koa', () => {
    const store = new MemoryStore();
    expect(() =>
      sessile({ store, secret: SECRET, cleanup: manual(), maxAge: 5 } as SessileKoaOptions),
    ).toThrow(/@sessile\/koa.*maxAge/);
    void store.close();
  });
});
