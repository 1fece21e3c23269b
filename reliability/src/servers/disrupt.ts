import { exec } from 'node:child_process';
import { promisify } from 'node:util';
import type { SessionStore } from '@sessile/core';
import type { CheckOutcome } from '../results.js';
import { PG_URL, REDIS_URL, runTag } from '../stores.js';
import { serverUnavailable } from './reachable.js';
import { HarnessRedis } from './redis-server.js';
import { recovers, runTraffic, unexplained } from './traffic.js';

const TRAFFIC_MS = 3000;
const KILL_EVERY_MS = 400;

interface Server {
  name: 'redis' | 'postgres';
  /**
   * Opens a store whose connections carry `tag`, so only they are killed; with `url`, on that
   * server, through a connection the store makes itself.
   */
  open(tag: string, url?: string): Promise<{ store: SessionStore; close(): Promise<void> }>;
  /** Kills the connections that carry `tag`; resolves to how many. */
  kill(tag: string): Promise<number>;
  cleanup(tag: string): Promise<void>;
  restartCommand?: string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export const SERVERS: Server[] = [
  {
    name: 'redis',
    async open(tag, url) {
      const { createClient } = await import('redis');
      const { RedisStore } = await import('@sessile/redis');
      if (url !== undefined) {
        const store = await RedisStore.open({ url, prefix: `${tag}:` });
        return { store, close: () => store.close() };
      }
      const client = createClient({ url: REDIS_URL, name: tag });
      client.on('error', () => {});
      await client.connect();
      const store = await RedisStore.open({ client, prefix: `${tag}:` });
      return {
        store,
        async close() {
          await store.close();
          await client.close();
        },
      };
    },
    async kill(tag) {
      const { createClient } = await import('redis');
      const admin = createClient({ url: REDIS_URL });
      admin.on('error', () => {});
      await admin.connect();
      try {
        const list = String(await admin.sendCommand(['CLIENT', 'LIST']));
        let killed = 0;
        for (const line of list.split('\n')) {
          if (!line.includes(` name=${tag} `)) continue;
          const clientId = /\bid=(\d+)/.exec(line)?.[1];
          if (clientId === undefined) continue;
          killed += Number(await admin.sendCommand(['CLIENT', 'KILL', 'ID', clientId]));
        }
        return killed;
      } finally {
        await admin.close();
      }
    },
    async cleanup(tag) {
      const { createClient } = await import('redis');
      const admin = createClient({ url: REDIS_URL });
      admin.on('error', () => {});
      await admin.connect();
      for await (const keys of admin.scanIterator({ MATCH: `${tag}:*`, COUNT: 1000 })) {
        if (keys.length > 0) await admin.unlink(keys);
      }
      await admin.close();
    },
  },
  {
    name: 'postgres',
    restartCommand: process.env.SESSILE_PG_RESTART_CMD,
    async open(tag) {
      const { PostgresStore } = await import('@sessile/postgres');
      const store = await PostgresStore.open({
        connectionString: `${PG_URL}?application_name=${tag}`,
        schema: tag,
        poolSize: 4,
        queryTimeoutMs: 2000,
      });
      return { store, close: () => store.close() };
    },
    async kill(tag) {
      const pg = await import('pg');
      const admin = new pg.default.Client({ connectionString: PG_URL });
      await admin.connect();
      try {
        const result = await admin.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
          [tag],
        );
        return result.rowCount ?? 0;
      } finally {
        await admin.end();
      }
    },
    async cleanup(tag) {
      const pg = await import('pg');
      const admin = new pg.default.Client({ connectionString: PG_URL });
      await admin.connect();
      await admin.query(`DROP SCHEMA IF EXISTS "${tag}" CASCADE`);
      await admin.end();
    },
  },
];

/** Writes are refused at once while the server is down; this long is not fast. */
const FAIL_FAST_MS = 1000;

