import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { isSessionError } from '@sessile/core';
import { RedisStore } from '@sessile/redis';
import { createCluster } from 'redis';
import { afterAll, describe, expect, it } from 'vitest';
import { OwnCluster, runPrefix } from './redis-server.js';

const run = promisify(execFile);

// 3 masters and 3 replicas of this file's own; a master it kills is replaced by its replica.
const server = new OwnCluster([7161, 7162, 7163, 7164, 7165, 7166], {
  replicas: 1,
  nodeTimeoutMs: 1000,
});
await server.start();
const cluster = createCluster({ rootNodes: server.rootNodes });
cluster.on('error', () => {});
await cluster.connect();
afterAll(async () => {
  cluster.destroy();
  await server.remove();
});

const HOUR_MS = 3_600_000;
const prefix = runPrefix('cluster-failover');
const newId = () => Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString('base64url');
const text = (value: string, owner?: string) => ({
  data: new TextEncoder().encode(value),
  expiresAt: Date.now() + HOUR_MS,
  ...(owner === undefined ? {} : { owner }),
});
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function cli(port: number, ...words: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-p', String(port), ...words]);
  return stdout.trim();
}

/** The port of the master serving `key`'s slot, by the cluster's account on `askPort`. */
async function masterOf(key: string, askPort: number): Promise<number | undefined> {
  const slot = Number(await cli(askPort, 'CLUSTER', 'KEYSLOT', key));
  for (const line of (await cli(askPort, 'CLUSTER', 'NODES')).split('\n')) {
    const fields = line.split(' ');
    if (!fields[2]?.includes('master') || fields[2].includes('fail')) continue;
    for (const range of fields.slice(8)) {
      const [from, to = from] = range.split('-').map(Number);
      if (from !== undefined && to !== undefined && slot >= from && slot <= to) {
        return Number(fields[1]?.split(':')[1]?.split('@')[0]);
      }
    }
  }
  return undefined;
}

describe('RedisStore on Redis Cluster with replicas: a master killed during traffic', () => {
  it("reaches the killed master's sessions on the replica that took its place, without a restart, and a waiting acquire gets the lock or fails with ERR_STORE_IO", {
    timeout: 90_000,
  }, async () => {
    const store = await RedisStore.open({ client: cluster, prefix, commandTimeoutMs: 1000 });
    const peer = await RedisStore.open({ client: cluster, prefix, commandTimeoutMs: 1000 });
    try {
      const id = newId();
      const key = `${prefix}s:{${id}}`;
      const victim = (await masterOf(key, 7161)) as number;
      const survivor = server.nodes.find((node) => node.port !== victim)?.port as number;
      await store.set(id, text('before', 'alice'), { only: 'absent' });
      // The write is on the replica before its master dies: no asynchronous-replication loss here.
      await cluster.sendCommand(key, false, ['WAIT', '1', '5000']);
      const held = await peer.locks.acquire(id, { waitMs: 0, leaseMs: 3000 });
      const waiting = store.locks.acquire(id, { waitMs: 60_000, leaseMs: 30_000 }).then(
        (lock) => lock,
        (error: unknown) => error,
      );
      await server.node(victim).stop();
      for (let tries = 0; ; tries++) {
        const now = await masterOf(key, survivor);
        if (now !== undefined && now !== victim) break;
        if (tries > 600) throw new Error("no replica took the killed master's place");
        await sleep(50);
      }
      let read: Awaited<ReturnType<typeof store.get>> | undefined;
      for (let tries = 0; read === undefined; tries++) {
        read = await store.get(id).catch((error: unknown) => {
          if (!isSessionError(error) || error.code !== 'ERR_STORE_IO' || tries >= 30) throw error;
          return undefined;
        });
      }
      expect(new TextDecoder().decode(read.data)).toBe('before');
      expect(read.owner).toBe('alice');
      expect((await store.ownedBy('alice')).map((each) => each.id)).toEqual([id]);
      const outcome = await waiting;
      if (isSessionError(outcome)) {
        expect(outcome.code).toBe('ERR_STORE_IO');
      } else {
        await (outcome as { release(): Promise<void> }).release();
      }
      await held.release().catch(() => {});
      const claimed = await store.locks.acquireAndGet?.(id, { waitMs: 10_000 });
      if (claimed === undefined) throw new Error('RedisStore has acquireAndGet');
      const { lock, record } = claimed;
      expect(new TextDecoder().decode(record?.data)).toBe('before');
      expect(await store.set(id, text('after', 'alice'), { lock, release: true })).toBe(true);
      expect(new TextDecoder().decode((await store.get(id))?.data)).toBe('after');
    } finally {
      await store.close();
      await peer.close();
    }
  });
});
