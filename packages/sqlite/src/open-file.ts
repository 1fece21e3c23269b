import { accessSync, constants, existsSync, type Stats, statSync } from 'node:fs';
import { open as openFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { isSessionError, SessionError } from '@sessile/core';
import {
  errorMessage,
  fileKindOf,
  probeStoreFile,
  pseudoFilesystemOf,
  type StoreProbe,
  UnlinkGuard,
} from '@sessile/core/store';
import type BetterSqlite3 from 'better-sqlite3';
import Database from 'better-sqlite3';
import {
  linkIntoMissingDirectory,
  missingDirectoryOf,
  probeNewDirectory,
} from './database-directory.js';
import { retryWhileBusy, setBusySlice } from './executor.js';
import type { Settings } from './options.js';
import { inspectSchema, type SchemaState } from './schema.js';
import { pragmaNumber } from './statements.js';

const SQLITE_HEADER = Buffer.from('SQLite format 3\0', 'latin1');

/** Failures of an open that the filesystem can explain: a missing or read-only place. */
const FILESYSTEM_CODES =
  /^(SQLITE_(CANTOPEN|READONLY|IOERR|PERM|AUTH)|ENOENT$|ENOTDIR$|EACCES$|EPERM$|EROFS$)/;

/** `ERR_STORE_IO` for the database file at `path`, its message naming the path and the reason. */
export function cannotOpen(path: string, reason: string, cause?: unknown): SessionError {
  return new SessionError('ERR_STORE_IO', `Cannot open SQLite database ${path}: ${reason}`, {
    cause,
  });
}

/**
 * Refuses, before anything opens it, a path that cannot hold a database: one on a kernel
 * pseudo-filesystem such as `/proc` (whose files SQLite would write to), and an existing
 * directory, device, FIFO or socket. Only `stat`s, so a FIFO or device is never opened.
 */
export function assertDatabasePath(path: string): void {
  const pseudo = pseudoFilesystemOf(path);
  if (pseudo !== undefined) {
    throw cannotOpen(
      path,
      `it is on a ${pseudo} filesystem, whose files are kernel interfaces, not storage`,
    );
  }
  const stats = statIfPresent(path);
  if (stats !== undefined && !stats.isFile()) {
    throw cannotOpen(path, `it is ${fileKindOf(stats)}, not a regular file`);
  }
}

/**
 * Reads the 16-byte header of an existing file, so a foreign file is refused before SQLite
 * touches it. Resolves true when the file exists and holds a database.
 */
export async function assertSqliteFile(path: string): Promise<boolean> {
  let handle: Awaited<ReturnType<typeof openFile>>;
  try {
    // Non-blocking, so a FIFO swapped in since assertDatabasePath cannot stall the open.
    handle = await openFile(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw openFailure(error, path);
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw cannotOpen(path, `it is ${fileKindOf(stats)}, not a regular file`);
    // SQLite treats an empty file as a new database.
    if (stats.size === 0) return false;
    const header = Buffer.alloc(SQLITE_HEADER.length);
    const { bytesRead } = await handle.read(header, 0, header.length, 0);
    if (bytesRead < header.length || !header.equals(SQLITE_HEADER)) {
      throw new SessionError(
        'ERR_STORE_IO',
        `${path} is not a SQLite database; the store left it unmodified`,
      );
    }
    return true;
  } catch (error) {
    throw openFailure(error, path);
  } finally {
    await handle.close();
  }
}

/**
 * An error from opening the database as `ERR_STORE_IO`. With a `path`, its message names it and,
 * where SQLite only says "unable to open database file", the reason the filesystem gives.
 */
export function openFailure(error: unknown, path: string | undefined): SessionError {
  if (isSessionError(error)) return error;
  const detail = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown } | null)?.code;
  // better-sqlite3 loads its compiled module at the first open: nothing is wrong with the file.
  if (code === 'ERR_DLOPEN_FAILED' || detail.startsWith('Could not locate the bindings file')) {
    const what = path === undefined ? 'the database' : path;
    return new SessionError(
      'ERR_STORE_IO',
      `Cannot open SQLite database ${what}: better-sqlite3's native module is not built for this Node.js (${process.version}), as after an install with --ignore-scripts or a Node.js upgrade; run npm rebuild better-sqlite3 (${detail.split('\n')[0]})`,
      { cause: error },
    );
  }
  if (code === 'SQLITE_NOTADB') {
    const what = path === undefined ? 'The database' : path;
    return new SessionError(
      'ERR_STORE_IO',
      `${what} is not a SQLite database; the store left it unmodified`,
      { cause: error },
    );
  }
  if (path === undefined || path === ':memory:') {
    return new SessionError('ERR_STORE_IO', `Opening the SQLite store failed: ${detail}`, {
      cause: error,
    });
  }
  // better-sqlite3 throws a TypeError of its own for a missing directory.
  const explainable =
    error instanceof TypeError || (typeof code === 'string' && FILESYSTEM_CODES.test(code));
  const reason = explainable ? explain(path) : undefined;
  return cannotOpen(path, reason === undefined ? detail : `${reason} (${detail})`, error);
}

