import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { sleep } from '@sessile/core/store';
import { importOptional, type Target, Unavailable } from '../adapter.js';
import { call, driveExpressStore, type ExpressStore, type PeerInstance } from './express-driver.js';

const require = createRequire(import.meta.url);

/** A name for server-side data that every worker opening the same `dir` derives alike. */
function nameFor(dir: string): string {
  return createHash('sha256').update(dir).digest('hex').slice(0, 12);
}

interface PeerSpec {
  name: string;
  description: string;
  durability: string;
  needsServer?: boolean;
  sharedAcrossProcesses: boolean;
  make(dir: string, session: ExpressSessionModule): Promise<PeerInstance>;
}

type ExpressSessionModule = { Store: new (...args: unknown[]) => object };

async function expressSession(): Promise<ExpressSessionModule> {
  const module = await importOptional<{ default: ExpressSessionModule }>('express-session');
  return module.default;
}

function peer(spec: PeerSpec): Target {
  return {
    name: spec.name,
    kind: 'peer',
    description: spec.description,
    durability: spec.durability,
    ...(spec.needsServer ? { needsServer: true } : {}),
    async open(dir) {
      return driveExpressStore(await spec.make(dir, await expressSession()));
    },
    http: {
      sharedAcrossProcesses: spec.sharedAcrossProcesses,
      async expressSessionStore(dir, session) {
        return (await spec.make(dir, session as ExpressSessionModule)).store;
      },
    },
  };
}

function load<T>(name: string): T {
  try {
    return require(name) as T;
  } catch (error) {
    throw new Unavailable(`${name} not loadable (${(error as Error).message.split('\n')[0]})`);
  }
}

export const memorystorePeer = peer({
  name: 'memorystore',
  description: 'memorystore 1.6 (lru-cache in process memory)',
  durability: 'none (process memory)',
  sharedAcrossProcesses: false,
  async make(_dir, session) {
    const MemoryStore =
      load<
        (s: unknown) => new (o: object) => ExpressStore & { prune(): void; stopInterval(): void }
      >('memorystore')(session);
    const store = new MemoryStore({ checkPeriod: 0 });
    return {
      store,
      cleanupNote: '`prune()`: one synchronous pass over the whole cache',
      cleanup: async () => store.prune(),
      async expiredLeft(_ids, liveCount) {
        return ((await call<number>((done) => store.length?.(done))) ?? 0) - liveCount;
      },
      async close() {
        store.stopInterval();
      },
    };
  },
});

interface BetterSqliteDatabase {
  pragma(source: string): unknown;
  prepare(source: string): { get(...params: unknown[]): unknown };
  close(): void;
}

export const betterSqliteSessionStorePeer = peer({
  name: 'better-sqlite3-session-store',
  description:
    'better-sqlite3-session-store 0.1 on better-sqlite3 12, its default (rollback journal)',
  durability: 'process crash: yes; power loss: yes (synchronous=FULL, rollback journal)',
  sharedAcrossProcesses: true,
  async make(dir, session) {
    const BetterSqlite = load<new (path: string) => BetterSqliteDatabase>('better-sqlite3');
    const base = load<
      (s: unknown) => new (o: object) => ExpressStore & { clearExpiredSessions(): void }
    >('better-sqlite3-session-store')(session);
    // Its constructor starts an un-unref'd 15-minute timer that would keep the process alive; the benchmark runs the same cleanup on demand.
    const SqliteStore = class extends base {
      startInterval(): void {}
    };
    const client = new BetterSqlite(join(dir, 'bs3-sessions.db'));
    client.pragma('busy_timeout = 5000');
    const store = new SqliteStore({ client });
    return {
      store,
      cleanupNote:
        "`clearExpiredSessions()`: one unbounded `DELETE … WHERE datetime('now') > datetime(expire)`, no index",
      cleanup: async () => store.clearExpiredSessions(),
      async expiredLeft(_ids, liveCount) {
        return (
          (client.prepare('SELECT COUNT(*) AS n FROM sessions').get() as { n: number }).n -
          liveCount
        );
      },
      async close() {
        client.close();
      },
    };
  },
});

interface Sqlite3Database {
  run(sql: string, params: unknown[], callback: (error: Error | null) => void): void;
  get(sql: string, params: unknown[], callback: (error: Error | null, row: unknown) => void): void;
  close(callback: (error: Error | null) => void): void;
  on(event: string, listener: () => void): void;
}

