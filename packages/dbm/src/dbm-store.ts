import { closeSync, constants, mkdirSync, openSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  BaseStore,
  type BaseStoreOptions,
  type SessionRecord,
  type StoreCapabilities,
  type SweepProgress,
  type SweepResult,
  toStoreIoError,
  yieldToEventLoop,
} from '@sessile/core';
import { MAX_EXTENT_BYTES, MAX_ID_BYTES, RECORD_HEADER_BYTES } from './format.js';
import { GlobalLock, type GlobalLockStats } from './global-lock.js';
import { type FileInfo, HashFile, type SweepBatchResult } from './hash-file.js';
import { type StripedFileLockStats, StripedFileLocks } from './striped-file-locks.js';

/**
 * How `sweep` finds expired records.
 * - `'incremental'`: bounded batches from a cursor kept in the file; the global lock is released
 *   between batches and only the bucket entries (which carry each record's expiry) are read.
 * - `'full-scan'`: mod_python DbmSession's cleanup. One call holds the global lock from its
 *   first record to its last and reads and checks every record to learn its expiry.
 */
export type DbmCleanupMode = 'incremental' | 'full-scan';

export interface DbmStoreOptions extends BaseStoreOptions {
  /** The database file. Created when missing; lock files go in the directory `<path>.locks`. */
  path: string;
  /** How `sweep` works. Default `'incremental'`. */
  cleanup?: DbmCleanupMode;
  /** Lock files in the pool, at least 2: stripe 0 is the global lock, sessions share the rest. Default 32. */
  stripes?: number;
  /** How long the global lock stays held by a holder that stopped renewing it (it crashed). Default 10 000. */
  globalLockLeaseMs?: number;
  /** How long an operation waits for the global lock before rejecting with `ERR_LOCK_TIMEOUT`. Default 30 000. */
  globalLockWaitMs?: number;
  /** Flush to disk at each commit, so a power loss also keeps committed changes. Default false. */
  fsync?: boolean;
}

export interface DbmSweepStats {
  cleanup: DbmCleanupMode;
  scanned: number;
  removed: number;
  batches: number;
  /** Time the global lock was held for this sweep, summed over its holds, in ms. */
  globalLockHeldMs: number;
  /** The longest single hold of the global lock in this sweep, in ms: what other requests waited at most. */
  longestGlobalLockHoldMs: number;
}

export interface DbmStoreStats {
  cleanup: DbmCleanupMode;
  globalLock: GlobalLockStats;
  sessionLocks: StripedFileLockStats;
  /** The last sweep this process ran, if any. */
  lastSweep: DbmSweepStats | undefined;
  /** Interrupted changes of a crashed writer this process replayed from the journal. */
  journalRecoveries: number;
  /** Records a full-scan sweep could not decode. */
  undecodableRecords: number;
}

const DEFAULT_STRIPES = 32;
const DEFAULT_GLOBAL_LOCK_LEASE_MS = 10_000;
const DEFAULT_GLOBAL_LOCK_WAIT_MS = 30_000;
const INCREMENTAL_BATCH_ENTRIES = 500;
const FULL_SCAN_BATCH_ENTRIES = 1000;
/** Empty buckets cost a read each, so a batch also stops after this many. */
const SWEEP_BATCH_BUCKETS = 256;
const SCAN_BATCH_BUCKETS = 64;
const MAX_RECORD_BYTES_LIMIT = Math.min(
  1024 ** 3,
  MAX_EXTENT_BYTES - RECORD_HEADER_BYTES - MAX_ID_BYTES,
);

