import { runStoreConformance } from '@sessile/conformance';
import { isSessionError, type SessionStore } from '@sessile/core';
import { RedisStore } from '@sessile/redis';
import { createSentinel } from 'redis';
import { afterAll, describe, expect, it } from 'vitest';
import { OwnSentinel, runPrefix } from './redis-server.js';

// A primary and a Sentinel of this file's own, from the machine's redis-server on loopback ports.
const server = new OwnSentinel(7121, 7122);
await server.start();
const sentinel = createSentinel({ name: server.name, sentinelRootNodes: server.sentinelRootNodes });
sentinel.on('error', () => {});
await sentinel.connect();
afterAll(async () => {
  await sentinel.close();
  await server.remove();
});

const root = runPrefix('sentinel');
const HOUR_MS = 3_600_000;
const newId = () => Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString('base64url');
const bytes = (text: string) => new TextEncoder().encode(text);
let opened = 0;
let latestPrefix = '';

await runStoreConformance({
  name: 'RedisStore through Redis Sentinel',
  open: () => {
    latestPrefix = `${root}${++opened}:`;
    return RedisStore.open({ client: sentinel, prefix: latestPrefix });
  },
  reopen: () => RedisStore.open({ client: sentinel, prefix: latestPrefix }),
  crossProcess: {
    module: new URL('./child-store-sentinel.mjs', import.meta.url).pathname,
    location: () =>
      JSON.stringify({
        name: server.name,
        sentinelRootNodes: server.sentinelRootNodes,
        prefix: latestPrefix,
      }),
  },
  corrupt: async (_store: SessionStore, id: string) => {
    await sentinel.set(`${latestPrefix}s:{${id}}`, 'not a record', { expiration: 'KEEPTTL' });
  },
});

describe('RedisStore through Redis Sentinel when the primary goes away', () => {
  it('a write that timed out while the primary was away is dropped, never applied when it returns', async () => {
    const store = await RedisStore.open({
      client: sentinel,
      prefix: `${root}outage:`,
      commandTimeoutMs: 500,
    });
    const [lost, later] = [newId(), newId()];
    try {
      await server.primary.stop();
      const failed = await store
        .set(lost, { data: bytes('reported failed'), expiresAt: Date.now() + HOUR_MS })
        .catch((error: unknown) => error);
      expect(isSessionError(failed, 'ERR_STORE_IO'), String(failed)).toBe(true);
      await server.primary.start();
      // Once a later write goes through, any earlier one still waiting would have gone first.
      for (;;) {
        const written = await store
          .set(later, { data: bytes('after'), expiresAt: Date.now() + HOUR_MS })
          .then(
            () => true,
            () => false,
          );
        if (written) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(await store.get(lost)).toBeUndefined();
      expect(await store.get(later)).toBeDefined();
    } finally {
      await store.close();
    }
  }, 30_000);
});
