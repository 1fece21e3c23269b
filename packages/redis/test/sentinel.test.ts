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
const codeOf = (call: Promise<unknown>) =>
  call.then(
    () => 'resolved',
    (error: unknown) => (isSessionError(error) ? error.code : String(error)),
  );
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

/** Resolves once the Sentinel client has seen its primary go (`getMasterNode()` names none). */
async function untilPrimaryGone(client: typeof sentinel): Promise<void> {
  while (client.getMasterNode() !== undefined) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Writes through `store` until one goes through, as an app retrying would. */
async function untilWritten(store: RedisStore, id: string): Promise<void> {
  for (;;) {
    const written = await store
      .set(id, { data: bytes('after'), expiresAt: Date.now() + HOUR_MS })
      .then(
        () => true,
        () => false,
      );
    if (written) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('RedisStore through Redis Sentinel when the primary goes away', () => {
  it('operations fail at once with ERR_STORE_IO while the primary is away, not after commandTimeoutMs, and work again once it returns', async () => {
    const store = await RedisStore.open({
      client: sentinel,
      prefix: `${root}fast:`,
      commandTimeoutMs: 60_000,
    });
    const [id, later] = [newId(), newId()];
    try {
      await store.set(id, { data: bytes('before'), expiresAt: Date.now() + HOUR_MS });
      await server.primary.stop();
      await untilPrimaryGone(sentinel);
      const calls = Promise.all(
        [
          store.get(id),
          store.set(id, { data: bytes('during'), expiresAt: Date.now() + HOUR_MS }),
          store.touch(id, Date.now() + HOUR_MS),
          store.delete(id),
          store.locks.acquire(id, { waitMs: 30_000 }),
        ].map(codeOf),
      );
      // Far shorter than commandTimeoutMs: calls that waited for it would still be pending.
      const outcome = await Promise.race([
        calls,
        new Promise((resolve) => setTimeout(() => resolve('still pending'), 10_000)),
      ]);
      expect(outcome).toEqual(Array.from({ length: 5 }, () => 'ERR_STORE_IO'));
      await server.primary.start();
      await untilWritten(store, later);
      expect(await store.get(later)).toBeDefined();
    } finally {
      await store.close();
    }
  }, 30_000);

  it('recovers when the primary returns, though its client does not reconnect by itself and the store sent nothing meanwhile', async () => {
    // node-redis finds the primary again only when a command meets it away, or Sentinel
    // announces a change, which an outage shorter than down-after-milliseconds never makes.
    const own = createSentinel({
      name: server.name,
      sentinelRootNodes: server.sentinelRootNodes,
      nodeClientOptions: { socket: { reconnectStrategy: false } },
    });
    own.on('error', () => {});
    await own.connect();
    const store = await RedisStore.open({
      client: own,
      prefix: `${root}no-reconnect:`,
      // Its close waits this long to unsubscribe: node-redis destroyed the subscribing client.
      commandTimeoutMs: 3_000,
    });
    try {
      await server.primary.stop();
      await untilPrimaryGone(own);
      expect(await codeOf(store.get(newId()))).toBe('ERR_STORE_IO');
      await server.primary.start();
      const id = newId();
      await untilWritten(store, id);
      expect(await store.get(id)).toBeDefined();
    } finally {
      await store.close();
      // node-redis's own close rejects for the client it destroyed when it could not reconnect.
      await own.close().catch(() => {});
    }
  }, 30_000);

  it('a write that failed while the primary was away is never applied when it returns', async () => {
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
