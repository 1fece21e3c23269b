import { constants } from 'node:buffer';
import { createHash } from 'node:crypto';
import {
  assertDuration,
  assertKnownOptions,
  assertPositiveInteger,
  type BaseStoreOptions,
  describeValue,
} from '@sessile/core/store';
import pg from 'pg';
import { readsAsUrl } from './database.js';
import { type SchemaNames, schemaNames } from './schema.js';
import { OwnSockets } from './sockets.js';

export interface PostgresStoreOptions extends BaseStoreOptions {
  /**
   * The app's own node-postgres pool. The store checks a connection out per statement and never
   * ends the pool. Give either `pool` or `connectionString`.
   */
  pool?: pg.Pool;
  /** Where to connect when the store makes (and later ends) its own pool. */
  connectionString?: string;
  /** Connections of the store's own pool, 1 to 100. Default 10; ignored with `pool`. */
  poolSize?: number;
  /** The schema holding the store's tables, created when missing. Default `'public'`. */
  schema?: string;
  /** The sessions table. The lock table and the expiry index are named after it. Default `'sessions'`. */
  table?: string;
  /**
   * Creates the sessions table UNLOGGED: writes skip the write-ahead log and are faster, but a
   * crash or an unclean shutdown of PostgreSQL empties it, logging every user out, and replicas
   * never see it. Default false. Applies when the store creates its tables; `capabilities.durable`
   * follows the sessions table as found.
   */
  unlogged?: boolean;
  /**
   * How long one call may take from when it is made, waiting in the store's queue or for a pooled
   * connection included, before it fails with `ERR_STORE_IO`; and each of `open`'s statements.
   * Default 10 000.
   */
  queryTimeoutMs?: number;
}

export const DEFAULT_QUERY_TIMEOUT_MS = 10_000;
/**
 * The largest `data` a read can return: node-postgres reads a bytea as hex text (`\x`, then two
 * characters a byte), and a string longer than V8 allows throws inside its socket reader, which
 * ends the process. 268,435,443 bytes on 64-bit.
 */
export const MAX_DATA_BYTES = Math.floor((constants.MAX_STRING_LENGTH - 2) / 2);
const DEFAULT_POOL_SIZE = 10;
/** PostgreSQL's default `max_connections`: a default server refuses connections past it. */
const MAX_POOL_SIZE = 100;

const KNOWN_OPTIONS = [
  'pool',
  'connectionString',
  'poolSize',
  'schema',
  'table',
  'unlogged',
  'queryTimeoutMs',
  'maxRecordBytes',
] as const satisfies readonly (keyof PostgresStoreOptions)[];

export interface Settings {
  pool: pg.Pool;
  ownsPool: boolean;
  /** The sockets of the store's own pool, which `close()` drops once their time is up. */
  poolSockets: OwnSockets | undefined;
  /** How the LISTEN connection reaches the same server as the pool. */
  listenerConfig: pg.ClientConfig;
  names: SchemaNames;
  /** The NOTIFY channel of this table, and the prefix of its prepared statements' names. */
  channel: string;
  unlogged: boolean;
  queryTimeoutMs: number;
  /** Connections the pool may open: how many statements the store keeps in flight before batching. */
  connections: number;
}

