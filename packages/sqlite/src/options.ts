import { constants } from 'node:buffer';
import { sep } from 'node:path';
import {
  assertDuration,
  assertKnownOptions,
  assertPositiveInteger,
  type BaseStoreOptions,
  describeValue,
} from '@sessile/core/store';
import type BetterSqlite3 from 'better-sqlite3';
import { type SchemaNames, schemaNames } from './schema.js';

export interface SqliteStoreOptions extends BaseStoreOptions {
  /**
   * The database file, created when missing, with any missing directories above it.
   * `':memory:'` keeps sessions in this process only; `''`, surrounding whitespace, a NUL and a
   * name of a directory are refused. Give either `path` or `database`.
   */
  path?: string;
  /** An open better-sqlite3 connection to use instead of `path`. The store never closes it. */
  database?: BetterSqlite3.Database;
  /** The sessions table. The lock table and the expiry index are named after it. Default `'sessions'`. */
  table?: string;
  /**
   * How long an operation waits for another connection's write lock before it fails with
   * `ERR_STORE_IO`, from 0 to 2147483647. Default 5000.
   */
  busyTimeoutMs?: number;
  /**
   * `'normal'` (default): WAL with `synchronous=NORMAL`; a commit survives a process crash, and a
   * power loss may undo the last commits. `'full'`: WAL with `synchronous=FULL`; a write resolves
   * only once it is on disk. Both commit the writes of one turn of the event loop together.
   */
  durability?: 'normal' | 'full';
}

const DEFAULT_TABLE = 'sessions';
/**
 * The largest `data` a row always holds: better-sqlite3 sets SQLITE_LIMIT_LENGTH, the longest
 * row, to V8's longest string (src/objects/database.cpp; 536,870,888 bytes on 64-bit), and the
 * id (128 bytes), owner (up to 768 bytes of UTF-8), expiry and row header take under 1 KiB of it.
 */
const MAX_DATA_BYTES = constants.MAX_STRING_LENGTH - 1024;
const DEFAULT_BUSY_TIMEOUT_MS = 5000;

/** The options, checked, with their defaults filled in. */
export interface Settings {
  path: string | undefined;
  database: BetterSqlite3.Database | undefined;
  names: SchemaNames;
  busyTimeoutMs: number;
  durability: 'normal' | 'full';
}

const KNOWN_OPTIONS = [
  'path',
  'database',
  'table',
  'busyTimeoutMs',
  'durability',
  'maxRecordBytes',
] as const satisfies readonly (keyof SqliteStoreOptions)[];

/** `options` checked as `method` (`open` or `probe`, which its errors name) checks them. */
export function normalizeOptions(options: SqliteStoreOptions, method: 'open' | 'probe'): Settings {
  const caller = `SqliteStore.${method}`;
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`${caller} needs an options object with path or database`);
  }
  assertKnownOptions(options, KNOWN_OPTIONS, caller);
  const { path, database } = options;
  if ((path === undefined) === (database === undefined)) {
    throw new TypeError('Give exactly one of options.path and options.database');
  }
  // better-sqlite3 opens '' as a private temporary database, which a typo should not get.
  if (path !== undefined && (typeof path !== 'string' || path === '')) {
    throw new TypeError(
      `options.path must be a non-empty string (':memory:' for an in-memory database), got ${describeValue(path)}`,
    );
  }
  if (path !== undefined && path !== ':memory:') assertFilePath(path);
  if (database !== undefined && !isDatabase(database)) {
    throw new TypeError('options.database must be an open better-sqlite3 Database');
  }
  // Its schema and pragmas would join the app's transaction, and WAL mode cannot be set in one.
  if (database?.inTransaction === true) {
    throw new TypeError(
      "options.database is inside a transaction: open the store between the app's transactions",
    );
  }
  const busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  assertDuration(busyTimeoutMs, 'busyTimeoutMs');
  const { maxRecordBytes } = options;
  if (maxRecordBytes !== undefined) {
    assertPositiveInteger(maxRecordBytes, 'maxRecordBytes');
    if (maxRecordBytes > MAX_DATA_BYTES) {
      throw new TypeError(
        `maxRecordBytes must be at most ${MAX_DATA_BYTES} (the largest data a row holds), got ${maxRecordBytes}`,
      );
    }
  }
  const durability = options.durability ?? 'normal';
  if (durability !== 'normal' && durability !== 'full') {
    throw new TypeError(`durability must be 'normal' or 'full', got ${describeValue(durability)}`);
  }
  return {
    path,
    database,
    names: schemaNames(options.table ?? DEFAULT_TABLE),
    busyTimeoutMs,
    durability,
  };
}

/** Refuses a `path` that cannot name the database file, before anything is touched. */
function assertFilePath(path: string): void {
  const shown = JSON.stringify(path);
  // better-sqlite3 trims the name: ' ' would be a temporary database, 'a.db ' the file a.db.
  if (path.trim() !== path) {
    throw new TypeError(
      `options.path must not begin or end with whitespace, which better-sqlite3 strips, got ${shown}`,
    );
  }
  // No filesystem takes one, and Node's error would come back as ERR_STORE_IO.
  if (path.includes('\0')) {
    throw new TypeError(`options.path must not contain a NUL character, got ${shown}`);
  }
  // SQLite would create the file 'a' for 'a/', which a later probe finds in the way of a directory.
  const last = path.split(sep === '\\' ? /[\\/]/ : '/').at(-1);
  if (last === '' || last === '.' || last === '..') {
    throw new TypeError(`options.path must name a file, not a directory, got ${shown}`);
  }
}

function isDatabase(value: unknown): value is BetterSqlite3.Database {
  const candidate = value as Partial<BetterSqlite3.Database> | null;
  return (
    typeof candidate === 'object' &&
    candidate !== null &&
    typeof candidate.prepare === 'function' &&
    typeof candidate.pragma === 'function' &&
    candidate.open === true
  );
}
