import { EventEmitter, once } from 'node:events';
import {
  Agent,
  createServer,
  get as httpGet,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { connect as connectHttp2, createServer as createHttp2Server } from 'node:http2';
import { type AddressInfo, connect as connectNet } from 'node:net';
import { CookieJar, hangUpWhileWaiting } from '@sessile/conformance/http';
import { MemoryStore, manual, SessionError, SessionManager } from '@sessile/core';
import express, { type NextFunction, type Request, type Response } from 'express';
import expressSession from 'express-session';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type SessileMiddleware,
  type SessileOptions,
  type SessileRequest,
  sessile,
} from '../src/index.js';
import { closeServer, listen, serveApp } from './helpers.js';

/**
 * Serves `sessions` on a plain node:http server (no express) where each request counts its
 * session's visits and answers the count, unless `route` answered it first (resolving true);
 * closed, with `sessions`, after the test.
 */
async function serveCounter(
  sessions: SessileMiddleware<{ count?: number }>,
  cleanups: Array<() => Promise<void>>,
  route: (req: IncomingMessage, res: ServerResponse) => Promise<boolean> = async () => false,
): Promise<string> {
  const server: Server = createServer(async (req, res) => {
    try {
      if (await route(req, res)) return;
      const session = await sessions.handle(req, res);
      session.data.count = (session.data.count ?? 0) + 1;
      res.end(String(session.data.count));
    } catch {
      res.statusCode = 500;
      res.end();
    }
  });
  const url = await listen(server);
  cleanups.push(async () => {
    await closeServer(server);
    await sessions.close();
  });
  return url;
}

/** `sessile()` over a fresh MemoryStore for `serveCounter`; the store closes after the test. */
function counterSessions(
  cleanups: Array<() => Promise<void>>,
  options: Partial<SessileOptions<{ count?: number }>> = {},
): SessileMiddleware<{ count?: number }> {
  const store = new MemoryStore();
  cleanups.push(() => store.close());
  return sessile<{ count?: number }>({
    store,
    secret: 'a secret of 32 characters or more for these tests',
    cleanup: manual(),
    ...options,
  } as SessileOptions<{ count?: number }>);
}

// The HTTP scenarios every adapter passes run from conformance.test.ts; these are sessile()'s own.
describe('sessile() middleware without express', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('works on a plain node:http server through handle()', async () => {
    const sessions = counterSessions(cleanups);
    const url = await serveCounter(sessions, cleanups);
    const jar = new CookieJar();
    expect(await (await jar.fetch(url)).text()).toBe('1');
    expect(await (await jar.fetch(url)).text()).toBe('2');
  });

  it('hands a second handle() of one request the session it opened, instead of waiting on its own lock', async () => {
    const sessions = counterSessions(cleanups, { lock: { waitMs: 300 } });
    const opened: unknown[] = [];
    // An auth check that opens the session before the route opens it again.
    const url = await serveCounter(sessions, cleanups, async (req, res) => {
      opened.push(await sessions.handle(req, res));
      return false;
    });
    const jar = new CookieJar();
    const first = await jar.fetch(url);
    expect(first.status).toBe(200);
    expect(await first.text()).toBe('1');
    expect(await (await jar.fetch(url)).text()).toBe('2');
    expect(opened).toHaveLength(2);
  });

  it('hands two handle() calls of one request made at once the same session, instead of one waiting on the other', async () => {
    const sessions = counterSessions(cleanups, { lock: { waitMs: 300 } });
    const same: boolean[] = [];
    // Two parts of one request (an auth check and a cart) open the session side by side.
    const url = await serveCounter(sessions, cleanups, async (req, res) => {
      const [auth, cart] = await Promise.all([
        sessions.handle(req, res),
        sessions.handle(req, res),
      ]);
      same.push(auth === cart);
      return false;
    });
    const jar = new CookieJar();
    const first = await jar.fetch(url);
    expect(await first.text()).toBe('1');
    expect(first.headers.getSetCookie()).toHaveLength(1);
    const second = await jar.fetch(url);
    expect(second.status).toBe(200);
    expect(await second.text()).toBe('2');
    expect(same).toEqual([true, true]);
  });
});

