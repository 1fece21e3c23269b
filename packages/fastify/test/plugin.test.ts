import { MemoryStore, manual } from '@sessile/core';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { fastifySessile, type SessileFastifyOptions } from '../src/index.js';

// The HTTP scenarios every adapter passes run from conformance.test.ts; these are the plugin's own.
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
