import type { SessionLock } from '@sessile/core';
import { RedisStore } from '@sessile/redis';
import { createCluster } from 'redis';
import { afterAll, describe, expect, it } from 'vitest';
import { OwnCluster, runPrefix } from './redis-server.js';

// A 3-master cluster of this file's own, whose masters it stops and brings back.
const server = new OwnCluster([7151, 7152, 7153]);
await server.start();
// Node clients that retry every 50 ms: a claim waiting for a restarted master reaches it while it rejoins.
const cluster = createCluster({
  rootNodes: server.rootNodes,
  defaults: { socket: { reconnectStrategy: () => 50 } },
});
cluster.on('error', () => {});
await cluster.connect();
afterAll(async () => {
  await cluster.close();
  await server.remove();
});

const HOUR_MS = 3_600_000;
const root = runPrefix('cluster-outage');
let opened = 0;
const newPrefix = () => `${root}${++opened}:`;
const newId = () => Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString('base64url');
const record = () => ({ data: new TextEncoder().encode('x'), expiresAt: Date.now() + HOUR_MS });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let tries = 0; tries < 600; tries++) {
    if (await check()) return;
    await sleep(25);
  }
  throw new Error(`${what}: not reached`);
}

/** The port of the master that holds `key`'s slot. */
async function masterOf(key: string): Promise<number> {
  const slot = Number(await cluster.sendCommand(key, true, ['CLUSTER', 'KEYSLOT', key]));
  return cluster.getSlotMaster(slot).port;
}

/** A session id whose keys under `prefix` live on the master at `port`. */
async function sessionOn(prefix: string, port: number): Promise<string> {
  for (;;) {
    const id = newId();
    if ((await masterOf(`${prefix}s:{${id}}`)) === port) return id;
  }
}

/**
 * The masters the cluster client's release subscription is not on, once a store subscribed:
 * node-redis's close() of a cluster waits for an UNSUBSCRIBE sent to that master, whoever sends it.
 */
async function unsubscribedMasters(): Promise<number[]> {
  const ports: number[] = [];
  for (const master of cluster.masters) {
    const node = await cluster.nodeClient(master);
    if (!String(await node.sendCommand(['CLIENT', 'LIST'])).includes(' sub=1 ')) {
      ports.push(master.port);
    }
  }
  return ports;
}

/** Resolves once a claim on `id`'s lock was refused: its acquire is waiting. */
function waitedFor(prefix: string, id: string): Promise<void> {
  const lockKey = `${prefix}l:{${id}}`;
  return until(
    async () => String(await cluster.get(lockKey)).endsWith('!'),
    `a refused claim on ${id}`,
  );
}

