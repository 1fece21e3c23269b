import { createServer, type Server } from 'node:http';
import {
  aesGcmCodec,
  generateAesKey,
  generateSessionId,
  isSessionError,
  MemoryStore,
  manual,
  type SessionStore,
  type SweepRun,
  sweepByChance,
} from '@sessile/core';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { type SessileOptions, type SessileRequest, sessile } from '../src/index.js';
import { CookieJar, closeServer, listen, sleep, storeFixtures } from './helpers.js';

type Data = { count?: number; user?: string; blob?: string };

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A gate a handler waits on, so a test can hold a request in flight. */
function gate() {
  let open!: () => void;
  let entered!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  const reached = new Promise<void>((resolve) => (entered = resolve));
  return { open, opened, entered, reached };
}

async function startApp(
  store: SessionStore,
  options: Partial<SessileOptions<Data>> = {},
  gates: { late?: ReturnType<typeof gate>; hang?: ReturnType<typeof gate> } = {},
) {
  const errors: unknown[] = [];
  const sessions = sessile<Data>({
    store,
    secret: 'test secret one',
    cleanup: manual(),
    lock: { waitMs: 60_000 },
    onError: (error) => errors.push(error),
    ...options,
  } as SessileOptions<Data>);
  const app = express();
  app.use(express.json());
  app.use(sessions);
  const session = (req: express.Request) => (req as unknown as SessileRequest<Data>).session;
  app.get('/count', (req, res) => {
    res.json({
      count: session(req).data.count ?? 0,
      user: session(req).data.user ?? null,
      id: session(req).id,
    });
  });
  app.post('/increment', async (req, res) => {
    const current = session(req).data.count ?? 0;
    // Give a parallel request every chance to interleave with this read-modify-write.
    await sleep(1);
    session(req).data.count = current + 1;
    res.json({ count: current + 1 });
  });
  app.post('/login', async (req, res) => {
    await session(req).regenerate();
    session(req).data.user = String(req.body?.user);
    res.json({ id: session(req).id });
  });
  app.post('/logout', async (req, res) => {
    await session(req).invalidate();
    res.json({ ok: true });
  });
  app.post('/late-write', async (req, res) => {
    gates.late?.entered();
    await gates.late?.opened;
    session(req).data.count = 999;
    session(req).data.user = 'resurrected';
    res.json({ ok: true });
  });
  app.get('/hang', async () => {
    gates.hang?.entered();
    // Never answers: only the client hanging up ends this request.
  });
  app.post('/big', (req, res) => {
    session(req).data.blob = 'x'.repeat(8000);
    res.json({ ok: true });
  });
  const server = createServer(app);
  const url = await listen(server);
  cleanups.push(async () => {
    gates.hang?.open();
    await closeServer(server);
    await sessions.close();
  });
  return { url, sessions, errors, server };
}

