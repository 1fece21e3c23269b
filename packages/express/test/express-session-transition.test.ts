import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { manual } from '@sessile/core';
import { SqliteStore } from '@sessile/sqlite';
import express from 'express';
import session from 'express-session';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type SessileRequest, sessile, toExpressStore } from '../src/index.js';
import { closeServer } from './helpers.js';

declare module 'express-session' {
  interface SessionData {
    userId: string;
  }
}

const NEW_SECRET = 'the secret express-session signs with now, 32+ chars';
const OLD_SECRET = 'the secret express-session signed with before, 32+';

const root = mkdtempSync(join(tmpdir(), 'sessile-express-transition-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The `name=value` pairs of a response's Set-Cookie headers. */
function setCookies(response: Response): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const header of response.headers.getSetCookie()) {
    const pair = header.slice(0, header.indexOf(';'));
    cookies.set(pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1));
  }
  return cookies;
}

describe('sessile() after express-session over toExpressStore', () => {
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

  /** Signs `user` in on a real express-session app; returns its connect.sid cookie pair and id. */
  async function signInWithExpressSession(user: string, secret: string[]) {
    const app = express();
    app.use(
      session({
        store: toExpressStore(store),
        secret,
        resave: false,
        saveUninitialized: false,
        cookie: { maxAge: 3_600_000 },
      }),
    );
    app.post('/login', (req, res) => {
      req.session.userId = user;
      res.json({ id: req.sessionID });
    });
    app.post('/logout', (req, res) => {
      req.session.destroy(() => res.end());
    });
    const server = app.listen(0);
    const url = await listenOn(server);
    cleanups.push(() => closeServer(server));
    const response = await fetch(`${url}/login`, { method: 'POST' });
    const { id } = (await response.json()) as { id: string };
    const value = setCookies(response).get('connect.sid');
    expect(value).toBeDefined();
    return { id, cookie: `connect.sid=${value}`, url };
  }

  async function sessileApp(
    options: { acceptExpressSession?: boolean; cookie?: { name: string } } = {},
  ) {
    const app = express();
    app.use(sessile({ store, secret: [NEW_SECRET, OLD_SECRET], cleanup: manual(), ...options }));
    app.get('/me', (req, res) => {
      const { session: current } = req as unknown as SessileRequest;
      res.json({ id: current.id, data: current.data });
    });
    app.post('/cart', (req, res) => {
      const { session: current } = req as unknown as SessileRequest;
      current.data.cart = ['tea'];
      res.json({ id: current.id });
    });
    const server = app.listen(0);
    const url = await listenOn(server);
    cleanups.push(() => closeServer(server));
    return url;
  }

  it('serves express-session users with their data, moving them to its own cookie', async () => {
    const alice = await signInWithExpressSession('alice', [NEW_SECRET, OLD_SECRET]);
    // Signed with the secret that is second in the new list: every secret verifies.
    const bob = await signInWithExpressSession('bob', [OLD_SECRET]);
    const url = await sessileApp({ acceptExpressSession: true });

    for (const [user, signedIn] of [
      ['alice', alice],
      ['bob', bob],
    ] as const) {
      const response = await fetch(`${url}/me`, { headers: { cookie: signedIn.cookie } });
      expect(await response.json()).toEqual({ id: signedIn.id, data: { userId: user } });
      const cookies = setCookies(response);
      expect(cookies.get('connect.sid')).toBe('');
      const sid = cookies.get('sid');
      expect(decodeURIComponent(sid ?? '').startsWith(`${signedIn.id}.`)).toBe(true);

      // From here on sessile's own cookie carries the same session.
      const cart = await fetch(`${url}/cart`, {
        method: 'POST',
        headers: { cookie: `sid=${sid}` },
      });
      expect(await cart.json()).toEqual({ id: signedIn.id });
      expect(setCookies(cart).has('connect.sid')).toBe(false);
      const again = await fetch(`${url}/me`, { headers: { cookie: `sid=${sid}` } });
      expect(await again.json()).toEqual({
        id: signedIn.id,
        data: { userId: user, cart: ['tea'] },
      });
    }
  });

  it('gives a forged or unknown connect.sid a fresh session, never its id', async () => {
    const alice = await signInWithExpressSession('alice', [NEW_SECRET]);
    const forger = await signInWithExpressSession('mallory', ['a secret the server never had']);
    const gone = await signInWithExpressSession('carol', [NEW_SECRET]);
    await fetch(`${gone.url}/logout`, { method: 'POST', headers: { cookie: gone.cookie } });
    expect(await store.get(gone.id)).toBeUndefined();
    const url = await sessileApp({ acceptExpressSession: true });

    // Alice's id under a signature from a secret the server does not hold.
    const forgedMac = forger.cookie.slice(forger.cookie.lastIndexOf('.'));
    const forged = `connect.sid=${encodeURIComponent(`s:${alice.id}`)}${forgedMac}`;
    const unsigned = `connect.sid=${alice.id}`;
    for (const cookie of [forged, unsigned, gone.cookie]) {
      const response = await fetch(`${url}/me`, { headers: { cookie } });
      const body = (await response.json()) as { id: string; data: object };
      expect(body.data).toEqual({});
      expect([alice.id, gone.id]).not.toContain(body.id);
    }
    // The unknown id was validly signed: its cookie is cleared, and no sessile cookie is set
    // for a session that is not stored.
    const response = await fetch(`${url}/me`, { headers: { cookie: gone.cookie } });
    expect(Object.fromEntries(setCookies(response))).toEqual({ 'connect.sid': '' });
    expect(await store.get(gone.id)).toBeUndefined();
  });

  it("keeps the name connect.sid for its own cookie, replacing express-session's", async () => {
    const alice = await signInWithExpressSession('alice', [NEW_SECRET]);
    const url = await sessileApp({ acceptExpressSession: true, cookie: { name: 'connect.sid' } });
    const response = await fetch(`${url}/me`, { headers: { cookie: alice.cookie } });
    expect(await response.json()).toEqual({ id: alice.id, data: { userId: 'alice' } });
    const [setCookie, ...more] = response.headers.getSetCookie();
    expect(more).toEqual([]);
    const own = setCookie?.slice('connect.sid='.length, setCookie.indexOf(';')) ?? '';
    expect(decodeURIComponent(own).startsWith(`${alice.id}.`)).toBe(true);
    const again = await fetch(`${url}/me`, { headers: { cookie: `connect.sid=${own}` } });
    expect(await again.json()).toEqual({ id: alice.id, data: { userId: 'alice' } });
    expect(again.headers.getSetCookie()).toEqual([]);
  });

  it('refuses an acceptExpressSession it cannot use, naming it', () => {
    const refusal = (acceptExpressSession: unknown) => () =>
      sessile({ store, secret: NEW_SECRET, cleanup: manual(), acceptExpressSession } as never);
    expect(refusal('yes')).toThrow(
      "sessile(): acceptExpressSession must be a boolean or { name, secret }, got 'yes'",
    );
    expect(refusal({ secrets: [OLD_SECRET] })).toThrow(
      "sessile() acceptExpressSession: unknown option 'secrets'; did you mean 'secret'?",
    );
    expect(refusal({ secret: [] })).toThrow(/acceptExpressSession.secret must be a non-empty/);
    expect(refusal({ name: 'connect sid' })).toThrow(/acceptExpressSession.name must be a cookie/);
  });

  it('ignores connect.sid without acceptExpressSession', async () => {
    const alice = await signInWithExpressSession('alice', [NEW_SECRET]);
    const url = await sessileApp();
    const response = await fetch(`${url}/me`, { headers: { cookie: alice.cookie } });
    const body = (await response.json()) as { id: string; data: object };
    expect(body.data).toEqual({});
    expect(body.id).not.toBe(alice.id);
  });
});

async function listenOn(server: Server): Promise<string> {
  if (!server.listening) await new Promise<void>((resolve) => server.once('listening', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('not a TCP server');
  return `http://127.0.0.1:${address.port}`;
}
