import { runStoreConformance } from '@sessile/conformance';
import type { SessionStore } from '@sessile/core';
import { RedisStore } from '@sessile/redis';
import { createCluster } from 'redis';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { OwnCluster, runPrefix } from './redis-server.js';

// A real 3-master cluster of the machine's redis-server on loopback ports, for this file only.
const server = new OwnCluster([7101, 7102, 7103]);
await server.start();
const cluster = createCluster({ rootNodes: server.rootNodes });
cluster.on('error', () => {});
await cluster.connect();
afterAll(async () => {
  await cluster.close();
  await server.remove();
});

const root = runPrefix('cluster');
let opened = 0;
let latestPrefix = '';
const newPrefix = () => {
  latestPrefix = `${root}${++opened}:`;
  return latestPrefix;
};

await runStoreConformance({
  name: 'RedisStore on Redis Cluster',
  open: () => RedisStore.open({ client: cluster, prefix: newPrefix() }),
  reopen: () => RedisStore.open({ client: cluster, prefix: latestPrefix }),
  crossProcess: {
    module: new URL('./child-store-cluster.mjs', import.meta.url).pathname,
    location: () => JSON.stringify({ rootNodes: server.rootNodes, prefix: latestPrefix }),
  },
  corrupt: async (_store: SessionStore, id: string) => {
    await cluster.set(`${latestPrefix}s:{${id}}`, 'not a record', { expiration: 'KEEPTTL' });
  },
});

const HOUR_MS = 3_600_000;
const newId = () => Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString('base64url');
const bytes = (text: string) => new TextEncoder().encode(text);

