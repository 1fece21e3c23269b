import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { RedisStore } from '@sessile/redis';
import { createCluster } from 'redis';
import { afterAll, describe, expect, it } from 'vitest';
import { OwnCluster, OwnRedis, runPrefix } from './redis-server.js';

const run = promisify(execFile);

// A 3-master cluster of this file's own, whose slots it moves between masters by hand, and
// a fourth node that one test adds.
const server = new OwnCluster([7171, 7172, 7173]);
await server.start();
const added = new OwnRedis(7174, [
  '--cluster-enabled',
  'yes',
  '--cluster-config-file',
  'nodes-7174.conf',
  '--cluster-node-timeout',
  '2000',
]);
const ports = server.nodes.map((node) => node.port);
const cluster = createCluster({ rootNodes: server.rootNodes });
cluster.on('error', () => {});
await cluster.connect();
afterAll(async () => {
  await cluster.close();
  await server.remove();
  await added.remove();
});

const HOUR_MS = 3_600_000;
const root = runPrefix('cluster-resharding');
let opened = 0;
const newPrefix = () => `${root}${++opened}:`;
const newId = () => Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString('base64url');
const record = (text = 'x', owner?: string) => ({
  data: new TextEncoder().encode(text),
  expiresAt: Date.now() + HOUR_MS,
  ...(owner === undefined ? {} : { owner }),
});
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function cli(port: number, ...words: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-p', String(port), ...words]);
  return stdout.trim();
}

/**
 * Runs a command that answers OK until it does: redis-cli exits 0 on an error reply, and a node
 * that joined a moment ago answers "ERR I don't know about node …" until gossip has told it.
 */
async function untilOk(port: number, ...words: string[]): Promise<void> {
  let answer = '';
  for (let tries = 0; tries < 400; tries++) {
    answer = await cli(port, ...words);
    if (answer === 'OK') return;
    await sleep(25);
  }
  throw new Error(`${words.join(' ')} on ${port} answered ${answer}`);
}

async function slotOf(key: string): Promise<number> {
  return Number(await cli(7171, 'CLUSTER', 'KEYSLOT', key));
}

/** The port of the master that serves `slot` now, by that master's own account. */
async function ownerOf(slot: number): Promise<number> {
  for (const port of ports) {
    const myself = (await cli(port, 'CLUSTER', 'NODES'))
      .split('\n')
      .find((line) => line.includes('myself'));
    if (myself === undefined) continue;
    const ranges = myself.split(' ').slice(8);
    for (const range of ranges) {
      const [from, to = from] = range.split('-').map(Number);
      if (from !== undefined && to !== undefined && slot >= from && slot <= to) return port;
    }
  }
  throw new Error(`no master serves slot ${slot}`);
}

/** How many commands the node on `port` has answered TRYAGAIN. */
async function tryAgains(port: number): Promise<number> {
  const stats = await cli(port, 'INFO', 'errorstats');
  return Number(/errorstat_TRYAGAIN:count=(\d+)/.exec(stats)?.[1] ?? 0);
}

/**
 * A slot on its way from one master to another, as `redis-cli --cluster reshard` moves it:
 * marked MIGRATING and IMPORTING, its keys moved a few at a time, then given to the target.
 */
class Migration {
  readonly slot: number;
  readonly source: number;
  readonly target: number;

  private constructor(slot: number, source: number, target: number) {
    this.slot = slot;
    this.source = source;
    this.target = target;
  }

  static async start(slot: number, to?: number): Promise<Migration> {
    const source = await ownerOf(slot);
    const target = to ?? (source === 7171 ? 7172 : 7171);
    const migration = new Migration(slot, source, target);
    const sourceId = await cli(source, 'CLUSTER', 'MYID');
    const targetId = await cli(target, 'CLUSTER', 'MYID');
    await untilOk(target, 'CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', sourceId);
    await untilOk(source, 'CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', targetId);
    return migration;
  }

  /** Moves these keys of the slot to the target; resolves with MIGRATE's answer. */
  move(...keys: string[]): Promise<string> {
    return cli(
      this.source,
      'MIGRATE',
      '127.0.0.1',
      String(this.target),
      '',
      '0',
      '5000',
      'KEYS',
      ...keys,
    );
  }

  /** Moves what is left of the slot and gives it to the target, on every master. */
  async finish(): Promise<void> {
    // A MIGRATE answered with an error moved nothing and is sent again, a bounded number of
    // times: a refusal that lasts fails the test instead of hanging it.
    let answer = '';
    for (let tries = 0; ; tries++) {
      const keys = (await cli(this.source, 'CLUSTER', 'GETKEYSINSLOT', String(this.slot), '100'))
        .split('\n')
        .filter((key) => key !== '');
      if (keys.length === 0) break;
      if (tries >= 400)
        throw new Error(`slot ${this.slot} kept its keys: MIGRATE answered ${answer}`);
      answer = await this.move(...keys);
      if (answer !== 'OK') await sleep(25);
    }
    const targetId = await cli(this.target, 'CLUSTER', 'MYID');
    await untilOk(this.target, 'CLUSTER', 'SETSLOT', String(this.slot), 'NODE', targetId);
    await untilOk(this.source, 'CLUSTER', 'SETSLOT', String(this.slot), 'NODE', targetId);
    for (const port of ports) {
      if (port !== this.source && port !== this.target) {
        await untilOk(port, 'CLUSTER', 'SETSLOT', String(this.slot), 'NODE', targetId);
      }
    }
  }
}

