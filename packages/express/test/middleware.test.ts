import { createServer, type Server } from 'node:http';
import { MemoryStore, manual, SessionManager } from '@sessile/core';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { type SessileOptions, type SessileRequest, sessile } from '../src/index.js';
import { CookieJar, closeServer, listen, sleep } from './helpers.js';
import {
  describeSessionHttpScenarios,
  type ScenarioData,
  type StartScenarioApp,
} from './http-scenarios.js';

/** The scenario app on express 5 with the sessile() middleware. */
const startExpressApp: StartScenarioApp = async (store, options, gates) => {
  const sessions = sessile<ScenarioData>({ store, ...options } as SessileOptions<ScenarioData>);
  const app = express();
  app.use(express.json());
  app.use(sessions);
  const session = (req: express.Request) =>
    (req as unknown as SessileRequest<ScenarioData>).session;
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
  return {
    url,
    cookie: sessions.cookie,
    async close() {
      await closeServer(server);
      await sessions.close();
    },
  };
};

describeSessionHttpScenarios('sessile() middleware', startExpressApp, {
  commitFailureBody: 'Internal Server Error',
});

describe('sessile() middleware without express', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('works on a plain node:http server through handle()', async () => {
    const store = new MemoryStore();
    cleanups.push(() => store.close());
    const sessions = sessile<ScenarioData>({
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