describe('RedisStore on Redis Cluster: a waiting acquire while a master is away', () => {
  for (const how of ['acquire', 'acquireAndGet'] as const) {
    it(`a waiting ${how} gets the lock when its session's master restarts within commandTimeoutMs, though the master answers CLUSTERDOWN while it rejoins`, async () => {
      const prefix = newPrefix();
      const [store, peer] = await Promise.all(
        [0, 1].map(() => RedisStore.open({ client: cluster, prefix })),
      );
      const [port] = await unsubscribedMasters();
      if (port === undefined) throw new Error('every master holds the subscription');
      const node = server.node(port);
      try {
        const id = await sessionOn(prefix, port);
        const other = await sessionOn(prefix, port);
        const held = await peer?.locks.acquire(id, { leaseMs: 60_000 });
        const options = { waitMs: 20_000, leaseMs: 60_000 };
        const waiting: Promise<SessionLock> | undefined =
          how === 'acquire'
            ? store?.locks.acquire(id, options)
            : store?.locks.acquireAndGet?.(id, options).then(({ lock }) => lock);
        waiting?.catch(() => {});
        await waitedFor(prefix, id);
        await node.stop();
        // The peer's own calls on the master's sessions meanwhile fail, none left waiting.
        const calls = [peer?.get(other), peer?.set(other, record())].map((call) =>
          call?.then(
            () => 'answered',
            (error: unknown) => error,
          ),
        );
        try {
          // Longer than the waiter's polls: its claim waits for the master meanwhile.
          await sleep(1_000);
        } finally {
          // The master comes back empty (no persistence), the holder's lease gone with the rest.
          await node.start();
        }
        const lock = await waiting;
        for (const outcome of await Promise.all(calls)) {
          expect(outcome).toMatchObject({ code: 'ERR_STORE_IO' });
        }
        await held?.release().catch(() => {});
        await expect(peer?.locks.acquire(id, { waitMs: 0 })).rejects.toMatchObject({
          code: 'ERR_LOCK_TIMEOUT',
        });
        await lock?.release();
      } finally {
        await server.untilOk();
        for (const each of [store, peer]) await each?.close();
      }
    }, 60_000);
  }

  it('while another master hangs past the node timeout and the cluster answers CLUSTERDOWN, a waiting acquire waits until its waitMs (ERR_LOCK_TIMEOUT) or commandTimeoutMs (ERR_STORE_IO), and gets and sets fail with ERR_STORE_IO', async () => {
    const prefix = newPrefix();
    // The holder also makes the gets and sets, so that their timeouts drop no waiter's claim.
    const holder = await RedisStore.open({ client: cluster, prefix, commandTimeoutMs: 1_500 });
    const patient = await RedisStore.open({ client: cluster, prefix, commandTimeoutMs: 60_000 });
    const brief = await RedisStore.open({ client: cluster, prefix, commandTimeoutMs: 1_500 });
    const [up, away] = await unsubscribedMasters();
    if (up === undefined || away === undefined)
      throw new Error('two masters hold the subscription');
    const hung = server.node(away);
    try {
      const [first, second, onUp] = [
        await sessionOn(prefix, up),
        await sessionOn(prefix, up),
        await sessionOn(prefix, up),
      ] as const;
      const onAway = await sessionOn(prefix, away);
      await holder.locks.acquire(first, { leaseMs: 60_000 });
      await holder.locks.acquire(second, { leaseMs: 60_000 });
      const outwaited = patient.locks
        .acquire(first, { waitMs: 12_000 })
        .catch((error: unknown) => error);
      const outlasted = brief.locks
        .acquire(second, { waitMs: 60_000 })
        .catch((error: unknown) => error);
      await Promise.all([waitedFor(prefix, first), waitedFor(prefix, second)]);

      hung.pause();
      // Once the others mark the hung master failed, the master of the waiters' sessions refuses every command.
      const upMaster = cluster.masters.find((master) => master.port === up);
      if (upMaster === undefined) throw new Error(`no master on port ${up}`);
      const upClient = await cluster.nodeClient(upMaster);
      await until(
        () =>
          upClient.sendCommand(['GET', `${prefix}s:{${onUp}}`]).then(
            () => false,
            (error: unknown) => String((error as Error).message).startsWith('CLUSTERDOWN'),
          ),
        'CLUSTERDOWN',
      );
      const calls = await Promise.all(
        [
          holder.get(onUp),
          holder.set(onUp, record()),
          // Sent to the hung master: failed after commandTimeoutMs.
          holder.get(onAway),
          holder.set(onAway, record()),
        ].map((call) =>
          call.then(
            () => 'answered',
            (error: unknown) => error,
          ),
        ),
      );
      for (const outcome of calls) expect(outcome).toMatchObject({ code: 'ERR_STORE_IO' });
      expect(await outwaited).toMatchObject({ code: 'ERR_LOCK_TIMEOUT' });
      expect(await outlasted).toMatchObject({
        code: 'ERR_STORE_IO',
        message: expect.stringContaining('CLUSTERDOWN'),
      });
    } finally {
      hung.resume();
      await server.untilOk();
      for (const store of [brief, patient, holder]) await store.close();
    }
  }, 60_000);
});
