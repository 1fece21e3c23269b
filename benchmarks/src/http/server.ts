/**
 * The HTTP app of the end-to-end workload, run as a child process: a cluster primary that forks
 * the workers, each an Express app whose one route loads the session, bumps a counter and saves.
 * Messages to the parent: `{ type: 'ready', port }` or `{ type: 'unavailable', reason }`.
 */
import cluster from 'node:cluster';
import { createRequire } from 'node:module';
import { Unavailable } from '../adapter.js';
import { makeSessionBody } from '../body.js';
import { findTarget } from '../targets/index.js';
import { FRAMEWORK_MODES, type FrameworkMode, listenFramework } from './frameworks.js';

export interface ServerConfig {
  target: string;
  /** Express with express-session or sessile's middleware, or one of the Koa and Hono apps. */
  mode: 'express-session' | 'sessile' | FrameworkMode;
  dir: string;
  workers: number;
}

const require = createRequire(import.meta.url);
const config = JSON.parse(process.argv[2] ?? '{}') as ServerConfig;

function report(message: object): void {
  if (process.connected) process.send?.(message);
}

type Handler = (req: Request, res: Response, next: (error?: unknown) => void) => void;
interface Request {
  session?: Record<string, unknown> & { data?: Record<string, unknown> };
}
interface Response {
  json(body: unknown): void;
  status(code: number): Response;
}
interface App {
  use(
    handler: Handler | ((error: unknown, req: Request, res: Response, next: () => void) => void),
  ): void;
  get(path: string, handler: Handler): void;
  set(name: string, value: unknown): void;
  listen(
    port: number,
    host: string,
    callback: () => void,
  ): { address(): { port: number }; keepAliveTimeout: number };
}

async function buildMiddleware(): Promise<Handler> {
  const target = findTarget(config.target);
  if (target?.http === undefined) throw new Unavailable(`${config.target} has no HTTP setup`);
  if (config.mode === 'sessile') {
    if (target.http.sessileMiddleware === undefined) throw new Unavailable('not a sessile store');
    return (await target.http.sessileMiddleware(config.dir)) as Handler;
  }
  const session = require('express-session') as ((options: object) => Handler) & object;
  const store = await target.http.expressSessionStore(config.dir, session);
  return session({
    store,
    secret: 'sessile-benchmark-secret, 32 characters or more',
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge: 3_600_000, httpOnly: true },
  });
}

function isFrameworkMode(mode: ServerConfig['mode']): mode is FrameworkMode {
  return (FRAMEWORK_MODES as readonly string[]).includes(mode);
}

async function runFrameworkWorker(mode: FrameworkMode): Promise<void> {
  const openStore = findTarget(config.target)?.http?.openStore;
  if (openStore === undefined) throw new Unavailable(`${config.target} is not a sessile store`);
  const port = await listenFramework(mode, () => openStore(config.dir));
  report({ type: 'listening', port });
}

async function runWorker(): Promise<void> {
  if (isFrameworkMode(config.mode)) return runFrameworkWorker(config.mode);
  const express = require('express') as () => App;
  const app = express();
  app.set('etag', false);
  // Outside the session middleware: lets a client open its connections before a measured burst.
  app.get('/connect', (_req, res) => {
    res.json({});
  });
  app.use(await buildMiddleware());
  let served = 0;
  app.get('/', (req, res) => {
    const session = req.session;
    // sessile's middleware keeps the JSON in `session.data`; express-session on the session itself.
    const data =
      session?.data !== undefined && typeof session.data === 'object' ? session.data : session;
    if (data === undefined) {
      res.status(500).json({ error: 'no session' });
      return;
    }
    if (data.userId === undefined) Object.assign(data, makeSessionBody(served++));
    data.counter = ((data.counter as number | undefined) ?? 0) + 1;
    res.json({ counter: data.counter });
  });
  app.use((error: unknown, _req: Request, res: Response, _next: () => void) => {
    // A session lock not free within its wait is the server being busy: 503, as an app would answer.
    const busy = (error as { code?: unknown } | null)?.code === 'ERR_LOCK_TIMEOUT';
    res.status(busy ? 503 : 500).json({ error: String(error) });
  });
  const server = app.listen(0, '127.0.0.1', () => {
    report({ type: 'listening', port: server.address().port });
  });
  // Connections opened ahead of a burst may idle while the others open.
  server.keepAliveTimeout = 60_000;
}

async function runPrimary(): Promise<void> {
  let listening = 0;
  for (let i = 0; i < config.workers; i++) {
    const worker = cluster.fork();
    worker.on('message', (message: { type: string; port?: number; reason?: string }) => {
      if (message.type === 'unavailable') {
        report(message);
        process.exit(0);
      }
      if (message.type === 'listening' && ++listening === config.workers)
        report({ type: 'ready', port: message.port });
    });
    worker.on('exit', (code) => {
      if (code !== 0 && code !== null)
        report({ type: 'unavailable', reason: `worker exited with code ${code}` });
    });
  }
  process.on('disconnect', () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.kill();
    process.exit(0);
  });
}

if (cluster.isPrimary) {
  void runPrimary();
} else {
  runWorker().catch((error: unknown) => {
    const reason = error instanceof Error ? error.message : String(error);
    report({
      type: 'unavailable',
      reason: error instanceof Unavailable ? reason : `failed: ${reason}`,
    });
    setTimeout(() => process.exit(0), 100);
  });
}
