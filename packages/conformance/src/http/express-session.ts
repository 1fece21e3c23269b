import { randomBytes } from 'node:crypto';
import { ExpressSessionCookie, jsonCodec, type SessionStore } from '@sessile/core';
import { encodeLibrarySession } from '@sessile/core/store';
import { describe, expect, it } from 'vitest';
import type { Harness } from './harness.js';
import type { ExpressSessionSignIn, HttpStoreFixture } from './options.js';

const NEW_SECRET = 'the secret express-session signs with now, 32+ chars';
const OLD_SECRET = 'the secret express-session signed with before, 32+';
const UNKNOWN_SECRET = 'a secret the server never had, 32 characters or more';
const HOUR_MS = 3_600_000;

/**
 * express-session's sign-in as `toExpressStore` stores it: a session with express-session's
 * `cookie` member under an id of its shape (24 random bytes), and its cookie signed as
 * express-session signs it, with the first of `secrets`.
 */
export const storeExpressSession: ExpressSessionSignIn = async (store, user, secrets) => {
  const id = randomBytes(24).toString('base64url');
  const now = Date.now();
  const session = { cookie: { originalMaxAge: HOUR_MS, httpOnly: true, path: '/' }, userId: user };
  await store.set(id, {
    data: encodeLibrarySession(jsonCodec(), id, session, now),
    expiresAt: now + HOUR_MS,
  });
  const signed = new ExpressSessionCookie({}, secrets, 'conformance').sign(id);
  return { id, cookie: `connect.sid=${encodeURIComponent(signed)}` };
};

/** The `name=value` pairs of a response's Set-Cookie headers, in order. */
function setCookies(response: Response): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const header of response.headers.getSetCookie()) {
    const pair = header.split(';')[0] ?? '';
    cookies.set(pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1));
  }
  return cookies;
}

/** `acceptExpressSession`: users signed in with express-session keep their session, and only them. */
export function expressSessionScenarios(
  harness: Harness,
  fixture: HttpStoreFixture,
  signIn: ExpressSessionSignIn,
): void {
  const test = (name: string, body: () => Promise<void>) => it(name, body, 120_000);
  async function openStore(): Promise<SessionStore> {
    const store = await fixture.open();
    harness.defer(() => store.close());
    return store;
  }
  async function start(store: SessionStore, options: object = {}): Promise<string> {
    const app = await harness.start(store, { secret: [NEW_SECRET, OLD_SECRET], ...options });
    return app.url;
  }
  const me = async (url: string, cookie: string) => {
    const response = await fetch(`${url}/data`, { headers: { cookie } });
    return { response, body: (await response.json()) as { id: string; data: object } };
  };

  describe(`after express-session with ${fixture.name}`, () => {
    test('serves express-session users with their data, moving them to its own cookie', async () => {
      const store = await openStore();
      const alice = await signIn(store, 'alice', [NEW_SECRET, OLD_SECRET]);
      // Signed with the secret that is second in the new list: every secret verifies.
      const bob = await signIn(store, 'bob', [OLD_SECRET]);
      const url = await start(store, { acceptExpressSession: true });

      for (const [user, signedIn] of [
        ['alice', alice],
        ['bob', bob],
      ] as const) {
        const { response, body } = await me(url, signedIn.cookie);
        expect(body).toEqual({ id: signedIn.id, data: { userId: user } });
        const cookies = setCookies(response);
        // Its own cookie first, then the one that clears express-session's, and no other.
        expect(response.headers.getSetCookie()).toHaveLength(2);
        expect([...cookies.keys()]).toEqual(['sid', 'connect.sid']);
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
        expect((await me(url, `sid=${sid}`)).body).toEqual({
          id: signedIn.id,
          data: { userId: user, cart: ['tea'] },
        });
      }
    });

    test('gives a forged or unknown connect.sid a fresh session, never its id', async () => {
      const store = await openStore();
      const alice = await signIn(store, 'alice', [NEW_SECRET]);
      const forger = await signIn(store, 'mallory', [UNKNOWN_SECRET]);
      const gone = await signIn(store, 'carol', [NEW_SECRET]);
      // Logged out with express-session: its store deletes the session.
      await store.delete(gone.id);
      const url = await start(store, { acceptExpressSession: true });

      // Alice's id under a signature from a secret the server does not hold, under a made-up
      // signature, and with none.
      const forgedMac = forger.cookie.slice(forger.cookie.lastIndexOf('.'));
      const forged = `connect.sid=${encodeURIComponent(`s:${alice.id}`)}${forgedMac}`;
      const madeUp = `connect.sid=${encodeURIComponent(`s:${alice.id}.${'A'.repeat(43)}`)}`;
      const unsigned = `connect.sid=${alice.id}`;
      for (const cookie of [forged, madeUp, unsigned, gone.cookie]) {
        const { body } = await me(url, cookie);
        expect(body.data).toEqual({});
        expect([alice.id, gone.id]).not.toContain(body.id);
      }
      // The unknown id was validly signed: its cookie is cleared, and no sessile cookie is set
      // for a session that is not stored.
      const { response } = await me(url, gone.cookie);
      expect(Object.fromEntries(setCookies(response))).toEqual({ 'connect.sid': '' });
      expect(await store.get(gone.id)).toBeUndefined();
    });

    test("keeps the name connect.sid for its own cookie, replacing express-session's", async () => {
      const store = await openStore();
      const alice = await signIn(store, 'alice', [NEW_SECRET]);
      const url = await start(store, {
        acceptExpressSession: true,
        cookie: { name: 'connect.sid' },
      });
      const { response, body } = await me(url, alice.cookie);
      expect(body).toEqual({ id: alice.id, data: { userId: 'alice' } });
      const [setCookie, ...more] = response.headers.getSetCookie();
      expect(more).toEqual([]);
      const own = setCookie?.slice('connect.sid='.length, setCookie.indexOf(';')) ?? '';
      expect(decodeURIComponent(own).startsWith(`${alice.id}.`)).toBe(true);
      const again = await me(url, `connect.sid=${own}`);
      expect(again.body).toEqual({ id: alice.id, data: { userId: 'alice' } });
      expect(again.response.headers.getSetCookie()).toEqual([]);
    });

    test('ignores connect.sid without acceptExpressSession', async () => {
      const store = await openStore();
      const alice = await signIn(store, 'alice', [NEW_SECRET]);
      const url = await start(store);
      const { body } = await me(url, alice.cookie);
      expect(body.data).toEqual({});
      expect(body.id).not.toBe(alice.id);
    });
  });
}
