/**
 * The Koa and Hono apps of the framework HTTP workload, built inside a worker of `server.ts`.
 * Every app serves one route that loads the session, fills it on the first visit, bumps a
 * counter and saves it, as the Express app does. The session middleware is either sessile's,
 * over the target's store, or the framework's usual one: over the target's store through
 * sessile's adapter, or over that middleware's own default store.
 */
import { createRequire } from 'node:module';
import type { SessionStore } from '@sessile/core';
import { makeSessionBody } from '../body.js';

const require = createRequire(import.meta.url);

export type FrameworkMode =
  | 'koa-sessile'
  | 'koa-session'
  | 'koa-session-default'
  | 'hono-sessile'
  | 'hono-sessions'
  | 'hono-sessions-default';

export const FRAMEWORK_MODES: readonly FrameworkMode[] = [
  'koa-sessile',
  'koa-session',
  'koa-session-default',
  'hono-sessile',
  'hono-sessions',
  'hono-sessions-default',
];

const SECRET = 'sessile-benchmark-secret, 32 characters or more';
const MAX_AGE_MS = 3_600_000;

/** The session's JSON after a visit: filled on the first one, its counter bumped on each. */
function visit(data: Record<string, unknown>, seed: number): number {
  if (data.userId === undefined) Object.assign(data, makeSessionBody(seed));
  data.counter = ((data.counter as number | undefined) ?? 0) + 1;
  return data.counter as number;
}

/** A lock not free within its wait is the server being busy: 503, as an app would answer. */
function statusOf(error: unknown): number {
  return (error as { code?: unknown } | null)?.code === 'ERR_LOCK_TIMEOUT' ? 503 : 500;
}

interface KoaContext {
  status: number;
  body: unknown;
  path: string;
  session?: Record<string, unknown> & { data?: Record<string, unknown> };
}
type KoaMiddleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;
interface KoaApp {
  keys: string[];
  use(middleware: KoaMiddleware | unknown): void;
  callback(): (req: unknown, res: unknown) => void;
}

async function koaApp(mode: FrameworkMode, store: SessionStore | undefined) {
  const Koa = require('koa') as new () => KoaApp;
  const app = new Koa();
  app.keys = [SECRET];
  app.use((async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      ctx.status = statusOf(error);
      ctx.body = { error: String(error) };
    }
  }) satisfies KoaMiddleware);
  app.use((async (ctx, next) => {
    if (ctx.path === '/connect') ctx.body = {};
    else await next();
  }) satisfies KoaMiddleware);
  if (mode === 'koa-sessile') {
    const { sessile } = await import('@sessile/koa');
    app.use(sessile({ store: store as SessionStore, secret: SECRET, idleTimeoutMs: MAX_AGE_MS }));
  } else {
    type KoaSession = (options: object, app: KoaApp) => unknown;
    const loaded = require('koa-session') as KoaSession | { default: KoaSession };
    const session = typeof loaded === 'function' ? loaded : loaded.default;
    const { toKoaSessionStore } = await import('@sessile/koa');
    const options =
      mode === 'koa-session-default'
        ? { maxAge: MAX_AGE_MS }
        : { maxAge: MAX_AGE_MS, store: toKoaSessionStore(store as SessionStore) };
    app.use(session(options, app));
  }
  let served = 0;
  app.use((async (ctx) => {
    const session = ctx.session;
    const data = mode === 'koa-sessile' ? session?.data : session;
    if (data === undefined) throw new Error('no session');
    ctx.body = { counter: visit(data, served++) };
  }) satisfies KoaMiddleware);
  return app.callback();
}

interface HonoContext {
  get(name: 'session'): {
    data?: Record<string, unknown>;
    get?(key: string): unknown;
    set?(key: string, value: unknown): void;
  };
  json(body: unknown, status?: number): Response;
}
interface HonoApp {
  use(path: string, middleware: unknown): void;
  get(path: string, handler: (c: HonoContext) => Response | Promise<Response>): void;
  onError(handler: (error: unknown, c: HonoContext) => Response): void;
  fetch: unknown;
}

/** hono-sessions keeps flat keys: the body lives under one key, as an app would keep it. */
function honoSessionsVisit(session: ReturnType<HonoContext['get']>, seed: number): number {
  const data = (session.get?.('app') as Record<string, unknown> | undefined) ?? {};
  const counter = visit(data, seed);
  session.set?.('app', data);
  return counter;
}

async function honoApp(mode: FrameworkMode, store: SessionStore | undefined) {
  const { Hono } = (await import('hono')) as unknown as { Hono: new () => HonoApp };
  const app = new Hono();
  app.get('/connect', (c) => c.json({}));
  app.onError((error, c) => c.json({ error: String(error) }, statusOf(error)));
  if (mode === 'hono-sessile') {
    const { sessile } = await import('@sessile/hono');
    app.use(
      '/',
      sessile({ store: store as SessionStore, secret: SECRET, idleTimeoutMs: MAX_AGE_MS }),
    );
  } else {
    const honoSessions = (await import('hono-sessions')) as unknown as {
      sessionMiddleware(options: object): unknown;
      MemoryStore: new () => unknown;
    };
    const { toHonoSessionsStore } = await import('@sessile/hono');
    app.use(
      '/',
      honoSessions.sessionMiddleware({
        store:
          mode === 'hono-sessions-default'
            ? new honoSessions.MemoryStore()
            : toHonoSessionsStore(store as SessionStore),
        expireAfterSeconds: MAX_AGE_MS / 1000,
        cookieOptions: { path: '/', httpOnly: true },
      }),
    );
  }
  let served = 0;
  app.get('/', (c) => {
    const session = c.get('session');
    const counter =
      mode === 'hono-sessile'
        ? visit(session.data as Record<string, unknown>, served++)
        : honoSessionsVisit(session, served++);
    return c.json({ counter });
  });
  return app;
}

/**
 * Serves `mode` on an ephemeral loopback port and resolves with the port. `openStore` gives
 * the target's store; the `-default` modes never call it.
 */
export async function listenFramework(
  mode: FrameworkMode,
  openStore: () => Promise<SessionStore>,
): Promise<number> {
  const store = mode.endsWith('-default') ? undefined : await openStore();
  const { createServer } = await import('node:http');
  if (mode.startsWith('koa')) {
    const server = createServer(
      (await koaApp(mode, store)) as Parameters<typeof createServer>[0] & object,
    );
    server.keepAliveTimeout = 60_000;
    return new Promise((resolve) =>
      server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
    );
  }
  const { serve } = (await import('@hono/node-server')) as unknown as {
    serve(
      options: { fetch: unknown; port: number; hostname: string },
      listening: (info: { port: number }) => void,
    ): { keepAliveTimeout: number };
  };
  const app = await honoApp(mode, store);
  return new Promise((resolve) => {
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) =>
      resolve(info.port),
    );
    server.keepAliveTimeout = 60_000;
  });
}
