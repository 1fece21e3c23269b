import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { manual } from '@sessile/core';
import { toExpressStore } from '@sessile/express';
import { SqliteStore } from '@sessile/sqlite';
import session from 'express-session';
import Fastify, { type LightMyRequestResponse } from 'fastify';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fastifySessile } from '../src/index.js';

const NEW_SECRET = 'the secret express-session signs with now, 32+ chars';
const OLD_SECRET = 'the secret express-session signed with before, 32+';

const root = mkdtempSync(join(tmpdir(), 'sessile-fastify-transition-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

type SessionRequest = IncomingMessage & {
  session: { userId?: string; destroy(callback: () => void): void };
  sessionID: string;
};

/** The `name=value` pairs of a response's Set-Cookie headers. */
function setCookies(headers: string | string[] | number | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const header of [headers ?? []].flat()) {
    const pair = String(header).slice(0, String(header).indexOf(';'));
    cookies.set(pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1));
  }
  return cookies;
}

describe('@sessile/fastify after express-session over toExpressStore', () => {
  let store: SqliteStore;
  let opened = 0;
  const cleanups: Array<() => Promise<void>> = [];
  beforeEach(async () => {
    store = await SqliteStore.open({ path: join(root, `${++opened}.db`) });
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await store.close();
  });

  /** Signs `user` in on a real express-session server; returns its connect.sid cookie pair and id. */
  async function signInWithExpressSession(user: string, secret: string[], logOut = false) {
    const sessions = session({
      store: toExpressStore(store),
      secret,
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 3_600_000 },
    });
    const server = createServer((req, res) => {
      sessions(req as never, res as never, () => {
        const request = req as SessionRequest;
        if (req.url === '/logout') {
          request.session.destroy(() => res.end());
          return;
        }
        request.session.userId = user;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ id: request.sessionID }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const response = await fetch(`${url}/login`, { method: 'POST' });
    const { id } = (await response.json()) as { id: string };
    const value = setCookies(response.headers.getSetCookie()).get('connect.sid');
    expect(value).toBeDefined();
    const cookie = `connect.sid=${value}`;
    if (logOut) await fetch(`${url}/logout`, { method: 'POST', headers: { cookie } });
    return { id, cookie };
  }

  async function sessileApp(options: { acceptExpressSession?: boolean } = {}) {
    const app = Fastify();
    await app.register(fastifySessile, {
      store,
      secret: [NEW_SECRET, OLD_SECRET],
      cleanup: manual(),
      ...options,
    });
    app.get('/me', async (request) => ({ id: request.session.id, data: request.session.data }));
    app.post('/cart', async (request) => {
      request.session.data.cart = ['tea'];
      return { id: request.session.id };
    });
    cleanups.push(() => app.close());
    return (method: 'GET' | 'POST', url: string, cookie: string) =>
      app.inject({ method, url, headers: { cookie } });
  }

  const body = (response: LightMyRequestResponse) =>
    response.json() as { id: string; data: Record<string, unknown> };

  it('serves express-session users with their data, moving them to its own cookie', async () => {
    const alice = await signInWithExpressSession('alice', [NEW_SECRET, OLD_SECRET]);
    // Signed with the secret that is second in the new list: every secret verifies.
    const bob = await signInWithExpressSession('bob', [OLD_SECRET]);
    const request = await sessileApp({ acceptExpressSession: true });

    for (const [user, signedIn] of [
      ['alice', alice],
      ['bob', bob],
    ] as const) {
      const response = await request('GET', '/me', signedIn.cookie);
      expect(body(response)).toEqual({ id: signedIn.id, data: { userId: user } });
      const cookies = setCookies(response.headers['set-cookie']);
      expect(cookies.get('connect.sid')).toBe('');
      const sid = cookies.get('sid');
      expect(decodeURIComponent(sid ?? '').startsWith(`${signedIn.id}.`)).toBe(true);

      // From here on sessile's own cookie carries the same session.
      const cart = await request('POST', '/cart', `sid=${sid}`);
      expect(body(cart).id).toBe(signedIn.id);
      expect(setCookies(cart.headers['set-cookie']).has('connect.sid')).toBe(false);
      expect(body(await request('GET', '/me', `sid=${sid}`))).toEqual({
        id: signedIn.id,
        data: { userId: user, cart: ['tea'] },
      });
    }
  });

  it('gives a forged or unknown connect.sid a fresh session, never its id', async () => {
    const alice = await signInWithExpressSession('alice', [NEW_SECRET]);
    const forger = await signInWithExpressSession('mallory', ['a secret the server never had']);
    const gone = await signInWithExpressSession('carol', [NEW_SECRET], true);
    expect(await store.get(gone.id)).toBeUndefined();
    const request = await sessileApp({ acceptExpressSession: true });

    // Alice's id under a signature from a secret the server does not hold.
    const forgedMac = forger.cookie.slice(forger.cookie.lastIndexOf('.'));
    const forged = `connect.sid=${encodeURIComponent(`s:${alice.id}`)}${forgedMac}`;
    for (const cookie of [forged, `connect.sid=${alice.id}`, gone.cookie]) {
      const { id, data } = body(await request('GET', '/me', cookie));
      expect(data).toEqual({});
      expect([alice.id, gone.id]).not.toContain(id);
    }
    // The unknown id was validly signed: its cookie is cleared, and no sessile cookie is set
    // for a session that is not stored.
    const response = await request('GET', '/me', gone.cookie);
    expect(Object.fromEntries(setCookies(response.headers['set-cookie']))).toEqual({
      'connect.sid': '',
    });
  });

  it('ignores connect.sid without acceptExpressSession', async () => {
    const alice = await signInWithExpressSession('alice', [NEW_SECRET]);
    const request = await sessileApp();
    const { id, data } = body(await request('GET', '/me', alice.cookie));
    expect(data).toEqual({});
    expect(id).not.toBe(alice.id);
  });
});