describe('sessile() on an HTTP/2 server', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('refuses the request with a TypeError that the app answers, where end() threw and the response hung', async () => {
    const sessions = counterSessions(cleanups);
    const refused: string[] = [];
    const server = createHttp2Server(async (req, res) => {
      try {
        const session = await sessions.handle(
          req as unknown as IncomingMessage,
          res as unknown as ServerResponse,
        );
        session.data.count = 1;
        res.end('counted');
      } catch (error) {
        refused.push((error as Error).message);
        res.statusCode = 500;
        res.end('refused');
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = connectHttp2(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    cleanups.push(async () => {
      client.close();
      await new Promise((resolve) => server.close(resolve));
    });
    const answer = await new Promise<{ status: unknown; body: string }>((resolve, reject) => {
      const stream = client.request({ ':path': '/' });
      let body = '';
      let status: unknown;
      stream.on('response', (headers) => {
        status = headers[':status'];
      });
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        body += chunk;
      });
      stream.on('end', () => resolve({ status, body }));
      stream.on('error', reject);
    });
    expect(answer).toEqual({ status: 500, body: 'refused' });
    expect(refused).toEqual([
      'sessile(): an HTTP/2 response (node:http2) cannot be served: use a node:http server, or @sessile/fastify or @sessile/hono, which serve HTTP/2',
    ]);
  });
});

describe('two sessile() middlewares on one request', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  type Data = { user?: string; level?: string };
  const SECRET = 'a secret of 32 characters or more for these tests';

  /** An app whose public sessile() signs users in, with an admin router behind `admin`. */
  async function publicAndAdmin(admin: Partial<SessileOptions<Data>>): Promise<{
    url: string;
    publicStore: MemoryStore;
    adminStore: MemoryStore;
  }> {
    const publicStore = new MemoryStore();
    const adminStore = new MemoryStore();
    const publicSessions = sessile<Data>({ store: publicStore, secret: SECRET, cleanup: manual() });
    const adminSessions = sessile<Data>({
      store: adminStore,
      secret: `admin ${SECRET}`,
      cleanup: manual(),
      lock: { waitMs: 300 },
      ...admin,
    } as SessileOptions<Data>);
    const app = express();
    app.use(publicSessions);
    app.get('/login', (req, res) => {
      (req as unknown as SessileRequest<Data>).session.data.user = 'mallory';
      res.end('ok');
    });
    const router = express.Router();
    router.use(adminSessions);
    router.get('/whoami', (req, res) => {
      const { data } = (req as unknown as SessileRequest<Data>).session;
      data.level = 'root';
      res.json(data);
    });
    // Whether the connection's destroy is its own again, as the requests before left it.
    router.get('/connection', (req, res) => {
      res.json({ ownDestroy: req.socket.destroy === Object.getPrototypeOf(req.socket).destroy });
    });
    app.use('/admin', router);
    app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
      res.status(500).end(error.message);
    });
    const url = await serveApp(app, cleanups, adminSessions, adminStore);
    cleanups.push(async () => {
      await publicSessions.close();
      await publicStore.close();
    });
    return { url, publicStore, adminStore };
  }

  it('one with a cookie of its own opens its own session in its own store', async () => {
    const { url, publicStore, adminStore } = await publicAndAdmin({
      cookie: { name: 'admin_sid' },
    });
    const jar = new CookieJar();
    await jar.fetch(`${url}/login`);
    const answer = await jar.fetch(`${url}/admin/whoami`);
    // The admin session does not see what the public one holds, and is stored where it belongs.
    expect(await answer.json()).toEqual({ level: 'root' });
    expect(jar.cookies.has('admin_sid')).toBe(true);
    expect([await publicStore.count(), await adminStore.count()]).toEqual([1, 1]);
    let publicId = '';
    for await (const id of publicStore.ids()) publicId = id;
    const stored = await publicStore.get(publicId);
    expect(new TextDecoder().decode(stored?.data)).not.toContain('root');
    // Each session comes back on the next request, under its own cookie.
    expect(await (await jar.fetch(`${url}/admin/whoami`)).json()).toEqual({ level: 'root' });
    expect(await adminStore.count()).toBe(1);
  });

  it("leaves a kept-alive connection's destroy its own after each request, where each added a wrapper holding on to its response", async () => {
    const { url } = await publicAndAdmin({ cookie: { name: 'admin_sid' } });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(async () => agent.destroy());
    const get = (path: string) =>
      new Promise<string>((resolve, reject) => {
        httpGet(`${url}${path}`, { agent }, (response) => {
          let body = '';
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => {
            body += chunk;
          });
          response.on('end', () => resolve(body));
        }).on('error', reject);
      });
    for (let i = 0; i < 3; i++) expect(await get('/admin/whoami')).toBe('{"level":"root"}');
    expect(await get('/admin/connection')).toBe('{"ownDestroy":true}');
  });

  it("one that keeps its sessions under the same cookie name in another store is refused, not handed the other's session", async () => {
    const { url, adminStore } = await publicAndAdmin({});
    const jar = new CookieJar();
    await jar.fetch(`${url}/login`);
    const answer = await jar.fetch(`${url}/admin/whoami`);
    expect(answer.status).toBe(500);
    expect(await answer.text()).toBe(
      "sessile(): another sessile() on this request keeps its sessions under the cookie 'sid' in another store; give each its own cookie.name",
    );
    expect(await adminStore.count()).toBe(0);
  });
});