describe('RedisStore on Redis Cluster: keys and slots', () => {
  it('spreads sessions over every master, and count, ids and clear reach them all', async () => {
    const store = await RedisStore.open({ client: cluster, prefix: newPrefix() });
    try {
      const ids = Array.from({ length: 60 }, newId);
      for (const id of ids)
        await store.set(id, { data: bytes(id), expiresAt: Date.now() + HOUR_MS });
      const perMaster = await Promise.all(
        cluster.masters.map(async (master) => {
          const node = await cluster.nodeClient(master);
          let keys = 0;
          for await (const page of node.scanIterator({ MATCH: `${latestPrefix}*`, COUNT: 1000 })) {
            keys += page.length;
          }
          return keys;
        }),
      );
      expect(perMaster).toHaveLength(3);
      for (const keys of perMaster) expect(keys).toBeGreaterThan(0);
      expect(await store.count()).toBe(60);
      const listed: string[] = [];
      for await (const id of store.ids()) listed.push(id);
      expect(listed.sort()).toEqual([...ids].sort());
      await store.clear();
      expect(await store.count()).toBe(0);
    } finally {
      await store.close();
    }
  });

  it('sets the exact expiry on the record key, and a session and its lock share a slot', async () => {
    const store = await RedisStore.open({ client: cluster, prefix: newPrefix() });
    try {
      const id = newId();
      const expiresAt = Date.now() + HOUR_MS;
      const lock = await store.locks.acquire(id);
      await store.set(id, { data: bytes('x'), expiresAt }, { lock });
      const recordKey = `${latestPrefix}s:{${id}}`;
      const lockKey = `${latestPrefix}l:{${id}}`;
      expect(await cluster.pExpireTime(recordKey)).toBe(expiresAt - 1);
      const slot = async (key: string) =>
        Number(await cluster.sendCommand(key, true, ['CLUSTER', 'KEYSLOT', key]));
      expect(await slot(recordKey)).toBe(await slot(lockKey));
      await lock.release();
      await store.touch(id, expiresAt + HOUR_MS);
      expect(await cluster.pExpireTime(recordKey)).toBe(expiresAt + HOUR_MS - 1);
      expect((await store.get(id))?.expiresAt).toBe(expiresAt + HOUR_MS);
    } finally {
      await store.clear();
      await store.close();
    }
  });

  it("lists an owner's sessions from every master, though the owner's index has a slot of its own", async () => {
    const store = await RedisStore.open({ client: cluster, prefix: newPrefix() });
    try {
      const ids = Array.from({ length: 30 }, newId);
      for (const id of ids) {
        await store.set(id, { data: bytes(id), expiresAt: Date.now() + HOUR_MS, owner: 'ada' });
      }
      const slot = async (key: string) =>
        Number(await cluster.sendCommand(key, true, ['CLUSTER', 'KEYSLOT', key]));
      const indexSlot = await slot(
        `${latestPrefix}o:{${Buffer.from('ada').toString('base64url')}}`,
      );
      const recordSlots = new Set(
        await Promise.all(ids.map((id) => slot(`${latestPrefix}s:{${id}}`))),
      );
      // No script could change both: some record is always in another slot than the index.
      expect([...recordSlots].some((recordSlot) => recordSlot !== indexSlot)).toBe(true);
      const listed = (await store.ownedBy('ada')).map((session) => session.id);
      expect(listed.sort()).toEqual([...ids].sort());
      await store.delete(ids[0] as string);
      await store.set(ids[1] as string, {
        data: bytes('moved'),
        expiresAt: Date.now() + HOUR_MS,
        owner: 'bob',
      });
      expect((await store.ownedBy('ada')).map((session) => session.id).sort()).toEqual(
        ids.slice(2).sort(),
      );
      expect((await store.ownedBy('bob')).map((session) => session.id)).toEqual([ids[1]]);
    } finally {
      await store.clear();
      await store.close();
    }
  });

  it('publishes a release only when another store waited for the lock, and that wakes the waiter', async () => {
    const prefix = newPrefix();
    const holder = await RedisStore.open({ client: cluster, prefix });
    const other = createCluster({ rootNodes: server.rootNodes });
    other.on('error', () => {});
    await other.connect();
    const waiter = await RedisStore.open({ client: other, prefix });
    const publishes = async () => {
      let calls = 0;
      for (const master of cluster.masters) {
        const stats = await (await cluster.nodeClient(master)).info('commandstats');
        calls += Number(/cmdstat_publish:calls=(\d+)/.exec(stats)?.[1] ?? 0);
      }
      return calls;
    };
    try {
      const id = newId();
      const record = () => ({ data: bytes('x'), expiresAt: Date.now() + HOUR_MS });
      const before = await publishes();
      const alone = await holder.locks.acquire(id);
      await holder.set(id, record(), { lock: alone, release: true });
      await alone.release();
      await (await holder.locks.acquire(id)).release();
      expect(await publishes()).toBe(before);

      const held = await holder.locks.acquire(id, { leaseMs: 60_000 });
      // setTimeout frozen: the waiter's backstop poll never fires, so only the message can wake it.
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      const waiting = waiter.locks.acquire(id, { waitMs: 60_000 });
      const lockKey = `${prefix}l:{${id}}`;
      let value: string | null = null;
      while (!value?.endsWith('!')) value = (await cluster.get(lockKey)) as string | null;
      await holder.set(id, record(), { lock: held, release: true });
      const next = await waiting;
      vi.useRealTimers();
      expect(await publishes()).toBe(before + 1);
      await next.release();
    } finally {
      vi.useRealTimers();
      await waiter.close();
      await other.close();
      await holder.clear();
      await holder.close();
    }
  });
});

describe('RedisStore on Redis Cluster: the server version', () => {
  it('open reads the version of every master', async () => {
    const nodes = await Promise.all(cluster.masters.map((master) => cluster.nodeClient(master)));
    const infoCalls = () =>
      Promise.all(
        nodes.map(async (node) => {
          const stats = String(await node.sendCommand(['INFO', 'commandstats']));
          return Number(/cmdstat_info:calls=(\d+)/.exec(stats)?.[1] ?? 0);
        }),
      );
    const before = await infoCalls();
    const store = await RedisStore.open({ client: cluster, prefix: newPrefix() });
    try {
      const after = await infoCalls();
      // On each master: this test's INFO commandstats before, counted once it ran, and the store's.
      expect(after.map((calls, i) => calls - (before[i] as number))).toEqual([2, 2, 2]);
    } finally {
      await store.close();
    }
  });
});

