// The HTTP scenarios every sessile framework binding must pass; @sessile/express's and
// @sessile/fastify's tests both run them, each over its own app.
import {
  aesGcmCodec,
  generateAesKey,
  generateSessionId,
  isSessionError,
  MemoryStore,
  manual,
  type SessionCookie,
  type SessionCookieOptions,
  type SessionManagerOptions,
  type SessionStore,
  type SweepRun,
  sweepByChance,
} from '@sessile/core';
import { afterEach, describe, expect, it } from 'vitest';
import { CookieJar, sleep, storeFixtures } from './helpers.js';

/** The session data the scenario apps keep. */
export type ScenarioData = { count?: number; user?: string; blob?: string };

/** A gate a handler waits on, so a test can hold a request in flight. */
export interface Gate {
  /** Lets the waiting handler go on. */
  open(): void;
  opened: Promise<void>;
  /** Called by the handler once it is waiting. */
  entered(): void;
  reached: Promise<void>;
}

export function gate(): Gate {
  let open!: () => void;
  let entered!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  const reached = new Promise<void>((resolve) => (entered = resolve));
  return { open, opened, entered, reached };
}

export interface ScenarioGates {
  /** `/late-write` waits on it before writing. */
  late?: Gate;
  /** `/hang` waits on it (or forever) and never answers before it opens. */
  hang?: Gate;
}

/** Everything a binding takes besides the store: the manager's options, the secret and the cookie. */
export type ScenarioAppOptions = Omit<SessionManagerOptions, 'store'> & {
  secret: string | readonly string[];
  cookie?: Omit<SessionCookieOptions, 'secrets'>;
};

export interface ScenarioApp {
  /** Base URL of the listening server, without a trailing slash. */
  url: string;
  /** The cookie signer the binding uses, so a test can forge validly signed cookies. */
  cookie: Pick<SessionCookie, 'sign' | 'unsign'>;
  /** Stops the server and the session manager; the store stays open. */
  close(): Promise<void>;
}

/**
 * Starts a server with the framework's session binding over `store` and `options`, serving:
 * `GET /count` -> `{count, user, id}` of the session (`count` 0 and `user` null when unset);
 * `POST /increment` -> reads `count`, waits 1 ms, writes `count + 1` and answers `{count}`;
 * `POST /login` with JSON `{user}` -> regenerates, stores `user`, answers `{id}`;
 * `POST /logout` -> invalidates the session; `POST /late-write` -> waits on `gates.late`, then
 * writes `count` 999 and `user` 'resurrected'; `GET /hang` -> waits on `gates.hang` without
 * answering; `POST /big` -> stores an 8,000 character `blob`.
 */
export type StartScenarioApp = (
  store: SessionStore,
  options: ScenarioAppOptions,
  gates: ScenarioGates,
) => Promise<ScenarioApp>;

export interface ScenarioExpectations {
  /** The exact body the framework sends with the 500 that replaces an answer whose commit failed. */
  commitFailureBody: string;
}

const json = { 'content-type': 'application/json' };
const OLD_SECRET = 'the secret being retired, 32 characters or more';
const NEW_SECRET = 'the secret taking over, 32 characters or more';

/**
 * The HTTP scenarios over MemoryStore, SqliteStore and FileStore, plus the cookie, hang-up,
 * commit failure and cleanup details over MemoryStore, for the binding `startApp` starts.
 */