describe.each(storeFixtures)('sessile() middleware over HTTP with $name', (fixture) => {
  async function openStore() {
    const opened = await fixture.open();
    cleanups.push(opened.cleanup);
    return opened.store;
  }

  it('keeps a counter across requests, setting the cookie only once it is stored', async () => {
    const { url } = await startApp(await openStore());
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

  it('never brings a session back when a request from before the logout finishes after it (locking on)', async () => {
    const late = gate();
    const { url } = await startApp(await openStore(), {}, { late });
    const jar = new CookieJar();
    await jar.json(`${url}/login`, {
      method: 'POST',
      body: '{"user":"alice"}',
      headers: { 'content-type': 'application/json' },
    });
    const lateRequest = jar.clone().json(`${url}/late-write`, { method: 'POST' });
    await late.reached;
    const logout = jar.clone().json(`${url}/logout`, { method: 'POST' });
    late.open();
    await Promise.all([lateRequest, logout]);
    const stale = new CookieJar();
    stale.cookies.set('sid', jar.cookies.get('sid') as string);
    expect(await stale.json(`${url}/count`)).toMatchObject({ user: null, count: 0 });
  });

  it('never brings a session back when a late save runs after the logout (locking off)', async () => {
    const late = gate();
    const store = await openStore();
    const { url } = await startApp(store, { lock: false }, { late });
    const jar = new CookieJar();
    await jar.json(`${url}/login`, {
      method: 'POST',
      body: '{"user":"alice"}',
      headers: { 'content-type': 'application/json' },
    });
    const id = (await jar.json<{ id: string }>(`${url}/count`)).id;
    const lateRequest = jar.clone().json(`${url}/late-write`, { method: 'POST' });
    await late.reached;
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
    const { url, sessions } = await startApp(store);
    const planted = generateSessionId();
    const attacker = new CookieJar();
    attacker.cookies.set('sid', encodeURIComponent(sessions.cookie.sign(planted)));
    expect(await attacker.json(`${url}/count`)).not.toMatchObject({ id: planted });
    await attacker.json(`${url}/increment`, { method: 'POST' });
    expect(
      sessions.cookie.unsign(decodeURIComponent(attacker.cookies.get('sid') as string)),
    ).not.toBe(planted);
    expect(await store.get(planted)).toBeUndefined();

    // An issued id planted in a victim's browser stops working when the victim logs in.
    const issued = attacker.cookies.get('sid') as string;
    const victim = new CookieJar();
    victim.cookies.set('sid', issued);
    await victim.json(`${url}/login`, {
      method: 'POST',
      body: '{"user":"victim"}',
      headers: { 'content-type': 'application/json' },
    });
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
    const before = await startApp(store, { secret: 'old secret' });
    const jar = new CookieJar();
    await jar.json(`${before.url}/increment`, { method: 'POST' });
    const oldCookie = jar.cookies.get('sid') as string;

    const during = await startApp(store, { secret: ['new secret', 'old secret'] });
    expect(await jar.json(`${during.url}/count`)).toMatchObject({ count: 1 });
    expect(during.sessions.cookie.sign('x')).not.toBe(before.sessions.cookie.sign('x'));

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
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] as number) ^ 0x01;
    await store.set(id, { data: tampered, expiresAt: record.expiresAt });
    const after = await jar.json<{ id: string; count: number }>(`${url}/count`);
    expect(after.count).toBe(0);
    expect(after.id).not.toBe(id);
    expect(errors.some((error) => isSessionError(error, 'ERR_CORRUPT_RECORD'))).toBe(true);
  });

  it('ends a session after the idle timeout', async () => {
    const { url } = await startApp(await openStore(), { idleTimeoutMs: 300 });
    const jar = new CookieJar();
    await jar.json(`${url}/increment`, { method: 'POST' });
    await sleep(700);
    expect(await jar.json(`${url}/count`)).toMatchObject({ count: 0 });
  });

  it('ends an active session after the absolute timeout', async () => {
    const { url } = await startApp(await openStore(), {
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

describe('sessile() middleware details', () => {
  async function memoryStore(options = {}) {
    const store = new MemoryStore(options);
    cleanups.push(() => store.close());
    return store;
  }

  it('releases the lock when the client hangs up before the response', async () => {
    const hang = gate();
    const { url } = await startApp(await memoryStore(), { lock: { waitMs: 30_000 } }, { hang });
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
    const { url, errors } = await startApp(store);
    const jar = new CookieJar();
    await jar.json(`${url}/increment`, { method: 'POST' });
    const response = await jar.fetch(`${url}/big`, { method: 'POST' });
    expect(response.status).toBe(500);
    expect(await response.text()).toBe('Internal Server Error');
    expect(errors.some((error) => isSessionError(error, 'ERR_RECORD_TOO_LARGE'))).toBe(true);
    expect(await jar.json(`${url}/increment`, { method: 'POST' })).toMatchObject({ count: 2 });
  });

  it('clears the cookie on logout', async () => {
    const { url } = await startApp(await memoryStore());
    const jar = new CookieJar();
    await jar.json(`${url}/increment`, { method: 'POST' });
    const response = await jar.fetch(`${url}/logout`, { method: 'POST' });
    expect(response.headers.getSetCookie()[0]).toMatch(/^sid=; .*Max-Age=0/);
    expect(jar.cookies.has('sid')).toBe(false);
  });

  it('writes the cookie options it was given', async () => {
    const { url } = await startApp(await memoryStore(), {
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
  });

  it('works on a plain node:http server through handle()', async () => {
    const store = await memoryStore();
    const sessions = sessile<Data>({ store, secret: 'plain', cleanup: manual() });
    const server: Server = createServer(async (req, res) => {
      try {
        const session = await sessions.handle(req, res);
        session.data.count = (session.data.count ?? 0) + 1;
        res.end(String(session.data.count));
      } catch {
        res.statusCode = 500;
        res.end();
      }
    });
    const url = await listen(server);
    cleanups.push(async () => {
      await closeServer(server);
      await sessions.close();
    });
    const jar = new CookieJar();
    expect(await (await jar.fetch(url)).text()).toBe('1');
    expect(await (await jar.fetch(url)).text()).toBe('2');
  });

  it('triggers sweepByChance after each response, off the request path', async () => {
    const store = await memoryStore();
    const runs: SweepRun[] = [];
    const { url } = await startApp(store, {
      cleanup: sweepByChance(1),
      onSweep: (run) => runs.push(run),
    });
    await store.set(generateSessionId(), { data: new Uint8Array(2), expiresAt: Date.now() + 20 });
    await sleep(50);
    expect(runs).toHaveLength(0);
    await fetch(`${url}/count`);
    for (let i = 0; i < 500 && runs.length === 0; i++) await sleep(10);
    expect(runs[0]).toMatchObject({ outcome: 'swept', removed: 1 });
  });
});
