import { lstat, readdir, realpath } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import {
  isSessionError,
  MemoryStore,
  SessionError,
  type SessionRecord,
  type SessionStore,
  type StoreProbe,
} from '@sessile/core';
import { MAX_DATE_MS } from '@sessile/core/store';
import {
  assertCreatable,
  type OpenOptions,
  openStore,
  parseStoreAddress,
  probeStore,
  type StoreAddress,
} from './addresses.js';
import { requireDriver } from './resolve.js';
import { quoteIdentifier } from './sql.js';

/** Opens the store at `text`, runs `work`, and closes it whatever happens. */
export async function withStore<T>(
  text: string,
  options: OpenOptions,
  work: (store: SessionStore, address: StoreAddress) => Promise<T>,
): Promise<T> {
  const address = parseStoreAddress(text);
  const store = await openStore(address, options);
  try {
    return await work(store, address);
  } finally {
    await store.close();
  }
}

/** The target of a copy or an import, with what its store's `probe` found there. */
export interface CheckedTarget {
  readonly address: StoreAddress;
  readonly probe: StoreProbe;
}

/**
 * Asks the target's store whether it could open or make a store at `address`, before the command
 * opens its source: a name the store refuses (a bad PostgreSQL table name, exit 2) or a place it
 * cannot make a store of (a directory of other files, no right to create a table, exit 1) ends
 * the command before a record is read, in the store's own words.
 */
export async function checkTarget(
  address: StoreAddress,
  dryRun: boolean | undefined,
): Promise<CheckedTarget> {
  const probe = await probeStore(address);
  assertCreatable(address, probe, Boolean(dryRun));
  return { address, probe };
}

/**
 * `withStore` for a target `checkTarget` passed, created when missing. A dry run creates
 * nothing: where the target is not there yet, it counts against an empty store in memory.
 */
export async function withTarget<T>(
  { address, probe }: CheckedTarget,
  options: Omit<OpenOptions, 'mustExist'> & { dryRun?: boolean | undefined },
  work: (store: SessionStore, address: StoreAddress) => Promise<T>,
): Promise<T> {
  if (options.dryRun && probe.state === 'absent') return work(await MemoryStore.open(), address);
  const store = await openStore(address, { ...options, mustExist: false });
  try {
    return await work(store, address);
  } finally {
    await store.close();
  }
}

/**
 * Why a record read from a store is skipped instead of ending the command, or `undefined` for a
 * failure that must end it: a damaged record, one over the limit the store was opened with, or
 * an id the store lists but refuses to read (a row inserted by hand into an SQL table).
 */
export function unreadableReason(error: unknown): 'corrupt' | 'tooLarge' | undefined {
  if (isSessionError(error, 'ERR_CORRUPT_RECORD')) return 'corrupt';
  if (isSessionError(error, 'ERR_INVALID_SESSION_ID')) return 'corrupt';
  if (isSessionError(error, 'ERR_RECORD_TOO_LARGE')) return 'tooLarge';
  return undefined;
}

/**
 * `store.get(id)`, rejecting with `ERR_CORRUPT_RECORD` a record whose expiry is not a finite
 * time, and with `ERR_RECORD_TOO_LARGE` a record over the limit the store was
 * opened with (`--max-record-bytes`), as `FileStore` does itself: the other stores check the
 * limit only where they write, and a store an app opened with a higher limit holds larger ones.
 */
export async function readRecord(
  store: SessionStore,
  id: string,
): Promise<SessionRecord | undefined> {
  const record = await store.get(id).catch((error: unknown) => {
    // A store's get refuses with it only a record in a newer format than this release reads.
    if (!isSessionError(error, 'ERR_UNSUPPORTED')) throw error;
    throw new SessionError(
      'ERR_UNSUPPORTED',
      `${error.message}: a newer release wrote it; upgrade @sessile/cli and the store's package`,
      { cause: error },
    );
  });
  // No store may write one (set refuses it), so it was edited by hand: a target would refuse it.
  if (record !== undefined && !Number.isFinite(record.expiresAt)) {
    throw new SessionError('ERR_CORRUPT_RECORD', 'Record expires at no finite time');
  }
  if (record !== undefined && record.data.byteLength > store.maxRecordBytes) {
    throw new SessionError(
      'ERR_RECORD_TOO_LARGE',
      `Record of ${record.data.byteLength} bytes exceeds the store's limit of ${store.maxRecordBytes} bytes`,
    );
  }
  return record;
}