export function describeSessionHttpScenarios(
  framework: string,
  startApp: StartScenarioApp,
  expectations: ScenarioExpectations,
): void {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** Starts an app with the tests' defaults; `errors` collects what the manager reports. */
  async function start(
    store: SessionStore,
    options: Partial<ScenarioAppOptions> = {},
    gates: ScenarioGates = {},
  ) {
    const errors: unknown[] = [];
    const app = await startApp(
      store,
      {
        secret: 'the scenario apps sign cookies with this secret',
        cleanup: manual(),
        lock: { waitMs: 60_000 },
        onError: (error) => errors.push(error),
        ...options,
      },
      gates,
    );
    cleanups.push(async () => {
      gates.hang?.open();
      await app.close();
    });
    return { ...app, errors };
  }

  describe.each(storeFixtures)(`${framework} over HTTP with $name`, (fixture) => {
    async function openStore() {
      const opened = await fixture.open();
      cleanups.push(opened.cleanup);
      return opened.store;
    }

    it('keeps a counter across requests, setting the cookie only once it is stored', async () => {
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

    it('loses 0 of 200 parallel increments on one session', async () => {
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

    it('never brings a session back when a request from before the logout finishes after it (locking on)', async () => {
      const late = gate();
      const store = await openStore();
      const { url } = await start(store, {}, { late });
      const jar = new CookieJar();
      const { id } = await jar.json<{ id: string }>(`${url}/login`, {
        method: 'POST',
        body: '{"user":"alice"}',
        headers: json,
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

    it('never brings a session back when a late save runs after the logout (locking off)', async () => {
      const late = gate();
      const store = await openStore();
      const { url } = await start(store, { lock: false }, { late });
      const jar = new CookieJar();
      await jar.json(`${url}/login`, {
        method: 'POST',
        body: '{"user":"alice"}',
        headers: json,
      });
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

    it('gives a fresh id to a client-chosen id, even a validly signed one, and on login', async () => {
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
      await victim.json(`${url}/login`, {
        method: 'POST',
        body: '{"user":"victim"}',
        headers: json,
      });
      expect(victim.cookies.get('sid')).not.toBe(issued);
      expect(await victim.json(`${url}/count`)).toMatchObject({ user: 'victim', count: 1 });
      expect(await attacker.json(`${url}/count`)).toMatchObject({ user: null });
    });

    it('ignores a tampered cookie', async () => {
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

    it('accepts a cookie signed with an old secret during rotation, and not after it', async () => {
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

    it('re-signs a cookie signed with the old secret, also when the session is unchanged, so the old secret can be dropped', async () => {
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
        touchAfterMs: 60 * 60_000,
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

    it('detects tampering with the AES-GCM payload in storage and starts a fresh session', async () => {
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

    it('ends a session after the idle timeout', async () => {
      const { url } = await start(await openStore(), { idleTimeoutMs: 300 });
      const jar = new CookieJar();
      await jar.json(`${url}/increment`, { method: 'POST' });
      await sleep(700);
      expect(await jar.json(`${url}/count`)).toMatchObject({ count: 0 });
    });

    it('ends an active session after the absolute timeout', async () => {
      const { url } = await start(await openStore(), {
        idleTimeoutMs: 60_000,
        absoluteTimeoutMs: 600,
        touchAfterMs: 0,
      });
      const jar = new CookieJar();
      await jar.json(`${url}/increment`, { method: 'POST' });
      let count = 1;
      for (let step = 0; step < 100 && count > 0; step++) {
        await sleep(50);
        count = (await jar.json<{ count: number }>(`${url}/count`)).count;
      }
      expect(count).toBe(0);
    });
  });

  describe(`${framework} details`, () => {
    async function memoryStore(options = {}) {
      const store = new MemoryStore(options);
      cleanups.push(() => store.close());
      return store;
    }

    it('releases the lock when the client hangs up before the response', async () => {
      const hang = gate();
      const { url } = await start(await memoryStore(), {}, { hang });
      const jar = new CookieJar();
      await jar.json(`${url}/increment`, { method: 'POST' });
      const abort = new AbortController();
      const hanging = jar
        .clone()
        .fetch(`${url}/hang`, { signal: abort.signal })
        .catch(() => undefined);
      await hang.reached;
      abort.abort();
      await hanging;
      expect(await jar.json(`${url}/increment`, { method: 'POST' })).toMatchObject({ count: 2 });
    });

    it('answers 500 and stores nothing when the commit fails', async () => {
      const store = await memoryStore({ maxRecordBytes: 1024 });
      const { url, errors } = await start(store);
      const jar = new CookieJar();
      await jar.json(`${url}/increment`, { method: 'POST' });
      const response = await jar.fetch(`${url}/big`, { method: 'POST' });
      expect(response.status).toBe(500);
      expect(await response.text()).toBe(expectations.commitFailureBody);
      expect(errors.some((error) => isSessionError(error, 'ERR_RECORD_TOO_LARGE'))).toBe(true);
      expect(await jar.json(`${url}/increment`, { method: 'POST' })).toMatchObject({ count: 2 });
    });

    it('clears the cookie on logout', async () => {
      const { url } = await start(await memoryStore());
      const jar = new CookieJar();
      await jar.json(`${url}/increment`, { method: 'POST' });
      const response = await jar.fetch(`${url}/logout`, { method: 'POST' });
      expect(response.headers.getSetCookie()[0]).toMatch(/^sid=; .*Max-Age=0/);
      expect(jar.cookies.has('sid')).toBe(false);
    });

    it('writes the cookie options it was given, and clears that cookie on logout', async () => {
      const { url } = await start(await memoryStore(), {
        cookie: {
          name: 'app.sid',
          secure: true,
          sameSite: 'strict',
          path: '/app',
          domain: 'example.test',
          maxAgeMs: 3_600_000,
        },
      });
      const response = await fetch(`${url}/increment`, { method: 'POST' });
      const header = response.headers.getSetCookie()[0] ?? '';
      expect(header).toMatch(/^app\.sid=[^;]+\./);
      for (const attribute of [
        'Path=/app',
        'Domain=example.test',
        'HttpOnly',
        'Secure',
        'SameSite=Strict',
        'Max-Age=3600',
      ]) {
        expect(header.split('; ')).toContain(attribute);
      }
      expect(header).toMatch(/Expires=/);

      const jar = new CookieJar();
      jar.remember(response);
      const logout = await jar.fetch(`${url}/logout`, { method: 'POST' });
      expect(logout.headers.getSetCookie()[0]).toMatch(/^app\.sid=; .*Max-Age=0/);
    });

    it('keeps the default path / and HttpOnly when other cookie options are given', async () => {
      const { url } = await start(await memoryStore(), {
        cookie: { name: 'app.sid', secure: true, sameSite: 'strict', maxAgeMs: 3_600_000 },
      });
      const response = await fetch(`${url}/increment`, { method: 'POST' });
      const header = response.headers.getSetCookie()[0] ?? '';
      expect(header).toMatch(/^app\.sid=[^;]+\./);
      for (const attribute of ['Path=/', 'HttpOnly', 'Secure', 'SameSite=Strict', 'Max-Age=3600']) {
        expect(header.split('; ')).toContain(attribute);
      }
    });

    it('triggers sweepByChance after each response, off the request path', async () => {
      const store = await memoryStore();
      const runs: SweepRun[] = [];
      const { url } = await start(store, {
        cleanup: sweepByChance(1),
        onSweep: (run) => runs.push(run),
      });
      await store.set(generateSessionId(), {
        data: new Uint8Array(2),
        expiresAt: Date.now() + 20,
      });
      await sleep(50);
      expect(runs).toHaveLength(0);
      await fetch(`${url}/count`);
      for (let i = 0; i < 500 && runs.length === 0; i++) await sleep(10);
      expect(runs[0]).toMatchObject({ outcome: 'swept', removed: 1 });
    });
  });
}