/**
 * Why the file at `path` cannot be opened for reading and writing in WAL mode, which also
 * creates `<path>-wal` and `<path>-shm` beside it; `undefined` when the filesystem shows no reason.
 */
function explain(path: string): string | undefined {
  const directory = dirname(resolve(path));
  let directoryStats: Stats;
  try {
    directoryStats = statSync(directory);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return `its directory ${directory} does not exist`;
    if (code === 'ENOTDIR')
      return `its directory ${directory} does not exist: part of it is a file`;
    if (code === 'EACCES') return `its directory ${directory} cannot be reached: permission denied`;
    return `its directory ${directory} cannot be read: ${errorMessage(error)}`;
  }
  if (!directoryStats.isDirectory()) return `${directory} is not a directory`;
  let stats: Stats | undefined;
  try {
    stats = statIfPresent(path);
  } catch {
    return undefined;
  }
  if (stats !== undefined && !stats.isFile())
    return `it is ${fileKindOf(stats)}, not a regular file`;
  const creates =
    stats === undefined ? 'the database and its -wal and -shm files' : 'its -wal and -shm files';
  const directoryAccess = accessError(directory, constants.W_OK | constants.X_OK);
  if (directoryAccess === 'EROFS') {
    return `its directory ${directory} is on a read-only filesystem, and SQLite must create ${creates} there`;
  }
  if (directoryAccess === 'EACCES' || directoryAccess === 'EPERM') {
    return `its directory ${directory} is read-only to this process (permission denied), and SQLite must create ${creates} there`;
  }
  if (stats === undefined) return undefined;
  return unwritableFile(path);
}

/** Why this process may not read and write the existing file at `path`, or `undefined`. */
function unwritableFile(path: string): string | undefined {
  const fileAccess = accessError(path, constants.R_OK | constants.W_OK);
  if (fileAccess === 'EROFS') return 'it is on a read-only filesystem';
  if (fileAccess === 'EACCES' || fileAccess === 'EPERM') {
    return 'this process may not read and write it (permission denied)';
  }
  return undefined;
}

/**
 * Why the connection cannot write its database, as far as that shows without a write: opened
 * `readonly: true`, `PRAGMA query_only` on, or a file this process may not write. `location`
 * is its file; `undefined` for a temporary or in-memory database.
 */
function readOnlyReason(
  db: BetterSqlite3.Database,
  location: string | undefined,
): string | undefined {
  if (db.readonly) {
    return 'the connection was opened with readonly: true, and the store writes sessions and locks to it';
  }
  if (pragmaNumber(db, 'query_only') !== 0) {
    return 'the connection has PRAGMA query_only on, and the store writes sessions and locks to it';
  }
  return location === undefined ? undefined : unwritableFile(location);
}

function readOnlyError(
  location: string | undefined,
  detail: string,
  cause?: unknown,
): SessionError {
  if (location === undefined) {
    return new SessionError('ERR_STORE_IO', `Opening the SQLite store failed: ${detail}`, {
      cause,
    });
  }
  return cannotOpen(location, detail, cause);
}

/**
 * `open`'s refusal of an app's connection that cannot write, for `probe`, which writes nothing:
 * the reasons that show without a write.
 */
export function readOnlyRefusal(db: BetterSqlite3.Database): StoreProbe | undefined {
  const file = db.memory ? '' : databaseFile(db);
  const reason = readOnlyReason(db, file === '' ? undefined : file);
  if (reason === undefined) return undefined;
  const error = readOnlyError(file === '' ? undefined : file, reason);
  return { state: 'refused', reason: error.message, cause: error };
}

/**
 * Refuses a connection that cannot write its database: one opened `readonly: true`, one with
 * `PRAGMA query_only` on, or a file SQLite opened read-only without a word because this process
 * may not write it. `BEGIN IMMEDIATE` succeeds on such a connection, so the store's first write
 * would be the first to fail. The probe rewrites `user_version` to its own value in a
 * transaction it rolls back, so it changes nothing; SQLite's refusal becomes the `cause`.
 * `location` is the file the message names; `undefined` for a temporary or in-memory database.
 */
