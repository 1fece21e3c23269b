import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CookieJar } from '@sessile/conformance/http';
import { manual, type SessionStore } from '@sessile/core';
import { SqliteStore } from '@sessile/sqlite';
import express, { type NextFunction, type Request, type Response } from 'express';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type SessileMiddleware, type SessileRequest, sessile } from '../src/index.js';
import { serveApp } from './helpers.js';

type Data = { user?: string; count?: number };

const root = mkdtempSync(join(tmpdir(), 'sessile-express-commit-on-error-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const session = (req: Request) => (req as unknown as SessileRequest<Data>).session;

/** An Express app over a real SQLite file whose routes change the session, then fail or not. */
async function start(commitOnError?: boolean) {
  let opened = 0;
  const store = await SqliteStore.open({ path: join(root, `${Date.now()}-${++opened}.db`) });
  const sessions = sessile<Data>({
    store,
    secret: 'a secret of 32 characters or more for these tests',
    cleanup: manual(),
    ...(commitOnError === undefined ? {} : { commitOnError }),
  });
  const app = express();
  app.use(sessions);
  app.get('/login', (req, res) => {
    Object.assign(session(req).data, { user: 'ada', count: 0 });
    res.send('ok');
  });
  app.get('/throw', (req) => {
    session(req).data.count = (session(req).data.count ?? 0) + 1;
    throw new Error('the handler failed after changing the session');
  });
  app.get('/throw-async', async (req) => {
    session(req).data.count = (session(req).data.count ?? 0) + 1;
    await new Promise((resolve) => setImmediate(resolve));
    throw new Error('the async handler failed after changing the session');
  });
  app.get('/next-503', (req, _res, next) => {
    session(req).data.count = (session(req).data.count ?? 0) + 1;
    next(Object.assign(new Error('the backend is down'), { status: 503 }));
  });
  app.get('/handled', (req, _res, next) => {
    session(req).data.count = (session(req).data.count ?? 0) + 1;
    next(Object.assign(new Error('to the app error handler'), { handled: true }));
  });
  app.get('/bad-request', (req, res) => {
    session(req).data.count = (session(req).data.count ?? 0) + 1;
    res.status(400).send('bad request');
  });
  app.get('/write-head-500', (req, res) => {
    session(req).data.count = 1;
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end('failed');
  });
  app.get('/regenerate-then-throw', async (req) => {
    await session(req).regenerate();
    session(req).data.user = 'someone else';
    throw new Error('the handler failed after regenerating');
  });
  // An app's own error middleware that answers 500 itself.
  app.use((error: { handled?: boolean }, _req: Request, res: Response, next: NextFunction) => {
    if (error.handled) res.status(500).json({ error: 'handled' });
    else next(error);
  });
  const url = await serveApp(app, cleanups, sessions, store);
  return { url, store, sessions };
}

/** Every session the store holds, decoded: its data by id. */
async function storedSessions(store: SessionStore, sessions: SessileMiddleware<Data>) {
  const found: Record<string, Data> = {};
  for await (const id of store.ids()) {
    const record = await store.get(id);
    if (record !== undefined) found[id] = sessions.manager.codec.decode(record.data, id).data;
  }
  return found;
}

async function loggedIn(url: string): Promise<CookieJar> {
  const jar = new CookieJar();
  expect((await jar.fetch(`${url}/login`)).status).toBe(200);
  return jar;
}

describe('sessile() commitOnError: false', () => {
  it('a handler that throws (sync, async, next(error), the app error handler) answers 500 and saves none of its changes', async () => {
    const { url, store, sessions } = await start(false);
    const jar = await loggedIn(url);
    const before = await storedSessions(store, sessions);
    expect(Object.values(before)).toEqual([{ user: 'ada', count: 0 }]);
    for (const [path, status] of [
      ['/throw', 500],
      ['/throw-async', 500],
      ['/next-503', 503],
      ['/handled', 500],
    ] as const) {
      const response = await jar.fetch(`${url}${path}`);
      expect(response.status, path).toBe(status);
      expect(response.headers.getSetCookie(), path).toEqual([]);
      expect(await storedSessions(store, sessions), path).toEqual(before);
    }
    // The session is still there and still unlocked: a good request goes on from it.
    expect((await jar.fetch(`${url}/bad-request`)).status).toBe(400);
    expect(Object.values(await storedSessions(store, sessions))).toEqual([
      { user: 'ada', count: 1 },
    ]);
  });

  it('a new session whose first request fails is not stored and gets no cookie, also when the handler wrote its head', async () => {
    const { url, store } = await start(false);
    for (const path of ['/throw', '/write-head-500']) {
      const response = await new CookieJar().fetch(`${url}${path}`);
      expect(response.status, path).toBe(500);
      // Headers written before end() too: no cookie for a session that is not stored.
      expect(response.headers.getSetCookie(), path).toEqual([]);
    }
    expect(await store.count()).toBe(0);
  });

  it('regenerate() then a failure: the new id is not stored and the cookie is cleared', async () => {
    const { url, store, sessions } = await start(false);
    const jar = await loggedIn(url);
    const response = await jar.fetch(`${url}/regenerate-then-throw`);
    expect(response.status).toBe(500);
    // regenerate() deleted the old id at once; the client's cookie for it is dropped.
    expect(jar.cookies.size).toBe(0);
    expect(await storedSessions(store, sessions)).toEqual({});
  });
});

describe('sessile() commitOnError default (true)', () => {
  it('a handler that throws after changing the session answers 500, and the change is saved', async () => {
    const { url, store, sessions } = await start();
    const jar = await loggedIn(url);
    expect((await jar.fetch(`${url}/throw`)).status).toBe(500);
    expect((await jar.fetch(`${url}/throw-async`)).status).toBe(500);
    expect(Object.values(await storedSessions(store, sessions))).toEqual([
      { user: 'ada', count: 2 },
    ]);
  });

  it('refuses a commitOnError that is not a boolean', async () => {
    const store = await SqliteStore.open({ path: join(root, 'refused.db') });
    cleanups.push(() => store.close());
    expect(() =>
      sessile({
        store,
        secret: 'a secret of 32 characters or more for these tests',
        cleanup: manual(),
        commitOnError: 'false' as unknown as boolean,
      }),
    ).toThrow("sessile(): commitOnError must be a boolean, got 'false' (a string)");
  });

  it('names itself when the store is missing, and refuses an array of options', () => {
    const secret = 'a secret of 32 characters or more for these tests';
    expect(() => sessile({ secret } as never)).toThrow(
      'sessile() needs options { store, secret }: store is missing',
    );
    expect(() => sessile([] as never)).toThrow(
      'sessile() needs options { store, secret }, got an array',
    );
  });
});