/**
 * `readRecord` for a copy: a record whose expiry is later than a Date can hold (an SQL edit of
 * its expiry) is shown by `stats` and `show`, but no target store keeps it, so it is unreadable
 * here, skipped, rather than a bad argument to the target that ends the run.
 */
export async function readRecordToCopy(
  store: SessionStore,
  id: string,
): Promise<SessionRecord | undefined> {
  const record = await readRecord(store, id);
  if (record !== undefined && record.expiresAt > MAX_DATE_MS) {
    throw new SessionError('ERR_CORRUPT_RECORD', 'Record expires later than a Date can hold');
  }
  return record;
}

/**
 * Records the store counts as live but `ids()` cannot name, where the CLI can tell, else `null`.
 * LevelStore's `count()` counts a record under a key no session id can have, which its `ids()`
 * leaves out; the other stores' `count()` counts exactly what `ids()` lists. A LevelDB directory
 * is this process's alone while open, so during the pass only expiry changes it, which lowers
 * `count()`: taken after the pass, `count() - listed` is never more than there are.
 */
export async function unnamedRecords(
  store: SessionStore,
  address: StoreAddress,
  listed: number,
): Promise<number | null> {
  if (address.scheme !== 'level') return null;
  return Math.max(0, (await store.count()) - listed);
}

/** An AbortSignal that SIGINT and SIGTERM abort, so long commands stop at a record boundary. */
export function interruptSignal(): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    dispose() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

async function sizeOf(path: string): Promise<number> {
  const info = await lstat(path);
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const entry of await readdir(path)) total += await sizeOf(join(path, entry));
  return total;
}

/** What stores keep beside their path: SQLite's journal files, dbm's and the file store's locks. */
const SIBLING_SUFFIXES = ['-wal', '-shm', '-journal', '.locks', '.lock'];

/** Bytes on disk of a path store: its file or directory, and the siblings it keeps. */
export async function sizeOnDisk(linkedPath: string): Promise<number> {
  // Reached through a symbolic link, the store is measured where it is, beside its siblings.
  const path = await realpath(linkedPath);
  let total = await sizeOf(path);
  const name = basename(path);
  for (const entry of await readdir(dirname(path))) {
    if (SIBLING_SUFFIXES.some((suffix) => entry === `${name}${suffix}`)) {
      total += await sizeOf(join(dirname(path), entry)).catch(() => 0);
    }
  }
  return total;
}

interface ReadonlyDatabase {
  prepare(sql: string): { get(...params: unknown[]): unknown };
  close(): void;
}

/**
 * Expired records still stored, where the CLI can tell without the store's help: none for a
 * store that expires natively, a count through the expiry index for SQLite, else `null`.
 */
export async function expiredNotSwept(
  store: SessionStore,
  address: StoreAddress,
  now: number,
): Promise<number | null> {
  if (store.capabilities.expiry === 'native') return 0;
  if (address.scheme !== 'sqlite' || address.path === undefined) return null;
  const Database = requireDriver<new (path: string, options: object) => ReadonlyDatabase>(
    'better-sqlite3',
    ['@sessile/sqlite'],
    'Counting expired SQLite records',
  );
  const db = new Database(address.path, { readonly: true, fileMustExist: true });
  try {
    const table = (address.options.table as string | undefined) ?? 'sessions';
    const row = db
      .prepare(`SELECT COUNT(*) AS n FROM ${quoteIdentifier(table)} WHERE expires_at <= ?`)
      .get(now) as { n: number };
    return row.n;
  } finally {
    db.close();
  }
}
