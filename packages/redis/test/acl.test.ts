import { readFileSync } from 'node:fs';
import { runStoreConformance } from '@sessile/conformance';
import type { SessionStore } from '@sessile/core';
import { RedisStore } from '@sessile/redis';
import { createClient } from 'redis';
import { OwnRedis } from './redis-server.js';

// The whole suite, as a user with exactly the ACL rules the README gives: a store that needs a
// command, key or channel the README leaves out fails here.
const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const rules = /^ACL SETUSER myapp (.+)$/m.exec(readme)?.[1];
if (rules === undefined) throw new Error("README.md has no 'ACL SETUSER myapp' line");

const own = new OwnRedis(7182);
await own.start();
const admin = createClient({ url: own.url });
admin.on('error', () => {});
await admin.connect();
await admin.sendCommand(['ACL', 'SETUSER', 'myapp', ...rules.split(' ')]);
// The user's password, as the README's rules set it.
const url = `redis://myapp:secret@127.0.0.1:${own.port}`;

let opened = 0;
let latestPrefix = '';

await runStoreConformance({
  name: 'RedisStore as an ACL user limited to its prefix',
  teardown: async () => {
    admin.destroy();
    await own.remove();
  },
  open: () => {
    latestPrefix = `myapp:${++opened}:`;
    return RedisStore.open({ url, prefix: latestPrefix });
  },
  reopen: () => RedisStore.open({ url, prefix: latestPrefix }),
  crossProcess: {
    module: new URL('./child-store.mjs', import.meta.url).pathname,
    location: () => JSON.stringify({ url, prefix: latestPrefix }),
  },
  // Overwrites the record with bytes that are not a sessile record, keeping its expiry.
  corrupt: async (_store: SessionStore, id: string) => {
    await admin.set(`${latestPrefix}s:{${id}}`, 'not a record', { expiration: 'KEEPTTL' });
  },
});