describe('sessile() after another session middleware', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('fails the request saying so when express-session set req.session first, and answers', async () => {
    const store = new MemoryStore();
    const sessions = sessile({
      store,
      secret: 'a secret of 32 characters or more for these tests',
      cleanup: manual(),
    });
    const app = express();
    app.use(expressSession({ secret: 'another secret', resave: false, saveUninitialized: true }));
    app.use(sessions);
    app.get('/', (_req, res) => {
      res.end('reached');
    });
    app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
      res.status(500).end(error.message);
    });
    const url = await serveApp(app, cleanups, sessions, store);
    const answer = await fetch(url);
    expect(answer.status).toBe(500);
    expect(await answer.text()).toMatch(
      /^sessile\(\): req\.session was set by another session middleware \(express-session's\?\)/,
    );
    expect(await store.count()).toBe(0);
  });
});

describe('sessile() and a client that hung up', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('finishes a session opened after the connection closed, so its lock is free for the next request', async () => {
    const sessions = counterSessions(cleanups, { lock: { waitMs: 2000, leaseMs: 1000 } });
    let reached = () => {};
    const slowReached = new Promise<void>((resolve) => {
      reached = resolve;
    });
    let opened = () => {};
    const openedLate = new Promise<void>((resolve) => {
      opened = resolve;
    });
    const url = await serveCounter(sessions, cleanups, async (req, res) => {
      if (req.url !== '/slow') return false;
      // A middleware before sessile() still working when the client hangs up.
      reached();
      await new Promise((resolve) => res.once('close', resolve));
      await sessions.handle(req, res);
      opened();
      // The client is gone: the handler answers nothing.
      return true;
    });
    const jar = new CookieJar();
    expect(await (await jar.fetch(url)).text()).toBe('1');
    const hangUp = new AbortController();
    const slow = jar.fetch(`${url}/slow`, { signal: hangUp.signal }).catch(() => undefined);
    await slowReached;
    hangUp.abort();
    await slow;
    await openedLate;
    // Past several lease lengths: a session left open would have its lease renewed all along.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const next = await jar.fetch(url);
    expect(next.status).toBe(200);
    expect(await next.text()).toBe('2');
  });
});

describe('sessile() and a client that hangs up while it waits for the lock', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('stops that request without calling next() or the error handler, and leaves the lock free', async () => {
    const store = new MemoryStore();
    const reported: unknown[] = [];
    const sessions = sessile<{ count?: number }>({
      store,
      secret: 'a secret of 32 characters or more for these tests',
      cleanup: manual(),
      lock: { waitMs: 60_000 },
      onError: (error) => reported.push(error),
    });
    const app = express();
    // Tells the test when a request arrived and when its connection closed.
    const requests = new EventEmitter();
    app.use((req, res, next) => {
      requests.emit(`arrived ${req.url}`);
      res.once('close', () => requests.emit(`closed ${req.url}`));
      next();
    });
    app.use(sessions);
    let letGo = () => {};
    const held = new Promise<void>((resolve) => {
      letGo = resolve;
    });
    const handled: string[] = [];
    app.get('/:what', async (req, res) => {
      handled.push(req.url);
      const session = (req as unknown as SessileRequest<{ count?: number }>).session;
      if (req.params.what === 'hold') {
        requests.emit('holding');
        await held;
      }
      session.data.count = (session.data.count ?? 0) + 1;
      res.send(String(session.data.count));
    });
    const errors: unknown[] = [];
    app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
      errors.push(error);
      res.status(500).end();
    });
    const url = await serveApp(app, cleanups, sessions, store);
    // A second request of the session waits for the lock; its client hangs up.
    expect(await hangUpWhileWaiting(url, requests, letGo)).toEqual(['1', '2', '3']);
    expect(handled).toEqual(['/count', '/hold', '/count']);
    expect(errors).toEqual([]);
    expect(reported).toEqual([]);
  });
});

