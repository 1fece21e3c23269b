import { EventEmitter } from 'node:events';
import { CookieJar, hangUpWhileWaiting } from '@sessile/conformance/http';
import { MemoryStore, manual } from '@sessile/core';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { fastifySessile, type SessileFastifyOptions } from '../src/index.js';

// The HTTP scenarios every adapter passes run from conformance.test.ts; these are the plugin's own.
describe('@sessile/fastify options', () => {
  const SECRET = 'a secret of 32 characters or more for these tests';
  const stores: MemoryStore[] = [];
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
  });
  async function register(options: Record<string, unknown>) {
    const store = new MemoryStore();
    stores.push(store);
    const app = Fastify();
    // Deliberately unchecked: these tests pass options the plugin must refuse.
    const registered = { store, cleanup: manual(), ...options } as unknown as SessileFastifyOptions;
    app.register(fastifySessile, registered);
    try {
      await app.ready();
    } finally {
      await app.close();
    }
  }

  it('names its own options: secret, cookie.sameSite, and the intended name of an unknown one', async () => {
    await expect(register({})).rejects.toThrow(
      /^@sessile\/fastify: secret must be a string of at least 32 characters/,
    );
    await expect(register({ secret: 'a secret too short' })).rejects.toThrow(
      /^@sessile\/fastify: secret must be at least 32 characters, got 18/,
    );
    await expect(register({ secret: SECRET, cookie: { sameSite: 'none' } })).rejects.toThrow(
      "@sessile/fastify: cookie.sameSite 'none' needs cookie.secure: true",
    );
    await expect(register({ secret: SECRET, cookie: { maxAge: 60_000 } })).rejects.toThrow(
      "@sessile/fastify cookie: unknown option 'maxAge'; did you mean 'maxAgeMs'?",
    );
    await expect(register({ secret: SECRET, saveUninitialized: false })).rejects.toThrow(
      "@sessile/fastify: unknown option 'saveUninitialized'",
    );
  });

  it('says to register it, not call it, when app.register(fastifySessile({ store, secret })) calls it by hand', async () => {
    const store = new MemoryStore();
    stores.push(store);
    const app = Fastify();
    const called = (fastifySessile as unknown as (options: object) => Promise<void>)({
      store,
      secret: SECRET,
    });
    app.register(called as never);
    await expect(app.ready()).rejects.toThrow(
      '@sessile/fastify is a Fastify plugin: register it with its options, app.register(fastifySessile, { store, secret }), without calling it',
    );
    await app.close();
  });

  it("accepts Fastify's own register options", async () => {
    await expect(register({ secret: SECRET, prefix: '/app', logLevel: 'warn' })).resolves.toBe(
      undefined,
    );
  });

  it.each([
    ['twice in one context', (app: FastifyInstance) => app.register(fastifySessile, options())],
    [
      'in a context and in one inside it',
      (app: FastifyInstance) =>
        app.register(async (scope) => {
          await scope.register(fastifySessile, { ...options(), cookie: { name: 'admin' } });
        }),
    ],
  ])(
    'says it was registered twice, naming no other plugin, when registered %s',
    async (_, again) => {
      const app = Fastify();
      app.register(fastifySessile, options());
      again(app);
      try {
        const ready = app.ready();
        await expect(ready).rejects.toThrow(TypeError);
        await expect(ready).rejects.toThrow(
          '@sessile/fastify is registered twice where one request would reach both',
        );
      } finally {
        await app.close();
      }
    },
  );

  it('serves two sibling contexts that each register it with a cookie of their own', async () => {
    const app = Fastify();
    for (const name of ['shop', 'admin']) {
      app.register(async (scope) => {
        await scope.register(fastifySessile, { ...options(), cookie: { name, path: `/${name}` } });
        scope.get(`/${name}`, async (request) => {
          request.session.data.area = name;
          return request.session.data;
        });
      });
    }
    try {
      const shop = await app.inject(`/shop`);
      const admin = await app.inject(`/admin`);
      expect([shop.json(), admin.json()]).toEqual([{ area: 'shop' }, { area: 'admin' }]);
      expect(String(shop.headers['set-cookie'])).toMatch(/^shop=/);
      expect(String(admin.headers['set-cookie'])).toMatch(/^admin=/);
    } finally {
      await app.close();
    }
  });

  function options(): SessileFastifyOptions {
    const store = new MemoryStore();
    stores.push(store);
    return { store, secret: SECRET, cleanup: manual() };
  }
});