function assertOptions(options: DbmStoreOptions): void {
  if (typeof options !== 'object' || options === null)
    throw new TypeError('options must be an object');
  if (typeof options.path !== 'string' || options.path === '') {
    throw new TypeError('options.path must be a non-empty string');
  }
  const { cleanup, stripes, globalLockLeaseMs, globalLockWaitMs, maxRecordBytes } = options;
  if (cleanup !== undefined && cleanup !== 'incremental' && cleanup !== 'full-scan') {
    throw new TypeError(
      `options.cleanup must be 'incremental' or 'full-scan', got ${String(cleanup)}`,
    );
  }
  if (stripes !== undefined && (!Number.isInteger(stripes) || stripes < 2 || stripes > 65_536)) {
    throw new TypeError(
      `options.stripes must be an integer from 2 to 65536, got ${String(stripes)}`,
    );
  }
  for (const [name, value] of [
    ['globalLockLeaseMs', globalLockLeaseMs],
    ['globalLockWaitMs', globalLockWaitMs],
  ] as const) {
    if (
      value !== undefined &&
      (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value))
    ) {
      throw new TypeError(`options.${name} must be a positive number of ms, got ${String(value)}`);
    }
  }
  if (typeof maxRecordBytes === 'number' && maxRecordBytes > MAX_RECORD_BYTES_LIMIT) {
    throw new TypeError(`options.maxRecordBytes must be at most ${MAX_RECORD_BYTES_LIMIT}`);
  }
}

/**
 * Sessions in one file: an on-disk linear hash table with a redo journal, written in
 * TypeScript. Every operation takes a global lock shared by all processes on the host, as
 * mod_python's DbmSession did; session locks are a fixed pool of striped lock files.
 */
export class DbmStore extends BaseStore {
  readonly capabilities: StoreCapabilities = {
    shared: 'host',
    expiry: 'sweep',
    durable: true,
    expiryIndex: false,
  };
  readonly locks: StripedFileLocks;
  /** The absolute path of the database file. */
  readonly path: string;
  readonly cleanup: DbmCleanupMode;
  readonly #fd: number;
  readonly #file: HashFile;
  readonly #globalLock: GlobalLock;
  #lastSweep: DbmSweepStats | undefined;

