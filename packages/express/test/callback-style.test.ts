import { CookieJar } from '@sessile/conformance/http';
import { MemoryStore, manual } from '@sessile/core';
import express, { type NextFunction, type Request, type Response } from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { type SessileRequest, sessile } from '../src/index.js';
import { serveApp } from './helpers.js';

type Data = { user?: string };

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const session = (req: Request) => (req as unknown as SessileRequest<Data>).session;
/** express-session's `req.session.regenerate(callback)`, which sessile's types refuse. */
const regenerateWithCallback = (req: Request, callback: (error?: unknown) => void) =>
  (session(req).regenerate as unknown as (callback: (error?: unknown) => void) => void)(callback);

/** A real Express app whose logins use express-session's callback idiom, as passport does. */
async function start() {
  const store = new MemoryStore();
  const errors: unknown[] = [];
  const sessions = sessile<Data>({
    store,
    secret: 'a secret of 32 characters or more for these tests',
    cleanup: manual(),
    onError: (error) => errors.push(error),
  });
  const app = express();
  app.use(sessions);
  app.get('/visit', (req, res) => {
    session(req).data.user ??= 'guest';
    res.send(session(req).data.user);
  });
  app.get('/login', (req, res, next) => {
    regenerateWithCallback(req, (error) => {
      if (error) return next(error);
      session(req).data.user = 'ada';
      res.send('signed in');
    });
  });
  app.get('/login-ignoring-error', (req, res) => {
    regenerateWithCallback(req, () => {
      session(req).data.user = 'ada';
      res.send('signed in');
    });
  });
  app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
    res.status(500).send(error.message);
  });
  const url = await serveApp(app, cleanups, sessions, store);
  return { url, errors };
}

async function get(url: string, jar: CookieJar): Promise<{ status: number; body: string }> {
  const cookie = jar.header();
  const response = await fetch(url, {
    headers: cookie === undefined ? {} : { cookie },
    // Without the fix the response never comes: fail instead of waiting for the test's timeout.
    signal: AbortSignal.timeout(5_000),
  });
  jar.remember(response);
  return { status: response.status, body: await response.text() };
}

describe('sessile() with express-session callback idioms', () => {
  it('answers req.session.regenerate(callback) through the error handler, saying to await it, and frees the lock', async () => {
    const { url, errors } = await start();
    const jar = new CookieJar();
    expect(await get(`${url}/visit`, jar)).toEqual({ status: 200, body: 'guest' });
    expect((await get(`${url}/login`, jar)).status).toBe(500);
    // The commit refuses the session too, and reports why.
    expect(errors).toEqual([expect.any(TypeError)]);
    expect((errors[0] as Error).message).toMatch(/await session\.regenerate\(\)/);
    // The same session answers at once (its lock was released), unchanged by the failed login.
    expect(await get(`${url}/visit`, jar)).toEqual({ status: 200, body: 'guest' });
  });

  it('fails a route whose callback ignores the error, instead of saving its login under the old id', async () => {
    const { url, errors } = await start();
    const jar = new CookieJar();
    await get(`${url}/visit`, jar);
    expect((await get(`${url}/login-ignoring-error`, jar)).status).toBe(500);
    expect(errors).toEqual([expect.any(TypeError)]);
    expect(await get(`${url}/visit`, jar)).toEqual({ status: 200, body: 'guest' });
  });
});