describe('sessile() and a logout the store fails', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('answers the failure, keeps the cookie and the session, and a retry logs out', async () => {
    const store = new MemoryStore();
    const sessions = sessile<{ user?: string }>({
      store,
      secret: 'a secret of 32 characters or more for these tests',
      cleanup: manual(),
    });
    const app = express();
    app.use(sessions);
    app.post('/login', (req, res) => {
      (req as unknown as SessileRequest<{ user?: string }>).session.data.user = 'alice';
      res.end();
    });
    app.post('/logout', async (req, res) => {
      await (req as unknown as SessileRequest).session.invalidate();
      res.end('signed out');
    });
    app.get('/me', (req, res) => {
      res.end((req as unknown as SessileRequest<{ user?: string }>).session.data.user ?? 'nobody');
    });
    app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
      res.status(503).end(error.message);
    });
    const url = await serveApp(app, cleanups, sessions, store);
    const jar = new CookieJar();
    await jar.fetch(`${url}/login`, { method: 'POST' });
    const deleteOnce = vi
      .spyOn(store, 'delete')
      .mockRejectedValueOnce(new SessionError('ERR_STORE_IO', 'the disk is gone'));
    const failed = await jar.fetch(`${url}/logout`, { method: 'POST' });
    expect(failed.status).toBe(503);
    // A cleared cookie would leave the stored session behind, with no way left to log it out.
    expect(failed.headers.getSetCookie()).toEqual([]);
    expect(await (await jar.fetch(`${url}/me`)).text()).toBe('alice');
    deleteOnce.mockRestore();
    const retried = await jar.fetch(`${url}/logout`, { method: 'POST' });
    expect(await retried.text()).toBe('signed out');
    expect(retried.headers.getSetCookie()[0]).toMatch(/^sid=; .*Max-Age=0/);
    expect(await store.count()).toBe(0);
  });
});

describe('sessile() onCommitError', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('a handler that throws reaches onError with the commit error, and the response is still a 500', async () => {
    const store = new MemoryStore({ maxRecordBytes: 200 });
    cleanups.push(() => store.close());
    const reported: unknown[] = [];
    const sessions = sessile<{ big?: string }>({
      store,
      secret: 'a secret of 32 characters or more for these tests',
      cleanup: manual(),
      onError: (error) => reported.push(error),
      onCommitError() {
        throw new Error('the logger is down');
      },
    });
    const server: Server = createServer(async (req, res) => {
      const session = await sessions.handle(req, res);
      // Too large for the store: the commit fails.
      session.data.big = 'x'.repeat(1000);
      res.end('saved?');
    });
    const url = await listen(server);
    cleanups.push(async () => {
      await closeServer(server);
      await sessions.close();
    });
    const response = await fetch(url);
    expect(response.status).toBe(500);
    await response.text();
    expect(
      reported.map((error) => (error as { code?: string }).code ?? (error as Error).message),
    ).toEqual(['ERR_RECORD_TOO_LARGE', 'the logger is down']);
  });
});

