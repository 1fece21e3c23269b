import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import session from 'express-session';

export const SECRET = 'an express-session secret that the move keeps as it is';
const SESSION_MAX_AGE_MS = 3_600_000;

export interface RunningApp {
  url: string;
  close(): Promise<void>;
}

/** A real express-session app: `/login/:user` signs a user in, `/me` shows what the session holds. */
export async function startApp(store: session.Store): Promise<RunningApp> {
  const app = express();
  app.use(
    session({
      store,
      secret: SECRET,
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: SESSION_MAX_AGE_MS },
    }),
  );
  app.post('/login/:user', (req, res) => {
    const fields = req.session as unknown as Record<string, unknown>;
    fields.user = req.params.user;
    fields.cart = [{ sku: 'tea', quantity: 2 }];
    res.json({ ok: true });
  });
  app.get('/me', (req, res) => {
    const fields = req.session as unknown as Record<string, unknown>;
    // Every field the app stored. Left out: the cookie, whose expiry moves on with each request,
    // and session-file-store's own __lastAccess, which it adds to every session it hands out.
    const { cookie: _cookie, __lastAccess: _lastAccess, ...stored } = fields;
    res.json({ user: fields.user ?? null, cart: fields.cart ?? null, stored });
  });
  const server: Server = await new Promise((resolve) => {
    const listening = app.listen(0, '127.0.0.1', () => resolve(listening));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** What `/me` shows for a user that `/login/:user` signed in: the fields the app stored. */
export function signedIn(user: string): unknown {
  const cart = [{ sku: 'tea', quantity: 2 }];
  return { user, cart, stored: { user, cart } };
}

/** Signs `user` in and returns the cookie the browser would keep. */
export async function login(app: RunningApp, user: string): Promise<string> {
  const response = await fetch(`${app.url}/login/${user}`, { method: 'POST' });
  // express-session sends the headers before its store has saved the session, and the body's
  // last byte after: a peer closed on the headers alone may lose the write.
  await response.text();
  const setCookie = response.headers.get('set-cookie');
  if (setCookie === null) throw new Error('the app set no cookie');
  return setCookie.split(';')[0] as string;
}

export async function me(app: RunningApp, cookie: string): Promise<unknown> {
  const response = await fetch(`${app.url}/me`, { headers: { cookie } });
  return response.json();
}

/** The session id inside an express-session cookie (`connect.sid=s%3A<id>.<signature>`). */
export function idOf(cookie: string): string {
  const value = decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1));
  return value.slice(2, value.lastIndexOf('.'));
}

/** Calls a callback-style store method. */
export function call<T>(
  run: (done: (error: unknown, value?: T) => void) => void,
): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    run((error, value) => (error ? reject(error) : resolve(value)));
  });
}
