import { runStoreConformance } from '@sessile/conformance';
import type { SessionStore } from '@sessile/core';
import { RedisStore } from '@sessile/redis';
import { createClient } from 'redis';
import { deleteKeys, runPrefix, STANDALONE_URL } from './redis-server.js';

const root = runPrefix('conformance');

let opened = 0;
let latestPrefix = '';

await runStoreConformance({
  name: 'RedisStore',
  // Redis keeps the records after close(): the suite's keys go once it ends.
  teardown: () => deleteKeys(STANDALONE_URL, root),
  open: () => {
    latestPrefix = `${root}${++opened}:`;
    return RedisStore.open({ url: STANDALONE_URL, prefix: latestPrefix });
  },
  reopen: () => RedisStore.open({ url: STANDALONE_URL, prefix: latestPrefix }),
  crossProcess: {
    module: new URL('./child-store.mjs', import.meta.url).pathname,
    location: () => JSON.stringify({ url: STANDALONE_URL, prefix: latestPrefix }),
  },
  // Overwrites the record with bytes that are not a sessile record, keeping its expiry.
  corrupt: async (_store: SessionStore, id: string) => {
    const client = createClient({ url: STANDALONE_URL });
    await client.connect();
    try {
      await client.set(`${latestPrefix}s:{${id}}`, 'not a record', { expiration: 'KEEPTTL' });
    } finally {
      client.destroy();
    }
  },
});