describe('RedisStore on Redis Cluster: connections and waiting commands', () => {
  /** Connections on every master, whoever opened them. */
  async function connections(): Promise<number> {
    const counts = await Promise.all(
      cluster.masters.map(async (master) => {
        const node = await cluster.nodeClient(master);
        return String(await node.sendCommand(['CLIENT', 'LIST']))
          .trim()
          .split('\n').length;
      }),
    );
    return counts.reduce((sum, count) => sum + count, 0);
  }

  it('runs many operations at once without a listener warning from the signal that drops waiting commands', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on('warning', onWarning);
    const store = await RedisStore.open({ client: cluster, prefix: newPrefix() });
    try {
      const ids = Array.from({ length: 200 }, newId);
      const expiresAt = Date.now() + HOUR_MS;
      await Promise.all(ids.map((id) => store.set(id, { data: bytes(id), expiresAt })));
      expect((await Promise.all(ids.map((id) => store.get(id)))).every(Boolean)).toBe(true);
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      await store.close();
    }
  });

  it("subscribes to the release channel through the app's cluster client instead of opening a cluster of its own", async () => {
    const before = await connections();
    const store = await RedisStore.open({ client: cluster, prefix: newPrefix() });
    try {
      // At most the cluster's own pub/sub connection, which it opens on its first subscription.
      expect((await connections()) - before).toBeLessThanOrEqual(1);
    } finally {
      await store.close();
    }
  });
});

describe('RedisStore on Redis Cluster with a master away', () => {
  // A cluster of this describe's own, whose master it kills; the suite's cluster above stays whole.
  const own = new OwnCluster([7104, 7105, 7106]);
  afterAll(() => own.remove());

  it("count, ids, clear and ownedBy fail with ERR_STORE_IO and leave no command waiting in the app's client", async () => {
    await own.start();
    const client = createCluster({ rootNodes: own.rootNodes });
    client.on('error', () => {});
    await client.connect();
    const prefix = newPrefix();
    const store = await RedisStore.open({ client, prefix, commandTimeoutMs: 300 });
    const expiresAt = Date.now() + HOUR_MS;
    const owners = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank'];
    for (const [i, id] of Array.from({ length: 30 }, newId).entries()) {
      await store.set(id, { data: bytes(id), expiresAt, owner: owners[i % owners.length] });
    }
    const holds = async (master: (typeof client.masters)[number], words: string[]) => {
      const node = await client.nodeClient(master);
      return String(await node.sendCommand(words).catch(() => ''));
    };
    // The master to stop holds an owner's index, so ownedBy's first command waits for it too. It
    // is not the one the release subscription is on: node-redis's close() of a cluster waits for
    // an UNSUBSCRIBE sent to a master that is away, whoever sends it.
    let away: { owner: string; port: number } | undefined;
    for (const master of client.masters) {
      if ((await holds(master, ['CLIENT', 'LIST'])).includes(' sub=1 ')) continue;
      for (const owner of owners) {
        const index = `${prefix}o:{${Buffer.from(owner).toString('base64url')}}`;
        if ((await holds(master, ['EXISTS', index])) === '1') away ??= { owner, port: master.port };
      }
    }
    if (away === undefined) {
      throw new Error("no master without the subscription holds an owner's index");
    }
    const owner = away.owner;
    await own.nodes.find((node) => node.port === away?.port)?.stop();

    await expect(store.count()).rejects.toMatchObject({ code: 'ERR_STORE_IO' });
    const listing = (async () => {
      for await (const _ of store.ids()) {
        // Reads on until the master that is away.
      }
    })();
    await expect(listing).rejects.toMatchObject({ code: 'ERR_STORE_IO' });
    await expect(store.clear()).rejects.toMatchObject({ code: 'ERR_STORE_IO' });
    await expect(store.ownedBy(owner)).rejects.toMatchObject({ code: 'ERR_STORE_IO' });
    await store.close();
    // Before the fix a SCAN or ZRANGE for the master that is away stayed in the app's client, and
    // its close() waited for that master to come back.
    await client.close();
  }, 60_000);
});