/** Resolves once the masters of `migration` have answered TRYAGAIN more than `before` times. */
async function untilTryAgain(migration: Migration, before: number): Promise<void> {
  for (let tries = 0; tries < 400; tries++) {
    const now = (await tryAgains(migration.source)) + (await tryAgains(migration.target));
    if (now > before) return;
    await sleep(25);
  }
  throw new Error('no command was answered TRYAGAIN');
}

async function tryAgainCount(migration: Migration): Promise<number> {
  return (await tryAgains(migration.source)) + (await tryAgains(migration.target));
}

describe('RedisStore on Redis Cluster: a session whose slot moves to another master', () => {
  it('a claim answered TRYAGAIN (its record moved, its lock key not yet) is sent again and takes the lock once the slot has moved', async () => {
    const prefix = newPrefix();
    const store = await RedisStore.open({ client: cluster, prefix });
    try {
      const id = newId();
      await store.set(id, record('before'), { only: 'absent' });
      const migration = await Migration.start(await slotOf(`${prefix}s:{${id}}`));
      await migration.move(`${prefix}s:{${id}}`);
      const before = await tryAgainCount(migration);
      // The source has neither key (ASK); the target has the record but not the lock: TRYAGAIN.
      const claimed =
        store.locks.acquireAndGet?.(id, { waitMs: 10_000, leaseMs: 30_000 }) ??
        Promise.reject(new Error('RedisStore has acquireAndGet'));
      const settled = claimed.then(
        () => 'taken',
        (error: unknown) => error,
      );
      await Promise.race([untilTryAgain(migration, before), settled]);
      await migration.finish();
      expect(await settled).toBe('taken');
      const { lock, record: read } = await claimed;
      expect(new TextDecoder().decode(read?.data)).toBe('before');
      expect(await store.set(id, record('after'), { lock, release: true })).toBe(true);
      expect(new TextDecoder().decode((await store.get(id))?.data)).toBe('after');
      expect(await ownerOf(migration.slot)).toBe(migration.target);
    } finally {
      await store.close();
    }
  });

  it('a fenced write answered TRYAGAIN (its lock still on the old master, its record moved) is sent again and writes once the slot has moved', async () => {
    const prefix = newPrefix();
    const store = await RedisStore.open({ client: cluster, prefix });
    try {
      const id = newId();
      await store.set(id, record('before'), { only: 'absent' });
      const lock = await store.locks.acquire(id, { waitMs: 0, leaseMs: 30_000 });
      const migration = await Migration.start(await slotOf(`${prefix}s:{${id}}`));
      await migration.move(`${prefix}s:{${id}}`);
      const before = await tryAgainCount(migration);
      const written = store.set(id, record('after'), { lock, only: 'present' });
      const settled = written.then(
        (value) => value,
        (error: unknown) => error,
      );
      await Promise.race([untilTryAgain(migration, before), settled]);
      await migration.finish();
      expect(await settled).toBe(true);
      expect(new TextDecoder().decode((await store.get(id))?.data)).toBe('after');
      await lock.release();
      expect(await store.locks.acquire(id, { waitMs: 0 }).then((next) => next.release())).toBe(
        undefined,
      );
    } finally {
      await store.close();
    }
  });

  it('count, ids and clear reach a master added to the cluster, with sessions moved to it, before the cluster client has met it', async () => {
    const prefix = newPrefix();
    const store = await RedisStore.open({ client: cluster, prefix });
    try {
      const ids = [newId(), newId(), newId()];
      for (const id of ids) await store.set(id, record('x', 'alice'), { only: 'absent' });
      await added.start();
      await run('redis-cli', ['--cluster', 'add-node', '127.0.0.1:7174', '127.0.0.1:7171']);
      const addedId = await cli(7174, 'CLUSTER', 'MYID');
      // The added node must also know every slot's master before a slot is imported to it: a
      // node ignores what gossip says about a slot it is importing, so one marked IMPORTING
      // first would stay unserved there ("CLUSTERDOWN Hash slot not served") for good.
      for (let tries = 0; ; tries++) {
        const known = await Promise.all(ports.map((port) => cli(port, 'CLUSTER', 'NODES')));
        const slots = await cli(7174, 'CLUSTER', 'INFO');
        if (
          known.every((nodes) => nodes.includes(addedId)) &&
          slots.includes('cluster_slots_assigned:16384')
        ) {
          break;
        }
        if (tries > 400) throw new Error('the cluster never met the added node');
        await sleep(25);
      }
      ports.push(7174);
      const moved = ids[0] as string;
      const migration = await Migration.start(await slotOf(`${prefix}s:{${moved}}`), 7174);
      await migration.finish();
      expect(await ownerOf(migration.slot)).toBe(7174);
      expect(await store.count()).toBe(3);
      const listed: string[] = [];
      for await (const id of store.ids()) listed.push(id);
      expect(listed.sort()).toEqual([...ids].sort());
      await store.clear();
      expect(await cli(7174, 'EXISTS', `${prefix}s:{${moved}}`)).toBe('0');
      expect(await store.count()).toBe(0);
    } finally {
      await store.close();
    }
  });
});