describe('sessile() options', () => {
  const SECRET = 'a secret of 32 characters or more for these tests';
  const stores: MemoryStore[] = [];
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
  });
  function refusal(options: Record<string, unknown>): string {
    const store = new MemoryStore();
    stores.push(store);
    try {
      // Deliberately unchecked: these tests pass options sessile() must refuse.
      const sessions = sessile({
        store,
        cleanup: manual(),
        ...options,
      } as unknown as SessileOptions);
      void sessions.close();
    } catch (error) {
      expect(error).toBeInstanceOf(TypeError);
      return (error as Error).message;
    }
    throw new Error('expected sessile() to refuse the options');
  }

  it('answers app.use(sessile), the factory left uncalled, with an error saying to call it', async () => {
    const app = express();
    app.use(sessile as never);
    app.get('/', (_req, res) => {
      res.end('reached');
    });
    app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
      res.status(500).end(error.message);
    });
    const server = createServer(app);
    const url = await listen(server);
    try {
      const answer = await fetch(url);
      expect(answer.status).toBe(500);
      expect(await answer.text()).toBe(
        'sessile() was called with a request, not options: call it once, as app.use(sessile({ store, secret })), not app.use(sessile)',
      );
    } finally {
      await closeServer(server);
    }
  });

  it('names its own option, secret, when the secret is missing or too short', () => {
    expect(refusal({})).toMatch(/^sessile\(\): secret must be a string of at least 32 characters/);
    expect(refusal({ secret: 'keyboard cat' })).toMatch(
      /^sessile\(\): secret must be at least 32 characters, got 12/,
    );
    expect(refusal({ secret: [SECRET, 'old'] })).toMatch(/^sessile\(\): secret\[1\] must be/);
  });

  it("refuses sameSite 'none' without secure, which browsers would reject", () => {
    expect(refusal({ secret: SECRET, cookie: { sameSite: 'none' } })).toMatch(
      /^sessile\(\): cookie\.sameSite 'none' needs cookie\.secure: true/,
    );
  });

  it("refuses express-session's cookie.maxAge, pointing to cookie.maxAgeMs, and unknown options", () => {
    expect(refusal({ secret: SECRET, cookie: { maxAge: 60_000 } })).toBe(
      "sessile() cookie: unknown option 'maxAge'; did you mean 'maxAgeMs'?",
    );
    expect(refusal({ secret: SECRET, idleTimeout: 60_000 })).toBe(
      "sessile(): unknown option 'idleTimeout'; did you mean 'idleTimeoutMs'?",
    );
    expect(refusal({ secret: SECRET, resave: false })).toBe("sessile(): unknown option 'resave'");
    expect(refusal({ secret: SECRET, cookie: { maxAgeMs: '1h' } })).toMatch(
      /^sessile\(\): cookie\.maxAgeMs must be a number of milliseconds/,
    );
  });

  it('refuses manager options beside a manager, where they would be ignored', async () => {
    const store = new MemoryStore();
    stores.push(store);
    const manager = new SessionManager({ store, cleanup: manual() });
    expect(() =>
      sessile({ manager, secret: SECRET, idleTimeoutMs: 60_000 } as SessileOptions),
    ).toThrow(
      "sessile(): 'idleTimeoutMs' is an option of the SessionManager passed as 'manager'; set it there",
    );
    await manager.close();
  });

  it('refuses a manager that is not a SessionManager, naming it', () => {
    const store = new MemoryStore();
    stores.push(store);
    for (const manager of [null, {}, store]) {
      expect(() => sessile({ manager, secret: SECRET } as never)).toThrow(
        /^sessile\(\): manager must be a SessionManager, got /,
      );
    }
  });

  it('accepts a 30-day cookie, longer than any timer Node can arm', async () => {
    const store = new MemoryStore();
    stores.push(store);
    const sessions = sessile({
      store,
      secret: SECRET,
      cleanup: manual(),
      cookie: { maxAgeMs: 30 * 24 * 60 * 60_000 },
    });
    expect(sessions.cookie.serialize('value')).toContain('Max-Age=2592000');
    await sessions.close();
  });
});