export const connectSqlite3Peer = peer({
  name: 'connect-sqlite3',
  description:
    'connect-sqlite3 0.9 on node-sqlite3 (async, thread pool), `concurrentDb: true` (WAL)',
  durability: 'process crash: yes; power loss: last commits may roll back (WAL)',
  sharedAcrossProcesses: true,
  async make(dir, session) {
    const SQLiteStore =
      load<
        (
          s: unknown,
        ) => new (
          o: object,
        ) => ExpressStore & { db: Sqlite3Database; client: NodeJS.EventEmitter }
      >('connect-sqlite3')(session);
    const store = new SQLiteStore({ dir, db: 'connect-sqlite3.db', concurrentDb: true });
    await new Promise((resolve) => store.client.once('connect', resolve));
    const run = (sql: string, params: unknown[]) =>
      new Promise<void>((resolve, reject) =>
        store.db.run(sql, params, (error) => (error ? reject(error) : resolve())),
      );
    return {
      store,
      cleanupNote: 'its own `dbCleanup`: one unbounded `DELETE … WHERE ? > expired`, no index',
      cleanup: () => run('DELETE FROM sessions WHERE ? > expired', [Date.now()]),
      async expiredLeft(_ids, liveCount) {
        const row = await new Promise<{ n: number }>((resolve, reject) =>
          store.db.get('SELECT COUNT(*) AS n FROM sessions', [], (error, value) =>
            error ? reject(error) : resolve(value as { n: number }),
          ),
        );
        return row.n - liveCount;
      },
      async close() {
        await new Promise((resolve) => store.db.close(resolve));
      },
    };
  },
});

export const sessionFileStorePeer = peer({
  name: 'session-file-store',
  description: 'session-file-store 1.5 (one JSON file per session, write-file-atomic, flat dir)',
  durability: 'process crash: yes (atomic write); power loss: fsync per write',
  sharedAcrossProcesses: true,
  async make(dir, session) {
    const FileStore =
      load<(s: unknown) => new (o: object) => ExpressStore & { options: object }>(
        'session-file-store',
      )(session);
    const helpers = load<{ reap(options: object, callback: (error?: unknown) => void): void }>(
      'session-file-store/lib/session-file-helpers',
    );
    const path = join(dir, 'session-file-store');
    const store = new FileStore({ path, reapInterval: -1, logFn: () => {} });
    return {
      store,
      cleanupNote:
        'its reaper `reap()`: list the dir, read and parse every file, delete the expired',
      cleanup: () => call<void>((done) => helpers.reap(store.options, done)),
      async expiredLeft(_ids, liveCount) {
        const names = await readdir(path);
        return names.filter((name) => name.endsWith('.json')).length - liveCount;
      },
      async close() {},
    };
  },
});

export const levelSessionStorePeer = peer({
  name: 'level-session-store',
  description: 'level-session-store 2.2 on level 7 (leveldown)',
  durability: 'process crash: yes (LevelDB log); power loss: recent writes may be lost',
  sharedAcrossProcesses: false,
  async make(dir, session) {
    const LevelStore =
      load<
        (s: unknown) => new (
          location: string,
        ) => ExpressStore & {
          db: {
            close(cb: () => void): void;
            get(key: string, cb: (error: Error | null) => void): void;
          };
          once(e: string, l: () => void): void;
        }
      >('level-session-store')(session);
    const store = new LevelStore(join(dir, 'level-session-store'));
    await new Promise<void>((resolve) => store.once('connect', resolve));
    // It emits 'connect' before its own write of the '__length__' key has landed, and every
    // set() fails with "Key not found" until it has: wait for that write (a race of its own
    // that showed up once in a test run).
    for (let attempt = 0; attempt < 200; attempt++) {
      const written = await new Promise<boolean>((resolve) =>
        store.db.get('__length__', (error) => resolve(!error)),
      );
      if (written) break;
      await sleep(5);
    }
    return {
      store,
      cleanupNote: 'none: it never expires anything, expired sessions are still served',
      async close() {
        await new Promise<void>((resolve) => store.db.close(resolve));
      },
    };
  },
});

const REDIS_URL = 'redis://127.0.0.1:6379';

