import { MemoryStore, manual } from '@sessile/core';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { sleep } from '../../express/test/helpers.js';
import {
  describeSessionHttpScenarios,
  type ScenarioData,
  type StartScenarioApp,
} from '../../express/test/http-scenarios.js';
import { fastifySessile, type SessileFastifyOptions } from '../src/index.js';

/** The scenario app on fastify with the fastifySessile plugin. */
const startFastifyApp: StartScenarioApp = async (store, options, gates) => {
  const app = Fastify({ forceCloseConnections: true });
  await app.register(fastifySessile, { store, ...options } as SessileFastifyOptions);
  const data = (request: { session: { data: unknown } }) => request.session.data as ScenarioData;
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
  return { url, cookie: app.sessile.cookie, close: () => app.close() };
};

describeSessionHttpScenarios('@sessile/fastify', startFastifyApp, {
  commitFailureBody: JSON.stringify({
    statusCode: 500,
    error: 'Internal Server Error',
    message: 'The session could not be saved',
  }),
});

describe('@sessile/fastify options', () => {
  const SECRET = 'a secret of 32 characters or more for these tests';
  const stores: MemoryStore[] = [];
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
  });
  async function register(options: Record<string, unknown>) {
    const store = new MemoryStore();
    stores.push(store);
    const app = Fastify();
    app.register(fastifySessile, { store, cleanup: manual(), ...options } as SessileFastifyOptions);
    try {
      await app.ready();
    } finally {
      await app.close();
    }
  }

  it('names its own options: secret, cookie.sameSite, and the intended name of an unknown one', async () => {
    await expect(register({})).rejects.toThrow(
      /^@sessile\/fastify: secret must be a string of at least 32 characters/,
    );
    await expect(register({ secret: 'a secret too short' })).rejects.toThrow(
      /^@sessile\/fastify: secret must be at least 32 characters, got 18/,
    );
    await expect(register({ secret: SECRET, cookie: { sameSite: 'none' } })).rejects.toThrow(
      "@sessile/fastify: cookie.sameSite 'none' needs cookie.secure: true",
    );
    await expect(register({ secret: SECRET, cookie: { maxAge: 60_000 } })).rejects.toThrow(
      "@sessile/fastify cookie: unknown option 'maxAge'; did you mean 'maxAgeMs'?",
    );
    await expect(register({ secret: SECRET, saveUninitialized: false })).rejects.toThrow(
      "@sessile/fastify: unknown option 'saveUninitialized'",
    );
  });

  it("accepts Fastify's own register options", async () => {
    await expect(register({ secret: SECRET, prefix: '/app', logLevel: 'warn' })).resolves.toBe(
      undefined,
    );
  });
});
