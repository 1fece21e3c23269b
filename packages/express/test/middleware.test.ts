import { createServer, type Server } from 'node:http';
import { CookieJar } from '@sessile/conformance/http';
import { MemoryStore, manual, SessionManager } from '@sessile/core';
import { afterEach, describe, expect, it } from 'vitest';
import { type SessileOptions, sessile } from '../src/index.js';
import { closeServer, listen } from './helpers.js';

// The HTTP scenarios every adapter passes run from conformance.test.ts; these are sessile()'s own.
describe('sessile() middleware without express', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('works on a plain node:http server through handle()', async () => {
    const store = new MemoryStore();
    cleanups.push(() => store.close());
    const sessions = sessile<{ count?: number }>({
      store,
      secret: 'a node:http server signs with this secret',
      cleanup: manual(),
    });
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
});

describe('sessile() onCommitError', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('a handler that throws reaches onError with the commit error, and the response is still a 500', async () => {
    const store = new MemoryStore({ maxRecordBytes: 200 });
    cleanups.push(() => store.close());
    const reported: unknown[] = [];
    const sessions = sessile<{ big?: string }>({
      store,
      secret: 'a secret of 32 characters or more for these tests',
      cleanup: manual(),
      onError: (error) => reported.push(error),
      onCommitError() {
        throw new Error('the logger is down');
      },
    });
    const server: Server = createServer(async (req, res) => {
      const session = await sessions.handle(req, res);
      // Too large for the store: the commit fails.
      session.data.big = 'x'.repeat(1000);
      res.end('saved?');
    });
    const url = await listen(server);
    cleanups.push(async () => {
      await closeServer(server);
      await sessions.close();
    });
    const response = await fetch(url);
    expect(response.status).toBe(500);
    await response.text();
    expect(
      reported.map((error) => (error as { code?: string }).code ?? (error as Error).message),
    ).toEqual(['ERR_RECORD_TOO_LARGE', 'the logger is down']);
  });
});

describe('sessile() options', () => {
  const SECRET = 'a secret of 32 characters or more for these tests';
  const stores: MemoryStore[] = [];
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
  });
  function refusal(options: Record<string, unknown>): string {
    const store = new MemoryStore();
    stores.push(store);
    try {
      const sessions = sessile({ store, cleanup: manual(), ...options } as SessileOptions);
      void sessions.close();
    } catch (error) {
      expect(error).toBeInstanceOf(TypeError);
      return (error as Error).message;
    }
    throw new Error('expected sessile() to refuse the options');
  }

  it('names its own option, secret, when the secret is missing or too short', () => {
    expect(refusal({})).toMatch(/^sessile\(\): secret must be a string of at least 32 characters/);
    expect(refusal({ secret: 'keyboard cat' })).toMatch(
      /^sessile\(\): secret must be at least 32 characters, got 12/,
    );
    expect(refusal({ secret: [SECRET, 'old'] })).toMatch(/^sessile\(\): secret\[1\] must be/);
  });

  it("refuses sameSite 'none' without secure, which browsers would reject", () => {
    expect(refusal({ secret: SECRET, cookie: { sameSite: 'none' } })).toMatch(
      /^sessile\(\): cookie\.sameSite 'none' needs cookie\.secure: true/,
    );
  });

  it("refuses express-session's cookie.maxAge, pointing to cookie.maxAgeMs, and unknown options", () => {
    expect(refusal({ secret: SECRET, cookie: { maxAge: 60_000 } })).toBe(
      "sessile() cookie: unknown option 'maxAge'; did you mean 'maxAgeMs'?",
    );
    expect(refusal({ secret: SECRET, idleTimeout: 60_000 })).toBe(
      "sessile(): unknown option 'idleTimeout'; did you mean 'idleTimeoutMs'?",
    );
    expect(refusal({ secret: SECRET, resave: false })).toBe("sessile(): unknown option 'resave'");
    expect(refusal({ secret: SECRET, cookie: { maxAgeMs: '1h' } })).toMatch(
      /^sessile\(\): cookie\.maxAgeMs must be a number of milliseconds/,
    );
  });

  it('refuses manager options beside a manager, where they would be ignored', async () => {
    const store = new MemoryStore();
    stores.push(store);
    const manager = new SessionManager({ store, cleanup: manual() });
    expect(() =>
      sessile({ manager, secret: SECRET, idleTimeoutMs: 60_000 } as SessileOptions),
    ).toThrow(
      "sessile(): 'idleTimeoutMs' is an option of the SessionManager passed as 'manager'; set it there",
    );
    await manager.close();
  });

  it('accepts a 30-day cookie, longer than any timer Node can arm', async () => {
    const store = new MemoryStore();
    stores.push(store);
    const sessions = sessile({
      store,
      secret: SECRET,
      cleanup: manual(),
      cookie: { maxAgeMs: 30 * 24 * 60 * 60_000 },
    });
    expect(sessions.cookie.serialize('value')).toContain('Max-Age=2592000');
    await sessions.close();
  });
});
