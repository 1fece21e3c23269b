import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { StoreAddress } from './addresses.js';
import { CliError, EXIT } from './exit-codes.js';
import { withPostgresClient } from './postgres-client.js';
import { requireDriver } from './resolve.js';
import { quoteIdentifier } from './sql.js';

/** Whether the sessions table is there; asked before the store's `open()`, which creates it. */
async function tableExists(
  address: StoreAddress,
  table: { schema: string; name: string },
): Promise<boolean> {
  const { rows } = await withPostgresClient(address, (client) =>
    client.query('SELECT to_regclass($1) IS NOT NULL AS present', [
      `${quoteIdentifier(table.schema)}.${quoteIdentifier(table.name)}`,
    ]),
  );
  return rows[0]?.present === true;
}

/**
 * What of the store is not there, or `undefined` when it is. A Redis store is always there: a
 * prefix without keys is an empty store, and opening one creates nothing.
 */
async function whatIsMissing(
  address: StoreAddress,
): Promise<{ what: string; cause?: unknown } | undefined> {
  if (address.path !== undefined) {
    try {
      await stat(address.path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
      return { what: `${address.path} (${code})`, cause: error };
    }
    return notAStoreYet(address, address.path);
  }
  const table = address.table;
  if (table !== undefined && !(await tableExists(address, table))) {
    return { what: `table ${table.schema}.${table.name} (it does not exist)` };
  }
  return undefined;
}

interface SqliteDatabase {
  prepare(sql: string): { get(...params: unknown[]): unknown };
  close(): void;
}

/**
 * What a path that is there lacks to be a store the scheme's `open()` would open as it is,
 * rather than turn into one: an SQLite file without the sessions table (an app's own database,
 * say), a path with no LevelDB at it, or a directory that is not a file store. dbm refuses what
 * is not its own.
 */
async function notAStoreYet(
  address: StoreAddress,
  path: string,
): Promise<{ what: string; cause?: unknown } | undefined> {
  if (address.scheme === 'level') {
    return (await exists(join(path, 'CURRENT')))
      ? undefined
      : { what: `${path} (no LevelDB there)` };
  }
  if (address.scheme === 'file') {
    // FileStore makes its guards directory at every open; without one, the directory is
    // someone else's, and the store's sweep would unlink files in its one-letter subdirectories.
    return (await exists(join(path, FILE_STORE_GUARDS)))
      ? undefined
      : { what: `${path} (no file store there)` };
  }
  if (address.scheme !== 'sqlite') return undefined;
  const Database = requireDriver<new (path: string, options: object) => SqliteDatabase>(
    'better-sqlite3',
    ['@sessile/sqlite'],
    'The sqlite: store',
  );
  // A file SQLite cannot read is left to the store's `open()`, which names what is wrong with it.
  let db: SqliteDatabase;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch {
    return undefined;
  }
  try {
    const table = db
      .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?")
      .get(SQLITE_TABLE);
    return table === undefined
      ? { what: `${path} (an SQLite file with no '${SQLITE_TABLE}' table)` }
      : undefined;
  } catch {
    return undefined;
  } finally {
    db.close();
  }
}

/** The directory every FileStore keeps its write guards in. */
const FILE_STORE_GUARDS = '.guards';

/** SqliteStore's default sessions table, the one a `sqlite:` address names. */
const SQLITE_TABLE = 'sessions';

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

export async function storeExists(address: StoreAddress): Promise<boolean> {
  return (await whatIsMissing(address)) === undefined;
}

/** Refuses a store that is not there, so a command that only reads one never creates it. */
export async function requireExistingStore(address: StoreAddress): Promise<void> {
  const missing = await whatIsMissing(address);
  if (missing === undefined) return;
  throw new CliError(
    `${address.display}: no store at ${missing.what}`,
    EXIT.failure,
    'ERR_STORE_IO',
    { cause: missing.cause },
  );
}