describe('@sessile/fastify with a hijacked reply', () => {
  const SECRET = 'a secret of 32 characters or more for these tests';

  it.each([
    ['no cookie of its own', { 'content-type': 'text/plain' }, []],
    [
      'a cookie of its own',
      { 'content-type': 'text/plain', 'set-cookie': 'theme=dark' },
      ['theme=dark'],
    ],
    [
      'a cookie of its own, as a list',
      ['Set-Cookie', 'theme=dark', 'Content-Type', 'text/plain'],
      ['theme=dark'],
    ],
  ])(
    'sends the cookie of a regenerated session on the headers written through reply.raw, with %s',
    async (_, headers, own) => {
      const store = new MemoryStore();
      const app = Fastify();
      app.register(fastifySessile, { store, secret: SECRET, cleanup: manual() });
      app.get('/login', async (request, reply) => {
        await request.session.regenerate();
        request.session.data.user = 'ada';
        reply.hijack();
        reply.raw.writeHead(200, headers as Record<string, string>);
        reply.raw.end('logged in');
      });
      app.get('/', async (request) => request.session.data);
      const url = await app.listen({ port: 0, host: '127.0.0.1' });
      try {
        const jar = new CookieJar();
        expect(await jar.json(url)).toEqual({});
        const login = await jar.fetch(`${url}/login`);
        expect(await login.text()).toBe('logged in');
        const cookies = login.headers.getSetCookie();
        expect(cookies).toHaveLength(own.length + 1);
        expect(cookies).toEqual(expect.arrayContaining(own));
        expect(await jar.json(url)).toEqual({ user: 'ada' });
      } finally {
        await app.close();
        await store.close();
      }
    },
  );
});

describe('@sessile/fastify when a later onSend hook fails', () => {
  const SECRET = 'a secret of 32 characters or more for these tests';

  it('finishes the session once: one cookie on the error reply, and one report of a failed commit', async () => {
    const store = new MemoryStore({ maxRecordBytes: 200 });
    const reported: unknown[] = [];
    const app = Fastify();
    app.register(fastifySessile, {
      store,
      secret: SECRET,
      cleanup: manual(),
      onCommitError: (error) => reported.push((error as { code?: string }).code),
    });
    // Another plugin's onSend that fails once: Fastify then sends its error through onSend again.
    const failed = new WeakSet<object>();
    app.addHook('onSend', async (request, _reply, payload) => {
      if (failed.has(request)) return payload;
      failed.add(request);
      throw new Error('a later onSend hook failed');
    });
    app.get('/', async (request) => {
      request.session.data.user = 'ada';
      return 'ok';
    });
    app.get('/big', async (request) => {
      request.session.data.big = 'x'.repeat(1000);
      return 'ok';
    });
    try {
      const saved = await app.inject('/');
      expect(saved.statusCode).toBe(500);
      expect([saved.headers['set-cookie'] ?? []].flat()).toHaveLength(1);
      const tooLarge = await app.inject('/big');
      expect(tooLarge.statusCode).toBe(500);
      expect(reported).toEqual(['ERR_RECORD_TOO_LARGE']);
    } finally {
      await app.close();
      await store.close();
    }
  });
});