export const connectRedisPeer = peer({
  name: 'connect-redis',
  description: 'connect-redis 9 with node-redis 5, Redis on 127.0.0.1:6379',
  durability: "Redis's own (default: RDB snapshots; a crash loses writes since the last one)",
  needsServer: true,
  sharedAcrossProcesses: true,
  async make(dir) {
    const { createClient } = await importOptional<{
      createClient(options: object): {
        connect(): Promise<unknown>;
        on(event: string, listener: (error: unknown) => void): void;
        scanIterator(options: object): AsyncIterable<string[]>;
        del(keys: string[]): Promise<number>;
        exists(keys: string[]): Promise<number>;
        quit(): Promise<unknown>;
      };
    }>('redis');
    const { RedisStore } = await importOptional<{
      RedisStore: new (options: object) => ExpressStore;
    }>('connect-redis');
    const client = createClient({
      url: REDIS_URL,
      socket: { connectTimeout: 2000, reconnectStrategy: false },
    });
    client.on('error', () => {});
    try {
      await client.connect();
    } catch (error) {
      throw new Unavailable(`Redis not reachable at ${REDIS_URL} (${(error as Error).message})`);
    }
    const prefix = `sessile-bench:${nameFor(dir)}:`;
    const store = new RedisStore({ client, prefix });
    return {
      store,
      cleanupNote:
        'none needed: Redis expires keys itself (TTL), and an already expired session is never stored',
      async expiredLeft(ids) {
        return ids.length === 0 ? 0 : client.exists(ids.map((id) => prefix + id));
      },
      async close() {
        for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) {
          if (keys.length > 0) await client.del(keys);
        }
        await client.quit();
      },
    };
  },
});

const PG_CONFIG = { host: '127.0.0.1', port: 5432, database: 'test', user: 'postgres' };

export const connectPgSimplePeer = peer({
  name: 'connect-pg-simple',
  description: 'connect-pg-simple 10 with pg 8, PostgreSQL on 127.0.0.1:5432',
  durability: 'PostgreSQL default (fsync on commit)',
  needsServer: true,
  sharedAcrossProcesses: true,
  async make(dir, session) {
    const pg = await importOptional<{ default: { Pool: new (options: object) => PgPool } }>('pg');
    const pool = new pg.default.Pool({ ...PG_CONFIG, max: 8, connectionTimeoutMillis: 2000 });
    pool.on('error', () => {});
    try {
      await pool.query('SELECT 1');
    } catch (error) {
      await pool.end().catch(() => {});
      throw new Unavailable(
        `PostgreSQL not reachable at ${PG_CONFIG.host}:${PG_CONFIG.port} (${(error as Error).message})`,
      );
    }
    // connect-pg-simple names its primary key constraint "session_pkey", so each run gets its own schema.
    const schemaName = `sessile_bench_${nameFor(dir)}`;
    await pool.query(`CREATE SCHEMA IF NOT EXISTS ${schemaName}`).catch(async (error: unknown) => {
      // Two workers creating the schema at once: the loser sees a duplicate, which is fine.
      const exists = await pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [
        schemaName,
      ]);
      if (exists.rows.length === 0) throw error;
    });
    const PgStore =
      load<
        (
          s: unknown,
        ) => new (
          o: object,
        ) => ExpressStore & { pruneSessions(cb: (e: unknown) => void): void; close(): void }
      >('connect-pg-simple')(session);
    const store = new PgStore({
      pool,
      schemaName,
      tableName: 'session',
      createTableIfMissing: true,
      pruneSessionInterval: false,
    });
    return {
      store,
      cleanupNote:
        '`pruneSessions()`: one unbounded `DELETE … WHERE expire < now` through its index',
      cleanup: () => call<void>((done) => store.pruneSessions(done)),
      async expiredLeft(_ids, liveCount) {
        const result = await pool.query(`SELECT COUNT(*)::int AS n FROM ${schemaName}.session`);
        return (result.rows[0] as { n: number }).n - liveCount;
      },
      async close() {
        await pool.query(`DROP SCHEMA IF EXISTS ${schemaName} CASCADE`).catch(() => {});
        store.close();
        await pool.end().catch(() => {});
      },
    };
  },
});

interface PgPool {
  query(sql: string, params?: unknown[]): Promise<{ rows: unknown[] }>;
  on(event: string, listener: (error: unknown) => void): void;
  end(): Promise<void>;
}
