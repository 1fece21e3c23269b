import {
  aesGcmCodec,
  generateAesKey,
  generateSessionId,
  isSessionError,
  MemoryStore,
  manual,
  type SessionStore,
} from '@sessile/core';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { CookieJar, sleep, storeFixtures } from '../../express/test/helpers.js';
import { fastifySessile, type SessileFastifyOptions } from '../src/index.js';

type Data = { count?: number; user?: string; blob?: string };

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function gate() {
  let open!: () => void;
  let entered!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  const reached = new Promise<void>((resolve) => (entered = resolve));
  return { open, opened, entered, reached };
}

async function startApp(
  store: SessionStore,
  options: Partial<SessileFastifyOptions> = {},
  gates: { late?: ReturnType<typeof gate>; hang?: ReturnType<typeof gate> } = {},
) {
  const errors: unknown[] = [];
  const app = Fastify({ forceCloseConnections: true });
  await app.register(fastifySessile, {
    store,
    secret: 'test secret one',
    cleanup: manual(),
    lock: { waitMs: 60_000 },
    onError: (error: unknown) => errors.push(error),
    ...options,
  } as SessileFastifyOptions);
  const data = (request: { session: { data: unknown } }) => request.session.data as Data;
  app.get('/count', async (request) => ({
    count: data(request).count ?? 0,
    user: data(request).user ?? null,
    id: request.session.id,
  }));
  app.post('/increment', async (request) => {
    const current = data(request).count ?? 0;
    // Give a parallel request every chance to interleave with this read-modify-write.
    await sleep(1);
    data(request).count = current + 1;
    return { count: current + 1 };
  });
  app.post('/login', async (request) => {
    await request.session.regenerate();
    data(request).user = String((request.body as { user?: string } | undefined)?.user);
    return { id: request.session.id };
  });
  app.post('/logout', async (request) => {
    await request.session.invalidate();
    return { ok: true };
  });
  app.post('/late-write', async (request) => {
    gates.late?.entered();
    await gates.late?.opened;
    data(request).count = 999;
    data(request).user = 'resurrected';
    return { ok: true };
  });
  app.get('/hang', async () => {
    gates.hang?.entered();
    await gates.hang?.opened;
    return { late: true };
  });
  app.post('/big', async (request) => {
    data(request).blob = 'x'.repeat(8000);
    return { ok: true };
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  cleanups.push(async () => {
    gates.hang?.open();
    await app.close();
  });
  return { url, app, errors };
}

const json = { 'content-type': 'application/json' };

describe.each(storeFixtures)('@sessile/fastify over HTTP with $name', (fixture) => {
  async function openStore() {
    const opened = await fixture.open();
    cleanups.push(opened.cleanup);
    return opened.store;
  }

  it('keeps a counter across requests, setting the cookie only once it is stored', async () => {
    const { url } = await startApp(await openStore());
    const jar = new CookieJar();
    expect((await jar.fetch(`${url}/count`)).headers.getSetCookie()).toEqual([]);
    await jar.json(`${url}/increment`, { method: 'POST' });
    const cookie = jar.cookies.get('sid');
    expect(cookie).toBeDefined();
    await jar.json(`${url}/increment`, { method: 'POST' });
    expect(await jar.json(`${url}/count`)).toMatchObject({ count: 2 });
    expect(jar.cookies.get('sid')).toBe(cookie);
  });

  it('loses 0 of 200 parallel increments on one session', async () => {
    const { url } = await startApp(await openStore());
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

  it('never brings a session back when a request from before the logout finishes after it', async () => {
    for (const lock of [{ waitMs: 60_000 }, false] as const) {
      const late = gate();
      const store = await openStore();
      const { url } = await startApp(store, { lock }, { late });
      const jar = new CookieJar();
      const { id } = await jar.json<{ id: string }>(`${url}/login`, {
        method: 'POST',
        body: '{"user":"alice"}',
        headers: json,
      });
      const lateRequest = jar.clone().json(`${url}/late-write`, { method: 'POST' });
      await late.reached;
      const logout = jar.clone().json(`${url}/logout`, { method: 'POST' });
      // Without locking the logout completes while the late request is still in flight.
      if (lock === false) await logout;
      late.open();
      await Promise.all([lateRequest, logout]);
      expect(await store.get(id)).toBeUndefined();
      const stale = new CookieJar();
      stale.cookies.set('sid', jar.cookies.get('sid') as string);
      expect(await stale.json(`${url}/count`)).toMatchObject({ user: null, count: 0 });
    }
  });

  it('gives a fresh id to a client-chosen id, even a validly signed one, and on login', async () => {
    const store = await openStore();
    const { url, app } = await startApp(store);
    const planted = generateSessionId();
    const attacker = new CookieJar();
    attacker.cookies.set('sid', encodeURIComponent(app.sessile.cookie.sign(planted)));
    await attacker.json(`${url}/increment`, { method: 'POST' });
    const issued = attacker.cookies.get('sid') as string;
    expect(app.sessile.cookie.unsign(decodeURIComponent(issued))).not.toBe(planted);
    expect(await store.get(planted)).toBeUndefined();

    const victim = new CookieJar();
    victim.cookies.set('sid', issued);
    await victim.json(`${url}/login`, { method: 'POST', body: '{"user":"victim"}', headers: json });
    expect(victim.cookies.get('sid')).not.toBe(issued);
    expect(await victim.json(`${url}/count`)).toMatchObject({ user: 'victim', count: 1 });
    expect(await attacker.json(`${url}/count`)).toMatchObject({ user: null });
  });

  it('ignores a tampered cookie', async () => {
    const { url } = await startApp(await openStore());
    const jar = new CookieJar();
    await jar.json(`${url}/increment`, { method: 'POST' });
    const cookie = jar.cookies.get('sid') as string;
    const flip = (text: string, index: number) =>
      text.slice(0, index) + (text[index] === 'A' ? 'B' : 'A') + text.slice(index + 1);
    for (const tampered of [flip(cookie, 3), flip(cookie, cookie.length - 3), `${cookie}x`]) {
      const forged = new CookieJar();
      forged.cookies.set('sid', tampered);
      expect(await forged.json(`${url}/count`)).toMatchObject({ count: 0 });
    }
    expect(await jar.json(`${url}/count`)).toMatchObject({ count: 1 });
  });

  it('accepts a cookie signed with an old secret during rotation, and not after it', async () => {
    const store = await openStore();
    const before = await startApp(store, { secret: 'old secret' });
    const jar = new CookieJar();
    await jar.json(`${before.url}/increment`, { method: 'POST' });
    const oldCookie = jar.cookies.get('sid') as string;
    const during = await startApp(store, { secret: ['new secret', 'old secret'] });
    expect(await jar.json(`${during.url}/count`)).toMatchObject({ count: 1 });
    const after = await startApp(store, { secret: 'new secret' });
    const stale = new CookieJar();
    stale.cookies.set('sid', oldCookie);
    expect(await stale.json(`${after.url}/count`)).toMatchObject({ count: 0 });
  });

  it('detects tampering with the AES-GCM payload in storage and starts a fresh session', async () => {
    const store = await openStore();
    const { url, errors } = await startApp(store, {
      codec: aesGcmCodec({ keys: [generateAesKey()] }),
    });
    const jar = new CookieJar();
    await jar.json(`${url}/increment`, { method: 'POST' });
    const { id } = await jar.json<{ id: string }>(`${url}/count`);
    const record = await store.get(id);
    if (record === undefined) throw new Error('expected a stored session');
    const tampered = Uint8Array.from(record.data);
    tampered[20] = (tampered[20] as number) ^ 0x01;
    await store.set(id, { data: tampered, expiresAt: record.expiresAt });
    const after = await jar.json<{ id: string; count: number }>(`${url}/count`);
    expect(after).toMatchObject({ count: 0 });
    expect(after.id).not.toBe(id);
    expect(errors.some((error) => isSessionError(error, 'ERR_CORRUPT_RECORD'))).toBe(true);
  });

  it('ends a session after the idle timeout, and an active one after the absolute timeout', async () => {
    const store = await openStore();
    const idle = await startApp(store, { idleTimeoutMs: 300 });
    const jar = new CookieJar();
    await jar.json(`${idle.url}/increment`, { method: 'POST' });
    await sleep(700);
    expect(await jar.json(`${idle.url}/count`)).toMatchObject({ count: 0 });

    const absolute = await startApp(store, {
      idleTimeoutMs: 60_000,
      absoluteTimeoutMs: 600,
      touchAfterMs: 0,
    });
    const busy = new CookieJar();
    await busy.json(`${absolute.url}/increment`, { method: 'POST' });
    let count = 1;
    for (let step = 0; step < 100 && count > 0; step++) {
      await sleep(50);
      count = (await busy.json<{ count: number }>(`${absolute.url}/count`)).count;
    }
    expect(count).toBe(0);
  });
});

describe('@sessile/fastify details', () => {
  async function memoryStore(options = {}) {
    const store = new MemoryStore(options);
    cleanups.push(() => store.close());
    return store;
  }

  it('releases the lock when the client hangs up before the reply', async () => {
    const hang = gate();
    const { url } = await startApp(await memoryStore(), {}, { hang });
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
    const { url, errors } = await startApp(await memoryStore({ maxRecordBytes: 1024 }));
    const jar = new CookieJar();
    await jar.json(`${url}/increment`, { method: 'POST' });
    const response = await jar.fetch(`${url}/big`, { method: 'POST' });
    expect(response.status).toBe(500);
    expect(errors.some((error) => isSessionError(error, 'ERR_RECORD_TOO_LARGE'))).toBe(true);
    expect(await jar.json(`${url}/increment`, { method: 'POST' })).toMatchObject({ count: 2 });
  });

  it('clears the cookie on logout and writes the cookie options it was given', async () => {
    const { url } = await startApp(await memoryStore(), {
      cookie: { name: 'app.sid', secure: true, sameSite: 'strict', maxAgeMs: 3_600_000 },
    });
    const response = await fetch(`${url}/increment`, { method: 'POST' });
    const header = response.headers.getSetCookie()[0] ?? '';
    expect(header).toMatch(/^app\.sid=[^;]+\./);
    for (const attribute of ['Path=/', 'HttpOnly', 'Secure', 'SameSite=Strict', 'Max-Age=3600']) {
      expect(header.split('; ')).toContain(attribute);
    }
    const jar = new CookieJar();
    jar.remember(response);
    const logout = await jar.fetch(`${url}/logout`, { method: 'POST' });
    expect(logout.headers.getSetCookie()[0]).toMatch(/^app\.sid=; .*Max-Age=0/);
  });
});