describe('@sessile/fastify and a reply sent twice', () => {
  const SECRET = 'a secret of 32 characters or more for these tests';

  it('sends the first reply with the cookie of the session it saved, as Fastify sends the first without the plugin', async () => {
    const store = new MemoryStore();
    const app = Fastify();
    app.register(fastifySessile, { store, secret: SECRET, cleanup: manual() });
    app.get('/login', async (request, reply) => {
      request.session.data.user = 'ada';
      // A route that forgot to return after replying: Fastify logs the second as already sent.
      reply.send('signed in');
      reply.send('again');
      return reply;
    });
    app.get('/me', async (request) => String(request.session.data.user));
    try {
      const login = await app.inject('/login');
      expect(login.body).toBe('signed in');
      const [cookie = ''] = String(login.headers['set-cookie']).split(';');
      expect(cookie).toMatch(/^sid=/);
      expect((await app.inject({ url: '/me', headers: { cookie } })).body).toBe('ada');
    } finally {
      await app.close();
      await store.close();
    }
  });
});

describe('@sessile/fastify and a client that hangs up while it waits for the lock', () => {
  const SECRET = 'a secret of 32 characters or more for these tests';

  it('stops that request without the handler or the error handler, and leaves the lock free', async () => {
    const store = new MemoryStore();
    const reported: unknown[] = [];
    const app = Fastify();
    const errors: unknown[] = [];
    app.setErrorHandler(async (error, _request, reply) => {
      errors.push(error);
      return reply.code(500).send('failed');
    });
    // Tells the test when a request arrived and when its connection closed.
    const requests = new EventEmitter();
    app.addHook('onRequest', async (request, reply) => {
      requests.emit(`arrived ${request.url}`);
      reply.raw.once('close', () => requests.emit(`closed ${request.url}`));
    });
    app.register(fastifySessile, {
      store,
      secret: SECRET,
      cleanup: manual(),
      lock: { waitMs: 60_000 },
      onError: (error) => reported.push(error),
    });
    let letGo = () => {};
    const held = new Promise<void>((resolve) => {
      letGo = resolve;
    });
    const handled: string[] = [];
    app.get('/:what', async (request) => {
      handled.push(request.url);
      const { session } = request;
      if ((request.params as { what: string }).what === 'hold') {
        requests.emit('holding');
        await held;
      }
      const count = ((session.data.count as number | undefined) ?? 0) + 1;
      session.data.count = count;
      return String(count);
    });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      // A second request of the session waits for the lock; its client hangs up.
      expect(await hangUpWhileWaiting(url, requests, letGo)).toEqual(['1', '2', '3']);
      expect(handled).toEqual(['/count', '/hold', '/count']);
      expect(errors).toEqual([]);
      expect(reported).toEqual([]);
    } finally {
      await app.close();
      await store.close();
    }
  });
});

describe('@sessile/fastify request.session', () => {
  const SECRET = 'a secret of 32 characters or more for these tests';

  it("refuses a logout by request.session = null (cookie-session's, koa-session's) with a TypeError naming invalidate(), instead of leaving the user signed in", async () => {
    const store = new MemoryStore();
    const app = Fastify();
    app.register(fastifySessile, { store, secret: SECRET, cleanup: manual() });
    app.post('/login', async (request) => {
      request.session.data.user = 'ada';
      return 'signed in';
    });
    app.post('/logout', async (request) => {
      (request as { session: unknown }).session = null;
      return 'signed out';
    });
    app.get('/', async (request) => request.session.data.user ?? 'nobody');
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const jar = new CookieJar();
      await jar.fetch(`${url}/login`, { method: 'POST' });
      const logout = await jar.fetch(`${url}/logout`, { method: 'POST' });
      expect(logout.status).toBe(500);
      expect(((await logout.json()) as { message: string }).message).toBe(
        "@sessile/fastify: request.session is the request's Session and cannot be replaced; to log out, await request.session.invalidate()",
      );
      expect(await (await jar.fetch(url)).text()).toBe('ada');
    } finally {
      await app.close();
      await store.close();
    }
  });
});