async function disrupted(
  server: Server,
  what: string,
  disrupt: (tag: string) => Promise<string>,
  ownUrl?: string,
): Promise<CheckOutcome> {
  const outcome: CheckOutcome = {
    name: `${server.name}: ${what}`,
    cases: 0,
    failures: [],
    notes: [],
  };
  const unavailable = ownUrl === undefined ? await serverUnavailable(server.name) : undefined;
  if (unavailable !== undefined) return { ...outcome, skipped: unavailable };
  const tag = `sessile_rel_${what.startsWith('connections') ? 'kill' : 'restart'}_${runTag(String(Math.random()))}`;
  const opened = await server.open(tag, ownUrl);
  try {
    let note = '';
    const traffic = await runTraffic(opened.store, tag, TRAFFIC_MS, async () => {
      note = await disrupt(tag);
    });
    outcome.cases = traffic.operations;
    const codes = [...traffic.failures].map(([code, n]) => `${n} × ${code}`).join(', ') || 'none';
    outcome.notes?.push(
      `${note}; ${traffic.acknowledged} of ${traffic.operations} writes acknowledged; rejected: ${codes}; slowest rejection ${traffic.slowestRejectionMs} ms`,
    );
    if (ownUrl !== undefined && traffic.slowestRejectionMs > FAIL_FAST_MS)
      outcome.failures.push(
        `a write took ${traffic.slowestRejectionMs} ms to reject while the server was down`,
      );
    for (const code of traffic.failures.keys()) {
      if (code !== 'ERR_STORE_IO')
        outcome.failures.push(`a write rejected with ${code}, not ERR_STORE_IO`);
    }
    const recoveredMs = await recovers(opened.store, tag, 30_000);
    if (recoveredMs === undefined)
      outcome.failures.push('the store did not take writes again within 30 s');
    else outcome.notes?.push(`writes worked again ${recoveredMs} ms after the traffic`);
    outcome.failures.push(...(await unexplained(opened.store, traffic)));
  } catch (error) {
    outcome.failures.push(`unexpected: ${String(error)}`);
  } finally {
    await opened.close().catch((error) => outcome.failures.push(`close: ${String(error)}`));
    await server.cleanup(tag).catch(() => {});
  }
  return outcome;
}

/** The store's own connections are killed again and again while it writes. */
export function connectionsKilled(server: Server): Promise<CheckOutcome> {
  return disrupted(server, 'connections killed mid-traffic', async (tag) => {
    let killed = 0;
    const until = Date.now() + TRAFFIC_MS - 500;
    while (Date.now() < until) {
      await sleep(KILL_EVERY_MS);
      killed += await server.kill(tag);
    }
    return `${killed} connections killed`;
  });
}

/**
 * Redis's persistence for the restart: every write is in the append-only file, fsynced, before
 * Redis answers it, so a SIGKILL of the server loses no acknowledged write.
 */
export const REDIS_PERSISTENCE = ['--appendonly', 'yes', '--appendfsync', 'always'];
/** How long the server stays down. */
const OUTAGE_MS = 1500;

/** A redis-server of the harness's own is killed with SIGKILL mid-traffic and started again. */
async function redisRestarted(server: Server): Promise<CheckOutcome> {
  const name = `${server.name}: killed and restarted mid-traffic`;
  const own = new HarnessRedis(REDIS_PERSISTENCE);
  try {
    await own.start();
  } catch (error) {
    await own.remove().catch(() => {});
    return {
      name,
      cases: 0,
      failures: [],
      skipped: `redis-server did not start: ${String(error)}`,
    };
  }
  try {
    return await disrupted(
      server,
      'killed and restarted mid-traffic',
      async () => {
        await sleep(500);
        await own.kill();
        await sleep(OUTAGE_MS);
        await own.start();
        return `a redis-server of its own (${REDIS_PERSISTENCE.join(' ')}) killed with SIGKILL, started again ${OUTAGE_MS} ms later`;
      },
      own.url,
    );
  } finally {
    await own.remove();
  }
}

/**
 * The whole server restarts mid-traffic: Redis, one the harness starts itself; PostgreSQL,
 * where the machine gives a command for it.
 */
export async function serverRestarted(server: Server): Promise<CheckOutcome> {
  if (server.name === 'redis') return redisRestarted(server);
  const command = server.restartCommand;
  if (command === undefined) {
    return {
      name: `${server.name}: restarted mid-traffic`,
      cases: 0,
      failures: [],
      skipped: 'SESSILE_PG_RESTART_CMD is not set (the server is shared; CI sets it)',
    };
  }
  return disrupted(server, 'restarted mid-traffic', async () => {
    await sleep(500);
    await promisify(exec)(command);
    return `restarted with ${command}`;
  });
}