/** `options` checked as `method` (`open` or `probe`, which its errors name) checks them. */
export function normalizeOptions(
  options: PostgresStoreOptions,
  method: 'open' | 'probe',
): Settings {
  const caller = `PostgresStore.${method}()`;
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`${caller} needs an options object with pool or connectionString`);
  }
  assertKnownOptions(options, KNOWN_OPTIONS, caller);
  const { pool, connectionString } = options;
  if ((pool === undefined) === (connectionString === undefined)) {
    throw new TypeError('Give exactly one of options.pool and options.connectionString');
  }
  if (pool !== undefined && !(pool instanceof pg.Pool) && !isPool(pool)) {
    throw new TypeError('options.pool must be a pg Pool');
  }
  if (
    connectionString !== undefined &&
    (typeof connectionString !== 'string' || connectionString === '')
  ) {
    throw new TypeError(
      `options.connectionString must be a non-empty string, got ${describeValue(connectionString)}`,
    );
  }
  if (connectionString !== undefined) assertReadable(connectionString);
  assertReadsText(pool);
  const queryTimeoutMs = options.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS;
  assertDuration(queryTimeoutMs, 'queryTimeoutMs', { zero: false });
  const poolSize = options.poolSize ?? DEFAULT_POOL_SIZE;
  assertPositiveInteger(poolSize, 'poolSize');
  if (poolSize > MAX_POOL_SIZE) {
    throw new TypeError(
      `poolSize must be at most ${MAX_POOL_SIZE} (PostgreSQL's default max_connections; pass a pool of your own for more), got ${poolSize}`,
    );
  }
  const { maxRecordBytes } = options;
  if (maxRecordBytes !== undefined) {
    assertPositiveInteger(maxRecordBytes, 'maxRecordBytes');
    if (maxRecordBytes > MAX_DATA_BYTES) {
      throw new TypeError(
        `maxRecordBytes must be at most ${MAX_DATA_BYTES} (the largest data node-postgres can read back), got ${maxRecordBytes}`,
      );
    }
  }
  const unlogged = options.unlogged ?? false;
  if (typeof unlogged !== 'boolean') {
    throw new TypeError(`unlogged must be a boolean, got ${describeValue(unlogged)}`);
  }
  const names = schemaNames(options.schema ?? 'public', options.table ?? 'sessions');
  const timeouts = { connectionTimeoutMillis: queryTimeoutMs, keepAlive: true };
  const listenerConfig: pg.ClientConfig =
    pool === undefined ? { connectionString, ...timeouts } : listenerConfigOf(pool, timeouts);
  // `statement_timeout` makes the server cancel a statement the client gave up on: without it,
  // one stuck behind a lock keeps its backend and may still write once the lock goes.
  const poolSockets = pool === undefined ? new OwnSockets() : undefined;
  const ownPool =
    pool ??
    new pg.Pool({
      connectionString,
      max: poolSize,
      query_timeout: queryTimeoutMs,
      statement_timeout: Math.ceil(queryTimeoutMs),
      stream: poolSockets?.stream,
      ...timeouts,
    });
  // A pool of ours must not crash the process when the server drops an idle connection.
  if (pool === undefined) ownPool.on('error', () => {});
  const channel = `sessile_${createHash('sha256').update(`${names.schema}.${names.table}`).digest('hex').slice(0, 16)}`;
  return {
    pool: ownPool,
    ownsPool: pool === undefined,
    poolSockets,
    listenerConfig,
    names,
    channel,
    unlogged,
    queryTimeoutMs,
    connections: pool === undefined ? poolSize : ((pool.options as pg.PoolConfig).max ?? 10),
  };
}

/**
 * Refuses a connection string node-postgres cannot read, before anything connects, without
 * echoing it: it may hold a password. Constructing a client only reads its options.
 */
function assertReadable(connectionString: string): void {
  let failure: unknown;
  try {
    void new pg.Client({ connectionString });
  } catch (error) {
    failure = error;
  }
  if (failure !== undefined || !readsAsUrl(connectionString)) {
    throw new TypeError(
      'options.connectionString must be a URL such as postgres://user@host:5432/database (node-postgres reads no libpq key=value string)',
      { cause: failure },
    );
  }
}

/**
 * Refuses connections that read results in binary: node-postgres decodes each binary column as
 * UTF-8 text before its parser sees it, so the bytes of a session's data and expiry would come
 * back changed, and a query cannot ask for text instead.
 */
function assertReadsText(pool: pg.Pool | undefined): void {
  if ((pool?.options as { binary?: unknown } | undefined)?.binary === true) {
    throw new TypeError(
      'options.pool reads results in binary (binary: true), which node-postgres decodes as UTF-8 text, changing the bytes of sessions; give the store a pool without it, or connectionString',
    );
  }
  if ((pg.defaults as { binary?: unknown }).binary === true) {
    throw new TypeError(
      "pg.defaults.binary is set, so every connection reads results in binary, which node-postgres decodes as UTF-8 text, changing the bytes of sessions; leave it unset for the store's connections",
    );
  }
}

/**
 * The app's pool's connection settings, for the LISTEN connection. pg-pool keeps `password` as a
 * non-enumerable property (to keep it out of logs), so a spread alone would drop it and the
 * LISTEN connection would fail to authenticate, leaving waiters on other hosts to their poll.
 */
function listenerConfigOf(pool: pg.Pool, timeouts: pg.ClientConfig): pg.ClientConfig {
  const options = pool.options as pg.ClientConfig;
  const config: pg.ClientConfig = { ...options, ...timeouts };
  if (options.password !== undefined) config.password = options.password;
  return config;
}

function isPool(value: unknown): value is pg.Pool {
  const candidate = value as Partial<pg.Pool> | null;
  return (
    typeof candidate === 'object' &&
    candidate !== null &&
    typeof candidate.query === 'function' &&
    typeof candidate.connect === 'function' &&
    typeof candidate.options === 'object'
  );
}
