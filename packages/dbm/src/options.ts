import {
  assertDuration,
  assertKnownOptions,
  assertPositiveInteger,
  type BaseStoreOptions,
  describeValue,
} from '@sessile/core/store';
import type { DbmDurability } from './file-io.js';
import { MAX_EXTENT_BYTES, MAX_ID_BYTES, MAX_OWNER_BYTES, RECORD_HEADER_BYTES } from './format.js';

/**
 * How `sweep` finds expired records.
 * - `'incremental'`: bounded batches from a cursor kept in the file; the global lock is released
 *   between batches and only the bucket entries (which carry each record's expiry) are read.
 * - `'full-scan'`: mod_python DbmSession's cleanup. One call holds the global lock from its
 *   first record to its last and reads and checks every record to learn its expiry.
 */
export type DbmSweepMode = 'incremental' | 'full-scan';

export interface DbmStoreOptions extends BaseStoreOptions {
  /** The database file. Created when missing; lock files go in the directory `<path>.locks`. */
  path: string;
  /** How `sweep` works. Default `'incremental'`. */
  sweepMode?: DbmSweepMode;
  /** Lock files in the pool, at least 2: stripe 0 is the global lock, sessions share the rest. Default 4096. */
  stripes?: number;
  /** How long the global lock stays held by a holder that stopped renewing it (it crashed). Default 10 000. */
  globalLockLeaseMs?: number;
  /**
   * How long an operation waits for the global lock before rejecting with `ERR_STORE_BUSY`;
   * 0 tries once. Default 30 000.
   */
  globalLockWaitMs?: number;
  /**
   * `'full'` flushes to disk (`fdatasync`) at each commit, so a power loss also keeps committed
   * changes; `'normal'` leaves that to the operating system. Default `'normal'`.
   */
  durability?: DbmDurability;
}

/** The options with their defaults filled in. */
export interface DbmSettings {
  path: string;
  sweepMode: DbmSweepMode;
  stripes: number;
  globalLockLeaseMs: number;
  globalLockWaitMs: number;
  durability: DbmDurability;
  maxRecordBytes: number | undefined;
}

const KNOWN_OPTIONS = [
  'path',
  'sweepMode',
  'stripes',
  'globalLockLeaseMs',
  'globalLockWaitMs',
  'durability',
  'maxRecordBytes',
] as const satisfies readonly (keyof DbmStoreOptions)[];

/** Options of earlier builds, refused with a pointer to what replaced them. */
const RENAMED_OPTIONS: Readonly<Record<string, string>> = {
  cleanup: "it is now 'sweepMode', with the same values",
  fsync: "it is now durability: 'full' (for fsync: true) or 'normal'",
};

export const MAX_STRIPES = 65_536;
/**
 * Another process may take the global lock over once its lease has ended, even from a live
 * holder: a lease shorter than a stalled hold (a loaded CPU, a long GC) lets two processes write
 * the file at once. With 1 or 2 ms, 4 processes writing 3,000 sessions each kept a third.
 */
const MIN_GLOBAL_LOCK_LEASE_MS = 1000;
const MAX_RECORD_BYTES_LIMIT = Math.min(
  1024 ** 3,
  MAX_EXTENT_BYTES - RECORD_HEADER_BYTES - MAX_ID_BYTES - MAX_OWNER_BYTES,
);

/**
 * Validates the options (misuse is a `TypeError`, before anything touches the disk) and fills
 * defaults, as `method` (`open` or `probe`, which its errors name) checks them.
 */
export function resolveSettings(options: DbmStoreOptions, method: 'open' | 'probe'): DbmSettings {
  const caller = `DbmStore.${method}`;
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`${caller} needs an options object with a path`);
  }
  for (const [name, hint] of Object.entries(RENAMED_OPTIONS)) {
    if (Object.hasOwn(options, name)) {
      throw new TypeError(`${caller}: unknown option '${name}'; ${hint}`);
    }
  }
  assertKnownOptions(options, KNOWN_OPTIONS, caller);
  if (typeof options.path !== 'string' || options.path === '') {
    throw new TypeError(
      `options.path must be a non-empty string naming a file, got ${describeValue(options.path)}`,
    );
  }
  // No file name can hold one: Node refuses it, with an error that does not name the option.
  if (options.path.includes('\0')) {
    throw new TypeError(
      `options.path must not contain a NUL character, got ${describeValue(options.path)}`,
    );
  }
  const settings: DbmSettings = {
    path: options.path,
    sweepMode: options.sweepMode ?? 'incremental',
    stripes: options.stripes ?? 4096,
    globalLockLeaseMs: options.globalLockLeaseMs ?? 10_000,
    globalLockWaitMs: options.globalLockWaitMs ?? 30_000,
    durability: options.durability ?? 'normal',
    maxRecordBytes: options.maxRecordBytes,
  };
  if (settings.sweepMode !== 'incremental' && settings.sweepMode !== 'full-scan') {
    throw new TypeError(
      `sweepMode must be 'incremental' or 'full-scan', got ${describeValue(settings.sweepMode)}`,
    );
  }
  const { stripes } = settings;
  if (!Number.isInteger(stripes) || stripes < 2 || stripes > MAX_STRIPES) {
    throw new TypeError(
      `stripes must be an integer from 2 to ${MAX_STRIPES}, got ${describeValue(stripes)}`,
    );
  }
  assertDuration(settings.globalLockLeaseMs, 'globalLockLeaseMs', { zero: false });
  if (settings.globalLockLeaseMs < MIN_GLOBAL_LOCK_LEASE_MS) {
    throw new TypeError(
      `globalLockLeaseMs must be at least ${MIN_GLOBAL_LOCK_LEASE_MS} ms, or other processes take the lock over from a live holder in the middle of its writes, got ${describeValue(settings.globalLockLeaseMs)}`,
    );
  }
  assertDuration(settings.globalLockWaitMs, 'globalLockWaitMs');
  if (settings.durability !== 'normal' && settings.durability !== 'full') {
    throw new TypeError(
      `durability must be 'normal' or 'full', got ${describeValue(settings.durability)}`,
    );
  }
  const { maxRecordBytes } = settings;
  if (maxRecordBytes !== undefined) {
    assertPositiveInteger(maxRecordBytes, 'maxRecordBytes');
    if (maxRecordBytes > MAX_RECORD_BYTES_LIMIT) {
      throw new TypeError(
        `maxRecordBytes must be at most ${MAX_RECORD_BYTES_LIMIT}, got ${describeValue(maxRecordBytes)}`,
      );
    }
  }
  return settings;
}
