import { constants } from 'node:fs';
import { access, readdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { StoreAddress } from './addresses.js';
import { CliError, EXIT } from './exit-codes.js';
import { withPostgresClient } from './postgres-client.js';

/** The root of a new ext4 filesystem holds it; neither FileStore nor LevelStore counts it as another file. */
const LOST_AND_FOUND = 'lost+found';

/** The names LevelDB gives its own files, which LevelStore's open accepts in a directory without `CURRENT`. */
const LEVELDB_FILE = /^(?:CURRENT|LOCK|LOG|LOG\.old|MANIFEST-\d+|\d+\.(?:log|ldb|sst|dbtmp))$/;

/** Why the store's `open()` could not make one at the target, with the errno behind it. */
interface Refusal {
  why: string;
  cause?: unknown;
}

function errnoOf(error: unknown): string {
  return (error as NodeJS.ErrnoException | undefined)?.code ?? 'unreadable';
}

/** `access(path, W_OK | X_OK)`: whether this process may make files in the directory `path`. */
async function unwritable(directory: string): Promise<Refusal | undefined> {
  try {
    await access(directory, constants.W_OK | constants.X_OK);
    return undefined;
  } catch (error) {
    return { why: `${directory} cannot be written (${errnoOf(error)})`, cause: error };
  }
}

/**
 * Where `mkdir(path, { recursive: true })` would make directories: the nearest directory above
 * `path` that is there must be one this process may write in.
 */
async function cannotMakeDirectories(path: string): Promise<Refusal | undefined> {
  for (let at = dirname(path); ; at = dirname(at)) {
    try {
      if (!(await stat(at)).isDirectory()) return { why: `${at} is not a directory` };
      return unwritable(at);
    } catch (error) {
      const code = errnoOf(error);
      if (code === 'ENOTDIR')
        return { why: `${at} is inside a file, not a directory`, cause: error };
      if (code !== 'ENOENT' || dirname(at) === at) {
        return { why: `${at} (${code})`, cause: error };
      }
    }
  }
}

/**
 * A directory store (FileStore, LevelStore): made with its parents where missing; taken where it
 * is an empty directory, or one holding only `ownFiles`; refused where it is a file or holds others.
 */
async function cannotOpenDirectory(
  path: string,
  kind: string,
  ownFiles: (name: string) => boolean,
): Promise<Refusal | undefined> {
  let names: string[];
  try {
    if (!(await stat(path)).isDirectory()) return { why: `${path} is not a directory` };
    names = await readdir(path);
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return cannotMakeDirectories(path);
    return { why: `${path} (${errnoOf(error)})`, cause: error };
  }
  const others = names.filter((name) => name !== LOST_AND_FOUND && !ownFiles(name));
  if (others.length > 0) return { why: `${path} holds other files and is not ${kind}` };
  return unwritable(path);
}

/**
 * A single-file store (SqliteStore, DbmStore): made in a directory that is there, as `open(2)`
 * makes a file; where the file is there already (an SQLite file without the sessions table), it
 * must be writable, as the store adds its table.
 */
async function cannotOpenFile(path: string): Promise<Refusal | undefined> {
  try {
    if (!(await stat(path)).isFile()) return { why: `${path} is not a regular file` };
    await access(path, constants.W_OK);
  } catch (error) {
    const code = errnoOf(error);
    if (code !== 'ENOENT') return { why: `${path} (${code})`, cause: error };
    const directory = dirname(path);
    try {
      if (!(await stat(directory)).isDirectory()) return { why: `${directory} is not a directory` };
    } catch (statError) {
      return { why: `${directory} (${errnoOf(statError)})`, cause: statError };
    }
  }
  return unwritable(dirname(path));
}

/**
 * A PostgreSQL table that is not there: PostgresStore's open creates it, and its schema when
 * that is missing too, which takes the CREATE privilege on the schema or on the database.
 */
async function cannotCreateTable(
  address: StoreAddress,
  table: { schema: string; name: string },
): Promise<Refusal | undefined> {
  const { rows } = await withPostgresClient(address, (client) =>
    client.query(
      `SELECT n.oid IS NOT NULL AS schema_exists,
         CASE WHEN n.oid IS NOT NULL THEN has_schema_privilege(n.oid, 'CREATE')
           ELSE has_database_privilege(current_database(), 'CREATE') END AS allowed
       FROM (SELECT 1) AS one LEFT JOIN pg_namespace AS n ON n.nspname = $1`,
      [table.schema],
    ),
  );
  const row = rows[0];
  if (row?.allowed === true) return undefined;
  return {
    why:
      row?.schema_exists === true
        ? `table ${table.schema}.${table.name} (it does not exist, and this user may not create tables in schema ${table.schema})`
        : `table ${table.schema}.${table.name} (neither it nor schema ${table.schema} exists, and this user may not create schemas in the database)`,
  };
}

async function whyNotCreatable(address: StoreAddress): Promise<Refusal | undefined> {
  const { path, table } = address;
  switch (address.scheme) {
    case 'file':
      if (path === undefined) return undefined;
      return cannotOpenDirectory(path, 'a file store', () => false);
    case 'level':
      if (path === undefined) return undefined;
      return cannotOpenDirectory(path, 'a LevelDB database', (name) => LEVELDB_FILE.test(name));
    case 'sqlite':
    case 'dbm':
      return path === undefined ? undefined : cannotOpenFile(path);
    case 'postgres':
      return table === undefined ? undefined : cannotCreateTable(address, table);
    case 'redis':
      // A prefix without keys is an empty store: there is nothing to create.
      return undefined;
  }
}

/**
 * Rejects a target that is not a store yet where the real run's `open()` would fail to make one
 * there (a path inside a file, a directory that holds other files, a missing directory for a
 * single-file store, no right to create a table), without creating anything: what a dry run
 * checks in place of that open.
 */
export async function assertCreatable(address: StoreAddress): Promise<void> {
  const refusal = await whyNotCreatable(address);
  if (refusal === undefined) return;
  throw new CliError(
    `${address.display}: cannot make a store at ${refusal.why}`,
    EXIT.failure,
    'ERR_STORE_IO',
    { cause: refusal.cause },
  );
}
