import { join } from 'node:path';
import type { Target } from '../adapter.js';
import { fsEngine, levelEngine, mapEngine, sqliteEngine } from './engines.js';
import {
  betterSqliteSessionStorePeer,
  connectPgSimplePeer,
  connectRedisPeer,
  connectSqlite3Peer,
  levelSessionStorePeer,
  memorystorePeer,
  sessionFileStorePeer,
} from './peers.js';
import {
  pgEngine,
  postgresAsyncCommitStore,
  postgresExpressStore,
  postgresJsEngine,
  postgresStore,
} from './postgres.js';
import { redisEngine, redisExpressStore, redisStore } from './redis.js';
import { type SessileStoreSpec, sessileStore, sessileViaExpress } from './sessile.js';

const memorySpec: SessileStoreSpec = {
  name: 'memory',
  description: '`MemoryStore` from @sessile/core (a Map plus an expiry heap)',
  durability: 'none (process memory)',
  packageName: '@sessile/core',
  className: 'MemoryStore',
  options: () => ({}),
  engine: 'map',
  peers: ['memorystore'],
  processLocal: true,
};

const sqliteSpec: SessileStoreSpec = {
  name: 'sqlite',
  description: "`SqliteStore`, durability 'normal' (WAL, synchronous=NORMAL)",
  durability: 'process crash: yes; power loss: the last commits may roll back',
  packageName: '@sessile/sqlite',
  className: 'SqliteStore',
  options: (dir) => ({ path: join(dir, 'sessile.sqlite') }),
  engine: 'raw-sqlite',
  peers: ['better-sqlite3-session-store', 'connect-sqlite3'],
};

const levelSpec: SessileStoreSpec = {
  name: 'level',
  description: '`LevelStore` on classic-level, with an expiry index',
  durability: 'process crash: yes (LevelDB log); power loss: recent writes may be lost',
  packageName: '@sessile/level',
  className: 'LevelStore',
  options: (dir) => ({ path: join(dir, 'sessile-level') }),
  engine: 'raw-level',
  peers: ['level-session-store'],
  // Its goal over HTTP is memorystore's rate: what an Express app keeping sessions in memory gets.
  httpPeers: ['level-session-store', 'memorystore'],
  processLocal: true,
};

const fileSpec: SessileStoreSpec = {
  name: 'file',
  description: "`FileStore`, one file per session in shard dirs, durability 'normal' (default)",
  durability: "process crash: yes (atomic rename); power loss: only with durability: 'full'",
  packageName: '@sessile/file',
  className: 'FileStore',
  options: (dir) => ({ path: join(dir, 'sessile-files') }),
  engine: 'raw-fs',
  peers: ['session-file-store'],
};

/**
 * Every target the harness knows, in report order. Adding a store is one line here; a store
 * that is not built yet is reported as unavailable and the run goes on.
 */
export const TARGETS: readonly Target[] = [
  sessileStore(memorySpec),
  sessileViaExpress(memorySpec),
  sessileStore(sqliteSpec),
  sessileViaExpress(sqliteSpec),
  sessileStore({
    name: 'sqlite-full',
    description: "`SqliteStore`, durability 'full' (WAL, synchronous=FULL)",
    durability: 'process crash: yes; power loss: yes, every acknowledged write',
    packageName: '@sessile/sqlite',
    className: 'SqliteStore',
    options: (dir) => ({ path: join(dir, 'sessile.sqlite'), durability: 'full' }),
    engine: 'raw-sqlite',
    peers: ['better-sqlite3-session-store', 'connect-sqlite3'],
  }),
  sessileStore(levelSpec),
  sessileViaExpress(levelSpec),
  sessileStore(fileSpec),
  sessileViaExpress(fileSpec),
  sessileStore({
    name: 'dbm',
    description:
      "`DbmStore`, sweepMode 'incremental' (bounded batches, global lock released between them)",
    durability: 'process crash: yes, at most the write in progress is lost',
    packageName: '@sessile/dbm',
    className: 'DbmStore',
    options: (dir) => ({ path: join(dir, 'sessions.dbm'), sweepMode: 'incremental' }),
    engine: 'raw-fs',
  }),
  sessileStore({
    name: 'dbm-full-scan',
    description:
      "`DbmStore`, sweepMode 'full-scan' (mod_python's DbmSession: decode every record under the global lock)",
    durability: 'process crash: yes, at most the write in progress is lost',
    packageName: '@sessile/dbm',
    className: 'DbmStore',
    options: (dir) => ({ path: join(dir, 'sessions.dbm'), sweepMode: 'full-scan' }),
    engine: 'raw-fs',
    sweepLimit: Number.POSITIVE_INFINITY,
    onlyWorkloads: {
      names: ['cleanup'],
      reason: 'same as `dbm`: the sweep mode changes only `sweep`',
    },
    cleanupNote:
      "one `sweep()` with sweepMode 'full-scan': every record decoded under the global lock",
  }),
  postgresStore,
  postgresExpressStore,
  postgresAsyncCommitStore,
  redisStore,
  redisExpressStore,
  mapEngine,
  sqliteEngine,
  levelEngine,
  fsEngine,
  pgEngine,
  postgresJsEngine,
  redisEngine,
  memorystorePeer,
  betterSqliteSessionStorePeer,
  connectSqlite3Peer,
  sessionFileStorePeer,
  levelSessionStorePeer,
  connectRedisPeer,
  connectPgSimplePeer,
];

export function findTarget(name: string): Target | undefined {
  return TARGETS.find((target) => target.name === name);
}
