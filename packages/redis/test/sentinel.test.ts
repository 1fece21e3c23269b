import { runStoreConformance } from '@sessile/conformance';
import type { SessionStore } from '@sessile/core';
import { RedisStore } from '@sessile/redis';
import { createSentinel } from 'redis';
import { afterAll } from 'vitest';
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