  private constructor(options: DbmStoreOptions, path: string, fd: number) {
    super(options);
    this.path = path;
    this.cleanup = options.cleanup ?? 'incremental';
    this.#fd = fd;
    this.#file = new HashFile(fd, options.fsync === true);
    const lockDirectory = `${path}.locks`;
    this.#globalLock = new GlobalLock(
      lockDirectory,
      options.globalLockLeaseMs ?? DEFAULT_GLOBAL_LOCK_LEASE_MS,
      options.globalLockWaitMs ?? DEFAULT_GLOBAL_LOCK_WAIT_MS,
    );
    this.locks = new StripedFileLocks(lockDirectory, options.stripes ?? DEFAULT_STRIPES);
  }

  /** Opens (creating when missing) the database file at `options.path`. */
  static async open(options: DbmStoreOptions): Promise<DbmStore> {
    assertOptions(options);
    const path = resolve(options.path);
    let fd: number | undefined;
    let store: DbmStore | undefined;
    try {
      mkdirSync(`${path}.locks`, { recursive: true });
      fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600);
      store = new DbmStore(options, path, fd);
      const file = store.#file;
      store.#globalLock.removeOrphans();
      await store.#globalLock.run(() => file.initialize());
      return store;
    } catch (error) {
      if (fd !== undefined) closeSync(fd);
      if (store !== undefined) store.#globalLock.close();
      if (error instanceof TypeError) throw error;
      throw toStoreIoError(error, 'open');
    }
  }

  /** Counters of this process: lock use, collisions, the last sweep's lock holds. */
  stats(): DbmStoreStats {
    return {
      cleanup: this.cleanup,
      globalLock: this.#globalLock.stats(),
      sessionLocks: this.locks.stats(),
      lastSweep: this.#lastSweep && { ...this.#lastSweep },
      journalRecoveries: this.#file.recoveries,
      undecodableRecords: this.#file.undecodable,
    };
  }

  /** The file's size and table shape, read under the global lock. */
  info(): Promise<FileInfo> {
    return this.operation('info', () => this.#globalLock.run(() => this.#file.info()));
  }

  protected _get(id: string, now: number): Promise<SessionRecord | undefined> {
    return this.#globalLock.run(() => this.#file.get(id, now));
  }

  protected _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
  ): Promise<boolean> {
    return this.#globalLock.run(() => this.#file.set(id, record, only, now));
  }

  protected _touch(id: string, expiresAt: number, now: number): Promise<boolean> {
    return this.#globalLock.run(() => this.#file.touch(id, expiresAt, now));
  }

  protected _delete(id: string, now: number): Promise<boolean> {
    return this.#globalLock.run(() => this.#file.delete(id, now));
  }

  protected async _sweep(progress: SweepProgress): Promise<SweepResult> {
    const fullScan = this.cleanup === 'full-scan';
    const stats: DbmSweepStats = {
      cleanup: this.cleanup,
      scanned: 0,
      removed: 0,
      batches: 0,
      globalLockHeldMs: 0,
      longestGlobalLockHoldMs: 0,
    };
    this.#lastSweep = stats;
    const batchEntries = fullScan ? FULL_SCAN_BATCH_ENTRIES : INCREMENTAL_BATCH_ENTRIES;
    const batch = (entries: number): SweepBatchResult => {
      const result = this.#file.sweepBatch(entries, SWEEP_BATCH_BUCKETS, progress.now, fullScan);
      stats.batches++;
      stats.scanned += result.scanned;
      stats.removed += result.removed;
      progress.scanned += result.scanned;
      progress.removed += result.removed;
      return result;
    };
    const sweepLoop = async (
      next: (entries: number) => Promise<SweepBatchResult>,
    ): Promise<boolean> => {
      let origin: number | undefined;
      let wrapped = false;
      for (;;) {
        const entries = progress.nextBatchSize(batchEntries);
        if (entries === 0) return false;
        const result = await next(entries);
        origin ??= result.startBucket;
        if (result.passEnded) {
          // A pass whose kept records all outlive `now`, or a second pass end within this call.
          if (result.passDone || wrapped) return true;
          wrapped = true;
        } else if (wrapped && result.endBucket > origin) {
          // Wrapped around past where this call began: this call examined every bucket itself.
          return true;
        }
        await yieldToEventLoop();
      }
    };
    let done: boolean;
    if (fullScan) {
      const started = performance.now();
      try {
        done = await this.#globalLock.hold((renew) =>
          sweepLoop(async (entries) => {
            renew();
            return batch(entries);
          }),
        );
      } finally {
        stats.globalLockHeldMs = performance.now() - started;
        stats.longestGlobalLockHoldMs = stats.globalLockHeldMs;
      }
    } else {
      done = await sweepLoop((entries) =>
        this.#globalLock.run(() => {
          const started = performance.now();
          try {
            return batch(entries);
          } finally {
            const heldMs = performance.now() - started;
            stats.globalLockHeldMs += heldMs;
            stats.longestGlobalLockHoldMs = Math.max(stats.longestGlobalLockHoldMs, heldMs);
          }
        }),
      );
    }
    return progress.result(done);
  }

  protected async _count(now: number): Promise<number> {
    let live = 0;
    const state = await this.#globalLock.run(() => this.#file.startScan());
    let more = true;
    while (more) {
      more = await this.#globalLock.run(() =>
        this.#file.scanBatch(state, SCAN_BATCH_BUCKETS, (entry) => {
          if (entry.expiresAt > now) live++;
        }),
      );
    }
    return live;
  }

  protected async *_ids(now: number): AsyncIterable<string> {
    const state = await this.#globalLock.run(() => this.#file.startScan());
    let more = true;
    while (more) {
      const ids: string[] = [];
      more = await this.#globalLock.run(() =>
        this.#file.scanBatch(state, SCAN_BATCH_BUCKETS, (entry, readHead) => {
          if (entry.expiresAt <= now) return;
          const id = HashFile.idOf(entry, readHead());
          if (id !== undefined) ids.push(id);
        }),
      );
      yield* ids;
    }
  }

  protected _clear(): Promise<void> {
    return this.#globalLock.run(() => this.#file.clear());
  }

  protected async _close(): Promise<void> {
    this.#globalLock.close();
    closeSync(this.#fd);
  }
}
