import { RedisStore } from '@sessile/redis';
import { createClient, createSentinel } from 'redis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { OwnSentinel, runPrefix } from './redis-server.js';

// A primary, its replica and a Sentinel that knows both, from the machine's redis-server.
const server = new OwnSentinel(7131, 7133, 7132);
beforeAll(() => server.start(), 60_000);
afterAll(() => server.remove());

const HOUR_MS = 3_600_000;
const newId = () => Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString('base64url');
const bytes = (text: string) => new TextEncoder().encode(text);

it("reads from the primary, never from a replica the app's client reads from, so every read follows the writes before it", async () => {
  const replica = server.replica as NonNullable<typeof server.replica>;
  // The app reads its own keys from replicas; a session must not be read behind its writes.
  const sentinel = createSentinel({
    name: server.name,
    sentinelRootNodes: server.sentinelRootNodes,
    replicaPoolSize: 1,
  });
  sentinel.on('error', () => {});
  await sentinel.connect();
  const prefix = runPrefix('replicas');
  const store = await RedisStore.open({ client: sentinel, prefix });
  const monitor = createClient({ url: replica.url });
  const marker = createClient({ url: replica.url });
  await Promise.all([monitor.connect(), marker.connect()]);
  const reads: string[] = [];
  let markerSeen: () => void = () => {};
  const seen = new Promise<void>((resolve) => (markerSeen = resolve));
  try {
    // Reads are never replicated: any the replica runs under the prefix came from a client.
    await monitor.monitor((line) => {
      if (line.includes(`${prefix}end`)) markerSeen();
      else if (line.includes(prefix) && /"(GET|EXISTS|STRLEN|GETRANGE)"/i.test(line)) {
        reads.push(line);
      }
    });
    const id = newId();
    const record = { data: bytes('signed in'), expiresAt: Date.now() + HOUR_MS, owner: 'ada' };
    expect(await store.set(id, record, { only: 'absent' })).toBe(true);
    expect((await store.get(id))?.owner).toBe('ada');
    expect(await store.lend(id, (read) => read.owner)).toBe('ada');
    expect((await store.ownedBy('ada')).map((session) => session.id)).toEqual([id]);
    expect(await store.set(newId(), { data: bytes('x'), expiresAt: 0 }, { only: 'absent' })).toBe(
      true,
    );
    expect(await store.delete(id)).toBe(true);
    expect(await store.get(id)).toBeUndefined();
    // MONITOR reports commands in the order the replica ran them: after this one, all are in.
    await marker.get(`${prefix}end`);
    await seen;
    expect(reads).toEqual([]);
  } finally {
    await store.clear();
    await store.close();
    await monitor.close();
    await marker.close();
    await sentinel.close();
  }
});