export function assertWritable(db: BetterSqlite3.Database, location: string | undefined): void {
  const version = pragmaNumber(db, 'user_version');
  try {
    db.prepare('BEGIN IMMEDIATE').run();
    db.pragma(`user_version = ${version}`);
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (typeof code !== 'string' || !code.startsWith('SQLITE_READONLY')) throw error;
    const reason = readOnlyReason(db, location) ?? 'SQLite opened it read-only';
    throw readOnlyError(location, `${reason} (${errorMessage(error)})`, error);
  } finally {
    if (db.inTransaction) db.prepare('ROLLBACK').run();
  }
}

function accessError(path: string, mode: number): string | undefined {
  try {
    accessSync(path, mode);
    return undefined;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? 'EIO';
  }
}

function statIfPresent(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw cannotOpen(path, errorMessage(error), error);
  }
}

/**
 * Checks the schema of an existing file, changing nothing. With journal files beside it (a hot
 * one would be rolled back), through a read-only connection, which can never write to the file,
 * not even the checkpoint SQLite runs when a WAL database's last connection closes. Without,
 * through a connection that may write but does not: a read-only connection to a WAL database
 * would leave `-wal` and `-shm` files behind (it cannot remove them), which one that may write
 * removes on close when it is the last, with no frame to checkpoint.
 */
export async function inspectExisting(settings: Settings): Promise<SchemaState> {
  const path = settings.path as string;
  const readonly = ['-wal', '-shm', '-journal'].some((suffix) => existsSync(path + suffix));
  let probe: BetterSqlite3.Database;
  try {
    probe = new Database(settings.path, { readonly, fileMustExist: true });
  } catch (error) {
    throw openFailure(error, settings.path);
  }
  try {
    setBusySlice(probe, settings.busyTimeoutMs);
    return await retryWhileBusy(() => inspectSchema(probe, settings.names), settings.busyTimeoutMs);
  } catch (error) {
    throw error instanceof TypeError ? error : openFailure(error, settings.path);
  } finally {
    probe.close();
  }
}

/**
 * `SqliteStore.probe` for a database file: what `open` would find at `settings.path`, read
 * through a connection that writes nothing (see `inspectExisting`), so nothing is changed.
 */
export async function probeDatabaseFile(settings: Settings): Promise<StoreProbe> {
  const path = settings.path as string;
  // `open` makes a missing directory, so only where it cannot is that a refusal. Looked at
  // first: an open making it at this moment must not turn the answer into a refusal.
  const directory =
    pseudoFilesystemOf(path) === undefined ? await missingDirectoryOf(path) : undefined;
  if (directory !== undefined) return probeNewDirectory(path, directory);
  const missing = await probeStoreFile(path);
  if (missing !== undefined) {
    if (missing.state !== 'absent') return missing;
    const dangling = await linkIntoMissingDirectory(path);
    return dangling === undefined
      ? missing
      : { state: 'refused', reason: `${path}: ${dangling.reason}`, cause: dangling.cause };
  }
  try {
    const holdsDatabase = await assertSqliteFile(path);
    // The store writes to the file, and SQLite makes its -wal and -shm files beside it.
    const unwritable = explain(path);
    if (unwritable !== undefined) return { state: 'refused', reason: `${path}: ${unwritable}` };
    if (!holdsDatabase) return { state: 'absent', reason: `${path} is an empty file` };
    const schema = await inspectExisting(settings);
    if (schema.presentVersion > 0) return { state: 'present' };
    return {
      state: 'absent',
      reason: `${path} is an SQLite database with no '${settings.names.records}' table`,
    };
  } catch (error) {
    return refusedBy(error);
  }
}

/** What `probe` answers where `open` would fail with `error`; a `TypeError` (misuse) it rethrows. */
export function refusedBy(error: unknown): StoreProbe {
  if (error instanceof TypeError) throw error;
  return { state: 'refused', reason: errorMessage(error), cause: error };
}

/**
 * The database's file as an absolute path, as SQLite resolved it when the connection opened; ''
 * for one in memory. `db.name` is the name as given, which a later `process.chdir` makes point
 * elsewhere when it is relative.
 */
export function databaseFile(db: BetterSqlite3.Database): string {
  const list = db.pragma('database_list') as Array<{ name: string; file: string }>;
  return list.find((entry) => entry.name === 'main')?.file ?? '';
}

/** Refuses writes once the database file (or, off Linux, its directory) is deleted while open. */
export function guardAgainstUnlink(file: string): UnlinkGuard | undefined {
  return UnlinkGuard.open(file, 'file', (watched) => {
    const what =
      watched === resolve(file)
        ? `SQLite database ${watched} was deleted`
        : `The directory ${watched} of SQLite database ${resolve(file)} was deleted`;
    return `${what} while the store had it open. A write now would go to a file that no later open can find, so the store refuses writes; reads answer from the deleted file until close(). Close the store and open it on a path that exists`;
  });
}