describe('sessile() and the response as Node and Express use it', () => {
  const SECRET = 'a secret of 32 characters or more for these tests';
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function serve(
    handler: (req: SessileRequest, res: Response, next: () => void) => void,
    options: Partial<SessileOptions> = {},
    store = new MemoryStore(),
  ): Promise<{ url: string; store: MemoryStore; sessions: SessileMiddleware }> {
    const sessions = sessile({
      store,
      secret: SECRET,
      cleanup: manual(),
      ...options,
    } as SessileOptions);
    const app = express();
    // Express's own final handler takes the errors of a test, quietly.
    app.set('env', 'test');
    app.use(sessions);
    app.get('/', (req, res, next) => handler(req as unknown as SessileRequest, res, next));
    app.use((_req: unknown, res: ServerResponse) => {
      res.statusCode = 404;
      res.end('no page here');
    });
    const url = await serveApp(app, cleanups, sessions, store);
    return { url, store, sessions };
  }

  it('reads as sent and ended once the handler ended it, while the commit runs', async () => {
    const seen: unknown[] = [];
    const { url } = await serve((req, res, next) => {
      req.session.data.viewed = true;
      res.setHeader('content-type', 'application/json');
      res.end('{"ok":true}');
      seen.push(res.headersSent, res.writableEnded);
      try {
        res.setHeader('x-late', '1');
      } catch (error) {
        seen.push((error as { code?: string }).code);
      }
      // A handler that falls through when nothing was answered must not answer twice.
      if (!res.headersSent) next();
    });
    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('{"ok":true}');
    expect(response.headers.get('x-late')).toBeNull();
    expect(response.headers.get('set-cookie')).toMatch(/^sid=/);
    expect(seen).toEqual([true, true, 'ERR_HTTP_HEADERS_SENT']);
  });

  it('writes nothing for a flushHeaders() after end() while the commit runs, as Node writes nothing for it after the answer', async () => {
    const { url } = await serve((req, res) => {
      req.session.data.viewed = true;
      res.end('answered');
      res.flushHeaders();
    });
    const { hostname, port } = new URL(url);
    const socket = connectNet(Number(port), hostname);
    socket.write(`GET / HTTP/1.1\r\nhost: ${hostname}\r\nconnection: close\r\n\r\n`);
    let raw = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      raw += chunk;
    });
    await once(socket, 'close');
    expect(raw).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(raw).toMatch(/\r\nset-cookie: sid=/i);
    expect(raw.endsWith('\r\n\r\nanswered')).toBe(true);
  });

  it('keeps the session cookie beside the Set-Cookie headers given to writeHead', async () => {
    for (const headers of [
      { 'Set-Cookie': 'flash=welcome; Path=/', 'X-Given': 'object' },
      ['Set-Cookie', 'flash=welcome; Path=/', 'X-Given', 'array'],
    ]) {
      const { url, store } = await serve((req, res) => {
        req.session.data.user = 'ada';
        res.setHeader('x-given', 'replaced by writeHead');
        res.writeHead(200, headers as never);
        res.end('signed in');
      });
      const response = await fetch(url);
      const cookies = response.headers.getSetCookie();
      expect(cookies[0]).toBe('flash=welcome; Path=/');
      expect(cookies[1]).toMatch(/^sid=/);
      expect(response.headers.get('x-given')).toBe(Array.isArray(headers) ? 'array' : 'object');
      expect(await store.count()).toBe(1);
    }
  });

  it('reads writeHead as Node does: headers after an absent message, pairs, and a refused status changes nothing', async () => {
    const calls: Array<(res: ServerResponse) => void> = [
      (res) => res.writeHead(200, undefined, { 'Set-Cookie': 'app=1' }),
      (res) => res.writeHead(200, [['Set-Cookie', 'app=1']] as never),
      (res) => res.writeHead(200, 'Fine', { 'Set-Cookie': 'app=1' }),
    ];
    for (const call of calls) {
      const { url } = await serve((req, res) => {
        req.session.data.user = 'ada';
        call(res);
        res.end('in');
      });
      const response = await fetch(url);
      const cookies = response.headers.getSetCookie();
      expect(cookies[0]).toBe('app=1');
      expect(cookies[1]).toMatch(/^sid=/);
    }
    const refused: unknown[] = [];
    const { url } = await serve((req, res) => {
      req.session.data.user = 'ada';
      try {
        res.writeHead(1000, { 'Content-Length': '2', 'X-Stale': 'yes' });
      } catch (error) {
        refused.push((error as { code?: string }).code);
      }
      res.end('hello world');
    });
    const response = await fetch(url);
    expect(refused).toEqual(['ERR_HTTP_INVALID_STATUS_CODE']);
    expect(await response.text()).toBe('hello world');
    expect(response.headers.get('x-stale')).toBeNull();
    expect(response.headers.getSetCookie()).toHaveLength(1);

    // A flat header list of odd length: Node refuses it, and nothing of it is set.
    const odd: unknown[] = [];
    const { url: oddUrl } = await serve((req, res) => {
      req.session.data.user = 'ada';
      try {
        res.writeHead(200, ['X-Half', 'set', 'X-Dropped'] as never);
      } catch (error) {
        odd.push((error as { code?: string }).code);
      }
      res.end('odd');
    });
    const oddResponse = await fetch(oddUrl);
    expect(odd).toEqual(['ERR_INVALID_ARG_VALUE']);
    expect(await oddResponse.text()).toBe('odd');
    expect(oddResponse.headers.get('x-half')).toBeNull();
  });

  it("refuses a logout by req.session = null (cookie-session's, express-session's with unset: 'destroy') with a TypeError naming invalidate(), instead of leaving the user signed in", async () => {
    const { url, store } = await serve((req, res) => {
      if (req.url === '/?logout') {
        (req as { session: unknown }).session = null;
        res.end('signed out');
        return;
      }
      req.session.data.user = 'ada';
      res.end(JSON.stringify(req.session.data));
    });
    const jar = new CookieJar();
    expect(await jar.json(url)).toEqual({ user: 'ada' });
    const logout = await jar.fetch(`${url}/?logout`);
    expect(logout.status).toBe(500);
    expect(await logout.text()).toMatch(/req\.session\.invalidate\(\)/);
    expect(await store.count()).toBe(1);
  });

  it("refuses express-session's req.session.userId = 42 with a TypeError, instead of answering a login that nothing saves", async () => {
    const { url, store } = await serve((req, res) => {
      (req.session as unknown as { userId: number }).userId = 42;
      res.end('signed in');
    });
    const login = await fetch(url);
    expect(login.status).toBe(500);
    expect(await login.text()).not.toBe('signed in');
    expect(await store.count()).toBe(0);
  });

  it('delivers the answer of a handler that fails after it, while the commit still runs', async () => {
    // A real store whose writes take a while, as a remote one's do.
    class SlowStore extends MemoryStore {
      override async set(...args: Parameters<MemoryStore['set']>): Promise<boolean> {
        await new Promise((resolve) => setTimeout(resolve, 50));
        return super.set(...args);
      }
    }
    const { url, store } = await serve(
      async (req, res) => {
        req.session.data.seen = true;
        res.send('ok');
        await Promise.resolve();
        throw new Error('a step after the answer failed');
      },
      { onError() {} },
      new SlowStore(),
    );
    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('ok');
    expect(await store.count()).toBe(1);
  });

  it('reports session data it cannot save on a streamed response, and the process goes on', async () => {
    const reported: unknown[] = [];
    const { url, store } = await serve(
      (req, res) => {
        req.session.data.big = 10n as never;
        // Streamed from a timer: the headers go out outside any promise the middleware awaits.
        setTimeout(() => {
          res.write('part one, ');
          res.end('part two');
        }, 5);
      },
      { onError: (error) => reported.push(error) },
    );
    const response = await fetch(url);
    expect(await response.text()).toBe('part one, part two');
    expect(response.headers.get('set-cookie')).toBeNull();
    expect(reported).toHaveLength(1);
    expect(String(reported[0])).toMatch(/BigInt/);
    expect(await store.count()).toBe(0);
    // Still serving.
    expect((await fetch(url)).status).toBe(200);
  });

  it("throws what Node's end() refuses from the handler's call, so Express answers 500 and the process goes on", async () => {
    const refused: unknown[] = [];
    const { url, store } = await serve((req, res) => {
      req.session.data.seen = true;
      const query = new URL(req.url ?? '/', 'http://localhost').searchParams;
      try {
        // What a client sent, as a handler may pass it on without a check.
        if (query.has('status')) res.statusCode = Number(query.get('status'));
        if (query.has('message')) res.statusMessage = query.get('message') ?? '';
        if (query.has('number')) res.end(Number(query.get('number')) as never);
        else if (query.has('encoding')) res.end('text', query.get('encoding') as never);
        else res.end('ok');
      } catch (error) {
        refused.push((error as { code?: string }).code);
        throw error;
      }
    });
    for (const query of ['number=42', 'status=1000', 'message=a%0Ab', 'encoding=klingon']) {
      const response = await fetch(`${url}/?${query}`);
      expect(response.status).toBe(500);
      await response.text();
    }
    expect(refused).toEqual([
      'ERR_INVALID_ARG_TYPE',
      'ERR_HTTP_INVALID_STATUS_CODE',
      'ERR_INVALID_CHAR',
      'ERR_UNKNOWN_ENCODING',
    ]);
    // Still serving, and the sessions of the failed requests were committed as usual.
    expect(await (await fetch(url)).text()).toBe('ok');
    expect(await store.count()).toBe(5);
  });

  it("answers a failed commit with a 500 whose status line is its own, not the handler's message", async () => {
    const { url } = await serve(
      (req, res) => {
        // Too large for the store: the commit fails.
        req.session.data.big = 'x'.repeat(1000);
        res.statusMessage = 'Created Fine';
        res.statusCode = 201;
        res.end('made');
      },
      { onError() {} },
      new MemoryStore({ maxRecordBytes: 200 }),
    );
    const response = await fetch(url);
    expect(response.status).toBe(500);
    expect(response.statusText).toBe('Internal Server Error');
    expect(await response.text()).toBe('Internal Server Error');
  });

  it('answers 500 and reports what fails as the response really ends after the commit', async () => {
    const reported: unknown[] = [];
    const { url } = await serve(
      (req, res) => {
        req.session.data.seen = true;
        if (req.url?.includes('fail')) {
          // A header listener (on-headers, as morgan and compression use it) that throws.
          const writeHead = res.writeHead;
          res.writeHead = function failingWriteHead(this: ServerResponse) {
            res.writeHead = writeHead;
            throw new Error('a header listener failed');
          } as typeof res.writeHead;
        }
        res.setHeader('x-handler', 'set');
        res.end('ok');
      },
      { onError: (error) => reported.push(error) },
    );
    const failed = await fetch(`${url}/?fail`);
    expect(failed.status).toBe(500);
    expect(await failed.text()).toBe('Internal Server Error');
    expect(failed.headers.get('x-handler')).toBeNull();
    expect(String(reported[0])).toMatch(/a header listener failed/);
    expect(await (await fetch(url)).text()).toBe('ok');
  });

  it('a response that stays open after committing first leaves the session to its other requests', async () => {
    const streams: ServerResponse[] = [];
    const { url } = await serve(
      async (req, res) => {
        req.session.data.count = ((req.session.data.count as number) ?? 0) + 1;
        if (!req.url?.includes('events')) {
          res.end(JSON.stringify(req.session.data));
          return;
        }
        // As the README says for server-sent events: commit, then stream for as long as it takes.
        await req.session.commit();
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: open\n\n');
        streams.push(res);
      },
      { lock: { waitMs: 1_000 } },
    );
    cleanups.push(async () => {
      for (const stream of streams) stream.end();
    });
    const jar = new CookieJar();
    // A new visitor's stream sets the cookie of the session it saved.
    const events = await jar.fetch(`${url}/?events`);
    expect(events.headers.get('content-type')).toBe('text/event-stream');
    expect(jar.cookies.has('sid')).toBe(true);
    // While the stream is open, the session's other requests get it, with what the stream saved.
    expect(await jar.json(url)).toEqual({ count: 2 });
    expect(await jar.json(url)).toEqual({ count: 3 });
    await events.body?.cancel();
  });

  it("a response streamed after committing first sets the cookie the commit's outcome needs: none when it found the session gone or failed", async () => {
    const store = new MemoryStore({ maxRecordBytes: 300 });
    const { url, sessions } = await serve(
      async (req, res) => {
        if (req.url === '/?login') {
          req.session.data.user = 'ada';
          res.end('in');
          return;
        }
        // Signed out meanwhile (another device's "sign out everywhere"), or too large to save.
        if (req.url === '/?revoked') await sessions.manager.revoke(req.session.id);
        else req.session.data.big = 'x'.repeat(1000);
        req.session.data.seen = true;
        let outcome: string;
        try {
          outcome = await req.session.commit();
        } catch (error) {
          outcome = (error as { code: string }).code;
        }
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write(outcome);
        res.end();
      },
      { cookie: { maxAgeMs: 3_600_000 } },
      store,
    );
    const login = await fetch(`${url}/?login`);
    const cookie = login.headers.getSetCookie()[0]?.split(';')[0] ?? '';
    expect(cookie).toMatch(/^sid=/);
    const revoked = await fetch(`${url}/?revoked`, { headers: { cookie } });
    expect(await revoked.text()).toBe('gone');
    // Its id names nothing now; sent again, it would replace the cookie a new login just set.
    expect(revoked.headers.getSetCookie()).toEqual([]);
    const failed = await fetch(`${url}/?too-large`);
    expect(await failed.text()).toBe('ERR_RECORD_TOO_LARGE');
    // A cookie for a session that was never stored.
    expect(failed.headers.getSetCookie()).toEqual([]);
  });

  it('close() leaves a manager passed in open, and closes one it built', async () => {
    const store = new MemoryStore();
    cleanups.push(() => store.close());
    const manager = new SessionManager({ store, cleanup: manual() });
    cleanups.push(() => manager.close());
    const given = sessile({ manager, secret: SECRET });
    await given.close();
    expect(manager.closed).toBe(false);
    const built = sessile({ store, secret: SECRET, cleanup: manual() });
    await built.close();
    expect(built.manager.closed).toBe(true);
  });
});
