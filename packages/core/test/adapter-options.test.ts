import { describe, expect, it } from 'vitest';
import { MemoryStore, manual, SessionManager } from '../src/index.js';
import { openSessionAdapter } from '../src/store.js';

const SECRET = 'a secret of 32 characters or more for these tests';

/** The `TypeError` message `openSessionAdapter` throws for `options`, as adapter `where`. */
function refusal(options: Record<string, unknown>, where = 'sessile()'): string {
  const store = new MemoryStore();
  try {
    const adapter = openSessionAdapter(
      { store, secret: SECRET, cleanup: manual(), ...options },
      where,
    );
    void adapter.manager.close();
  } catch (error) {
    expect(error).toBeInstanceOf(TypeError);
    return (error as Error).message;
  } finally {
    void store.close();
  }
  throw new Error(`expected ${JSON.stringify(options)} to be refused`);
}

describe('openSessionAdapter options', () => {
  it('says to call the factory when app.use(sessile) hands it a request (req, ctx or c) as options', () => {
    const requests = {
      'sessile()': { headers: {}, method: 'GET', _events: {} },
      '@sessile/koa': { req: {}, res: {}, request: {}, response: {} },
      '@sessile/hono': { req: {}, env: {}, finalized: false },
    };
    for (const [where, request] of Object.entries(requests)) {
      expect(() => openSessionAdapter(request, where)).toThrow(
        `${where} was called with a request, not options: call it once, as app.use(sessile({ store, secret })), not app.use(sessile)`,
      );
    }
  });

  it("points a top-level maxAge (koa-session's) to cookie.maxAgeMs in every adapter", () => {
    for (const where of ['sessile()', '@sessile/koa', '@sessile/hono', '@sessile/fastify']) {
      expect(refusal({ maxAge: 86_400_000 }, where)).toBe(
        `${where}: unknown option 'maxAge'; did you mean 'cookie.maxAgeMs'?`,
      );
    }
  });

  it('points every cookie attribute given beside secret to its place in cookie', () => {
    expect(refusal({ maxAgeMs: 1000 })).toBe(
      "sessile(): unknown option 'maxAgeMs'; did you mean 'cookie.maxAgeMs'?",
    );
    expect(refusal({ secure: true })).toBe(
      "sessile(): unknown option 'secure'; did you mean 'cookie.secure'?",
    );
    expect(refusal({ httpOnly: false })).toBe(
      "sessile(): unknown option 'httpOnly'; did you mean 'cookie.httpOnly'?",
    );
  });

  it("points koa-session's key and @fastify/session's cookieName to cookie.name", () => {
    expect(refusal({ key: 'koa.sess' }, '@sessile/koa')).toBe(
      "@sessile/koa: unknown option 'key'; did you mean 'cookie.name'?",
    );
    expect(refusal({ cookieName: 'sid' }, '@sessile/fastify')).toBe(
      "@sessile/fastify: unknown option 'cookieName'; did you mean 'cookie.name'?",
    );
  });

  it("starts the manager's option errors with the adapter's name, as its own", () => {
    expect(refusal({ lock: { waitMS: 10 } }, '@sessile/koa')).toBe(
      "@sessile/koa: lock: unknown option 'waitMS'; did you mean 'waitMs'?",
    );
    expect(refusal({ store: {} })).toBe('sessile() needs { store }: a SessionStore, got an object');
    expect(refusal({ idleTimeoutMs: -1 }, '@sessile/hono')).toMatch(
      /^@sessile\/hono: idleTimeoutMs must be a number of milliseconds/,
    );
    expect(refusal({ onLimit: 'refuse' }, '@sessile/fastify')).toBe(
      '@sessile/fastify: onLimit needs maxSessionsPerOwner',
    );
  });

  it('takes cookie.partitioned beside cookie.secure, and points a top-level partitioned to it', () => {
    expect(refusal({ cookie: { partitioned: true } })).toBe(
      "sessile(): cookie.partitioned needs cookie.secure: true or 'auto'; browsers reject a Partitioned cookie without Secure",
    );
    expect(refusal({ partitioned: true }, '@sessile/koa')).toBe(
      "@sessile/koa: unknown option 'partitioned'; did you mean 'cookie.partitioned'?",
    );
    const adapter = openSessionAdapter(
      {
        store: new MemoryStore(),
        secret: SECRET,
        cleanup: manual(),
        cookie: { secure: true, sameSite: 'none', partitioned: true },
      },
      'sessile()',
    );
    expect(adapter.cookie.serialize('a'.repeat(32)).split('; ')).toContain('Partitioned');
    void adapter.manager.close();
  });

  it('names every unknown option, each with its hint, not only the first', () => {
    expect(refusal({ foo: 1, bar: 2 })).toBe("sessile(): unknown options 'foo' and 'bar'");
    expect(refusal({ maxAge: 1000, secrett: 'x', foo: 1 })).toBe(
      "sessile(): unknown options 'maxAge' (did you mean 'cookie.maxAgeMs'?), 'secrett' (did you mean 'secret'?) and 'foo'",
    );
  });

  it('refuses a cookie.maxAgeMs no longer than touchAfterMs, naming both: an active user would lose the cookie', () => {
    // The default touchAfterMs is 60 s: requests every 400 ms never resent a 1 s cookie.
    expect(refusal({ cookie: { maxAgeMs: 1000 } })).toBe(
      "sessile(): touchAfterMs must be less than cookie.maxAgeMs (1000), got 60000 (the default: idleTimeoutMs / 10, at most 60000): the cookie is resent only when its session is saved or touched, so an active user's browser would drop it",
    );
    expect(refusal({ cookie: { maxAgeMs: 5000 }, touchAfterMs: 5000 }, '@sessile/koa')).toMatch(
      /^@sessile\/koa: touchAfterMs must be less than cookie\.maxAgeMs \(5000\), got 5000:/,
    );
    expect(refusal({ cookie: { maxAgeMs: 3000 }, idleTimeoutMs: 60_000 })).toMatch(
      /cookie\.maxAgeMs \(3000\), got 6000 \(the default/,
    );
    const store = new MemoryStore();
    const manager = new SessionManager({ store, cleanup: manual() });
    expect(() =>
      openSessionAdapter({ manager, secret: SECRET, cookie: { maxAgeMs: 60_000 } }, 'sessile()'),
    ).toThrow(
      "sessile(): touchAfterMs must be less than cookie.maxAgeMs (60000), got 60000 (the manager's)",
    );
    void manager.close();
    void store.close();
  });

  it('takes a cookie.maxAgeMs longer than touchAfterMs, and a browser-session cookie with any', async () => {
    for (const options of [
      { cookie: { maxAgeMs: 1000 }, touchAfterMs: 999 },
      { cookie: { maxAgeMs: 60_001 } },
      { touchAfterMs: 10 * 60_000 },
    ]) {
      const store = new MemoryStore();
      const adapter = openSessionAdapter(
        { store, secret: SECRET, cleanup: manual(), ...options },
        'sessile()',
      );
      await adapter.manager.close();
      await store.close();
    }
  });
});
