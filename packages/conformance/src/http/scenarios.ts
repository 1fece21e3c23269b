import { aesGcmCodec, generateAesKey, generateSessionId, isSessionError } from '@sessile/core';
import { describe, expect, it } from 'vitest';
import { delay } from '../helpers.js';
import { gate } from './app.js';
import { CookieJar } from './cookie-jar.js';
import type { Harness } from './harness.js';
import type { HttpStoreFixture } from './options.js';

const OLD_SECRET = 'the secret being retired, 32 characters or more';
const NEW_SECRET = 'the secret taking over, 32 characters or more';

/** Locking, no resurrection, fixation, tampering, rotation and timeouts over one store. */
export function storeScenarios(harness: Harness, fixture: HttpStoreFixture): void {
  const { start } = harness;
  async function openStore() {
    const store = await fixture.open();
    harness.defer(() => store.close());
    return store;
  }
  const test = (name: string, body: () => Promise<void>) => it(name, body, 120_000);

  describe(`over HTTP with ${fixture.name}`, () => {
    test('keeps a counter across requests, setting the cookie only once it is stored', async () => {
      const { url } = await start(await openStore());
      const jar = new CookieJar();
      const first = await jar.fetch(`${url}/count`);
      expect(first.headers.getSetCookie()).toEqual([]);
      await jar.json(`${url}/increment`, { method: 'POST' });
      const cookie = jar.cookies.get('sid');
      expect(cookie).toBeDefined();
      await jar.json(`${url}/increment`, { method: 'POST' });
      expect(await jar.json(`${url}/count`)).toMatchObject({ count: 2 });
      expect(jar.cookies.get('sid')).toBe(cookie);
    });

    test('loses 0 of 200 parallel increments on one session', async () => {
      const { url } = await start(await openStore());
      const jar = new CookieJar();
      await jar.json(`${url}/increment`, { method: 'POST' });
      const results = await Promise.all(
        Array.from({ length: 200 }, () =>
          jar.clone().json<{ count: number }>(`${url}/increment`, { method: 'POST' }),
        ),
      );
      expect(new Set(results.map((result) => result.count)).size).toBe(200);
      expect(await jar.json(`${url}/count`)).toMatchObject({ count: 201 });
    });

    test('never brings a session back when a request from before the logout finishes after it (locking on)', async () => {
      const late = gate();
      const store = await openStore();
      const { url } = await start(store, {}, { late });
      const jar = new CookieJar();
      const { id } = await jar.json<{ id: string }>(`${url}/login?user=alice`, {
        method: 'POST',
      });
      const lateRequest = jar.clone().json(`${url}/late-write`, { method: 'POST' });
      await late.reached;
      // The logout waits for the late request's lock, so it runs after the late write.
      const logout = jar.clone().json(`${url}/logout`, { method: 'POST' });
      late.open();
      await Promise.all([lateRequest, logout]);
      expect(await store.get(id)).toBeUndefined();
      const stale = new CookieJar();
      stale.cookies.set('sid', jar.cookies.get('sid') as string);
      expect(await stale.json(`${url}/count`)).toMatchObject({ user: null, count: 0 });
    });

    test('never brings a session back when a late save runs after the logout (locking off)', async () => {
      const late = gate();
      const store = await openStore();
      const { url } = await start(store, { lock: false }, { late });
      const jar = new CookieJar();
      await jar.json(`${url}/login?user=alice`, { method: 'POST' });
      const id = (await jar.json<{ id: string }>(`${url}/count`)).id;
      const lateRequest = jar.clone().json(`${url}/late-write`, { method: 'POST' });
      await late.reached;
      // Without locking the logout completes while the late request is still in flight.
      await jar.clone().json(`${url}/logout`, { method: 'POST' });
      late.open();
      await lateRequest;
      expect(await store.get(id)).toBeUndefined();
      const stale = new CookieJar();
      stale.cookies.set('sid', jar.cookies.get('sid') as string);
      expect(await stale.json(`${url}/count`)).toMatchObject({ user: null, count: 0 });
    });

    test("keeps a login's new cookie when requests that carried the old one finish after it", async () => {
      const late = gate();
      const store = await openStore();
      const { url } = await start(store, { lock: false }, { late });
      const jar = new CookieJar();
      await jar.json(`${url}/increment`, { method: 'POST' });
      // One browser: a request sent with the session's cookie before the login, which writes
      // once the login has removed the session...
      const inFlight = jar.clone().fetch(`${url}/late-write`, { method: 'POST' });
      await late.reached;
      const beforeLogin = jar.clone();
      await jar.json(`${url}/login?user=alice`, { method: 'POST' });
      // ...and one sent with the old cookie before the login's answer arrived.
      jar.remember(await beforeLogin.fetch(`${url}/count`));
      late.open();
      jar.remember(await inFlight);
      // Neither answer deletes the cookie the login set: the user stays signed in.
      expect(await jar.json(`${url}/count`)).toMatchObject({ user: 'alice' });
    });

    test('gives a fresh id to a client-chosen id, even a validly signed one, and on login', async () => {
      const store = await openStore();
      const { url, cookie } = await start(store);
      const planted = generateSessionId();
      const attacker = new CookieJar();
      attacker.cookies.set('sid', encodeURIComponent(cookie.sign(planted)));
      expect(await attacker.json(`${url}/count`)).not.toMatchObject({ id: planted });
      await attacker.json(`${url}/increment`, { method: 'POST' });
      const issued = attacker.cookies.get('sid') as string;
      expect(cookie.unsign(decodeURIComponent(issued))).not.toBe(planted);
      expect(await store.get(planted)).toBeUndefined();

      // An issued id planted in a victim's browser stops working when the victim logs in.
      const victim = new CookieJar();
      victim.cookies.set('sid', issued);
      await victim.json(`${url}/login?user=victim`, { method: 'POST' });
      expect(victim.cookies.get('sid')).not.toBe(issued);
      expect(await victim.json(`${url}/count`)).toMatchObject({ user: 'victim', count: 1 });
      expect(await attacker.json(`${url}/count`)).toMatchObject({ user: null });
    });

    test('ignores a tampered cookie', async () => {
      const { url } = await start(await openStore());
      const jar = new CookieJar();
      await jar.json(`${url}/increment`, { method: 'POST' });
      const cookie = jar.cookies.get('sid') as string;
      const flip = (text: string, index: number) =>
        text.slice(0, index) + (text[index] === 'A' ? 'B' : 'A') + text.slice(index + 1);
      for (const tampered of [
        flip(cookie, 3),
        flip(cookie, cookie.length - 3),
        `${cookie}x`,
        cookie.split('.')[0],
      ]) {
        const forged = new CookieJar();
        forged.cookies.set('sid', tampered as string);
        expect(await forged.json(`${url}/count`)).toMatchObject({ count: 0 });
      }
      expect(await jar.json(`${url}/count`)).toMatchObject({ count: 1 });
    });

    test('keeps a user signed in when a cookie of the same name that names no session comes first', async () => {
      const { url } = await start(await openStore());
      const user = new CookieJar();
      await user.json(`${url}/increment`, { method: 'POST' });
      const live = user.cookies.get('sid') as string;
      // A cookie left under an old path or domain, whose session ended: browsers send it first.
      const other = new CookieJar();
      await other.json(`${url}/increment`, { method: 'POST' });
      const stale = other.cookies.get('sid') as string;
      await other.json(`${url}/logout`, { method: 'POST' });
      const both = (first: string, second: string) => ({
        headers: { cookie: `sid=${first}; sid=${second}` },
      });
      const increment = await fetch(`${url}/increment`, { method: 'POST', ...both(stale, live) });
      expect(await increment.json()).toMatchObject({ count: 2 });
      // Its own cookie is set again with the live id, under this app's path.
      const setCookie = increment.headers.getSetCookie();
      expect(setCookie.map((line) => line.split(';')[0])).toEqual([`sid=${live}`]);
      const reversed = await fetch(`${url}/count`, both(live, stale));
      expect(await reversed.json()).toMatchObject({ count: 2 });
      expect(await user.json(`${url}/count`)).toMatchObject({ count: 2 });
    });

    test('accepts a cookie signed with an old secret during rotation, and not after it', async () => {
      const store = await openStore();
      const before = await start(store, { secret: OLD_SECRET });
      const jar = new CookieJar();
      await jar.json(`${before.url}/increment`, { method: 'POST' });
      const oldCookie = jar.cookies.get('sid') as string;

      const during = await start(store, { secret: [NEW_SECRET, OLD_SECRET] });
      expect(await jar.json(`${during.url}/count`)).toMatchObject({ count: 1 });
      expect(during.cookie.sign('x')).not.toBe(before.cookie.sign('x'));

      const after = await start(store, { secret: NEW_SECRET });
      const stale = new CookieJar();
      stale.cookies.set('sid', oldCookie);
      expect(await stale.json(`${after.url}/count`)).toMatchObject({ count: 0 });
    });

    test('re-signs a cookie signed with the old secret, also when the session is unchanged, so the old secret can be dropped', async () => {
      const store = await openStore();
      const before = await start(store, { secret: OLD_SECRET });
      const reader = new CookieJar();
      const writer = new CookieJar();
      for (const jar of [reader, writer])
        await jar.json(`${before.url}/increment`, { method: 'POST' });
      const oldCookies = [reader.cookies.get('sid'), writer.cookies.get('sid')];

      // touchAfterMs keeps the reader's request from touching: its session is neither saved nor touched.
      const during = await start(store, {
        secret: [NEW_SECRET, OLD_SECRET],
        touchAfterMs: 20 * 60_000,
      });
      const read = await reader.fetch(`${during.url}/count`);
      expect(await read.json()).toMatchObject({ count: 1 });
      expect(read.headers.getSetCookie()).toHaveLength(1);
      expect(await writer.json(`${during.url}/increment`, { method: 'POST' })).toMatchObject({
        count: 2,
      });
      expect(reader.cookies.get('sid')).not.toBe(oldCookies[0]);
      expect(writer.cookies.get('sid')).not.toBe(oldCookies[1]);
      // Signed with the first secret now, so the next response leaves the cookie alone.
      expect((await reader.fetch(`${during.url}/count`)).headers.getSetCookie()).toEqual([]);

      const after = await start(store, { secret: NEW_SECRET });
      expect(await reader.json(`${after.url}/count`)).toMatchObject({ count: 1 });
      expect(await writer.json(`${after.url}/count`)).toMatchObject({ count: 2 });
    });

    test('detects tampering with the AES-GCM payload in storage and starts a fresh session', async () => {
      const store = await openStore();
      const { url, errors } = await start(store, {
        codec: aesGcmCodec({ keys: [generateAesKey()] }),
      });
      // One flipped bit inside the payload, and one in its last byte.
      for (const position of [20, -1]) {
        const jar = new CookieJar();
        await jar.json(`${url}/increment`, { method: 'POST' });
        const { id } = await jar.json<{ id: string }>(`${url}/count`);
        const record = await store.get(id);
        if (record === undefined) throw new Error('expected a stored session');
        const tampered = Uint8Array.from(record.data);
        const index = position < 0 ? tampered.length + position : position;
        tampered[index] = (tampered[index] as number) ^ 0x01;
        await store.set(id, { data: tampered, expiresAt: record.expiresAt });
        const errorsBefore = errors.length;
        const after = await jar.json<{ id: string; count: number }>(`${url}/count`);
        expect(after.count).toBe(0);
        expect(after.id).not.toBe(id);
        expect(
          errors.slice(errorsBefore).some((error) => isSessionError(error, 'ERR_CORRUPT_RECORD')),
        ).toBe(true);
      }
    });

    test("signs out other devices: the owner's list shows both logins, and the other device's next request and its request in flight are logged out", async () => {
      const late = gate();
      const store = await openStore();
      const { url } = await start(store, {}, { late });
      const laptop = new CookieJar();
      const phone = new CookieJar();
      const { id: laptopId } = await laptop.json<{ id: string }>(`${url}/owner-login?user=ada`, {
        method: 'POST',
      });
      await phone.json(`${url}/owner-login?user=ada`, { method: 'POST' });
      expect(await laptop.json(`${url}/count`)).toMatchObject({ user: 'ada', owner: 'ada' });
      const devices = await phone.json<unknown>(`${url}/devices`);
      if (!store.capabilities.ownerIndex) {
        expect(devices).toEqual({ error: 'ERR_UNSUPPORTED' });
        return;
      }
      expect(devices).toHaveLength(2);
      expect(
        (devices as Array<{ current: boolean }>).map((device) => device.current).sort(),
      ).toEqual([false, true]);
      // The adapter hands loginMeta the framework's request.
      expect((devices as Array<{ meta: unknown }>)[0]?.meta).toEqual({
        label: 'via loginMeta',
        request: 'object',
      });
      const inFlight = laptop.clone().json(`${url}/late-write`, { method: 'POST' });
      await late.reached;
      expect(await phone.json(`${url}/sign-out-others`, { method: 'POST' })).toEqual({
        revoked: 1,
      });
      late.open();
      await inFlight;
      expect(await store.get(laptopId)).toBeUndefined();
      expect(await laptop.json(`${url}/count`)).toMatchObject({ user: null, owner: null });
      expect(await phone.json(`${url}/count`)).toMatchObject({ user: 'ada', owner: 'ada' });
      expect(await phone.json(`${url}/devices`)).toHaveLength(1);
    });

    test('ends a session after the idle timeout', async () => {
      const { url } = await start(await openStore(), { idleTimeoutMs: 300 });
      const jar = new CookieJar();
      await jar.json(`${url}/increment`, { method: 'POST' });
      await delay(700);
      expect(await jar.json(`${url}/count`)).toMatchObject({ count: 0 });
    });

    test('ends an active session after the absolute timeout', async () => {
      const { url } = await start(await openStore(), {
        idleTimeoutMs: 60_000,
        absoluteTimeoutMs: 600,
        touchAfterMs: 0,
      });
      const jar = new CookieJar();
      await jar.json(`${url}/increment`, { method: 'POST' });
      let count = 1;
      for (let step = 0; step < 100 && count > 0; step++) {
        await delay(50);
        count = (await jar.json<{ count: number }>(`${url}/count`)).count;
      }
      expect(count).toBe(0);
    });
  });
}