describe('RedisStore on Redis Cluster with a master that hangs', () => {
  // A cluster of this describe's own, whose master it freezes for less than the node timeout.
  const own = new OwnCluster([7107, 7108, 7109]);
  afterAll(() => own.remove());

  it("drops the writes that timed out, and the app's cluster client still writes to that master", async () => {
    await own.start();
    const client = createCluster({ rootNodes: own.rootNodes });
    client.on('error', () => {});
    await client.connect();
    const prefix = newPrefix();
    const store = await RedisStore.open({ client, prefix, commandTimeoutMs: 500 });
    const filled = newId();
    const keySlot = async (key: string) =>
      Number(await client.sendCommand(key, true, ['CLUSTER', 'KEYSLOT', key]));
    const masterOf = async (id: string) =>
      client.getSlotMaster(await keySlot(`${prefix}s:{${id}}`)).port;
    // The record whose write fails lives on the master that hangs, with the writes before it.
    const port = await masterOf(filled);
    let probe = newId();
    while ((await masterOf(probe)) !== port) probe = newId();
    const hung = own.nodes.find((each) => each.port === port);
    if (hung === undefined) throw new Error(`no node on port ${port}`);
    try {
      hung.pause();
      const large = { data: new Uint8Array(1_000_000), expiresAt: Date.now() + HOUR_MS };
      const filling = Promise.all(
        Array.from({ length: 24 }, () => store.set(filled, large).catch((error) => error)),
      );
      const failed = await store
        .set(probe, { data: bytes('reported failed'), expiresAt: Date.now() + HOUR_MS })
        .catch((error) => error);
      expect(failed).toMatchObject({ code: 'ERR_STORE_IO' });
      await filling;
      hung.resume();
      const key = `${prefix}app:{${probe}}`;
      const answer = await Promise.race([
        client.set(key, 'own'),
        new Promise((resolve) => setTimeout(resolve, 10_000, 'never written')),
      ]);
      expect(answer).toBe('OK');
      await client.del(key);
      expect(await store.get(probe)).toBeUndefined();
    } finally {
      hung.resume();
      await store.clear().catch(() => {});
      await store.close();
      await client.close();
    }
  }, 60_000);
});

describe('RedisStore on Redis Cluster with a master that restarts', () => {
  // A cluster of this describe's own, whose master it kills and starts again.
  const own = new OwnCluster([7115, 7116, 7117]);
  afterAll(async () => {
    vi.restoreAllMocks();
    vi.useRealTimers();
    await own.remove();
  });

  it("fails a write past its deadline and drops it when the master's node client reconnects, before that client writes its queue", async () => {
    await own.start();
    // Node clients that try again only every 4 s: the restarted master has taken its slots back
    // (a master rejoins after cluster-node-timeout, 2 s here) before its client reconnects.
    const client = createCluster({
      rootNodes: own.rootNodes,
      defaults: { socket: { reconnectStrategy: () => 4000 } },
    });
    const refused: Array<() => void> = [];
    client.on('error', () => {});
    client.on('node-error', (error: unknown) => {
      if ((error as { code?: unknown }).code === 'ECONNREFUSED') for (const done of refused) done();
    });
    await client.connect();
    // The deadlines' periodic look never comes: only the node client's reconnect can fail the
    // write before its queue goes out.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const store = await RedisStore.open({ client, prefix: newPrefix(), commandTimeoutMs: 500 });
    const keySlot = async (key: string) =>
      Number(await client.sendCommand(key, true, ['CLUSTER', 'KEYSLOT', key]));
    const masterOf = async (id: string) =>
      client.getSlotMaster(await keySlot(`${latestPrefix}s:{${id}}`));
    // Not the master the release subscription is on: the cluster's close() would wait for it.
    let probe = newId();
    for (;;) {
      const node = await client.nodeClient(await masterOf(probe));
      if (!String(await node.sendCommand(['CLIENT', 'LIST'])).includes(' sub=1 ')) break;
      probe = newId();
    }
    const port = (await masterOf(probe)).port;
    const restarted = own.nodes.find((each) => each.port === port);
    if (restarted === undefined) throw new Error(`no node on port ${port}`);
    try {
      const attemptRefused = new Promise<void>((resolve) => refused.push(resolve));
      await restarted.stop();
      // The write waits in the node client's queue while it reconnects.
      const outcome = store
        .set(probe, { data: bytes('reported failed'), expiresAt: Date.now() + HOUR_MS })
        .then(
          () => 'written',
          (error: unknown) => error,
        );
      await attemptRefused;
      // Its deadline passes while the master is away.
      const now = performance.now();
      vi.spyOn(performance, 'now').mockReturnValue(now + 5_000);
      // The master comes back empty: only a write sent after its restart can be there.
      await restarted.start();
      expect(await outcome).toMatchObject({ code: 'ERR_STORE_IO' });
      vi.restoreAllMocks();
      vi.useRealTimers();
      expect(await client.exists(`${latestPrefix}s:{${probe}}`)).toBe(0);
    } finally {
      vi.restoreAllMocks();
      vi.useRealTimers();
      await store.clear().catch(() => {});
      await store.close();
      await client.close();
    }
  }, 60_000);
});
