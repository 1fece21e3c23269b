import {
  closeSync,
  constants,
  existsSync,
  fstatSync,
  openSync,
  realpathSync,
  type Stats,
  statSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import {
  type HeldLease,
  isSessionError,
  type OwnedSession,
  type SessionRecord,
  type StoreCapabilities,
  type StoreProbe,
  type SweepResult,
} from '@sessile/core';
import {
  BaseStore,
  errorMessage,
  GUARD_STALE_MS,
  HostGuards,
  lockLost,
  probeStoreFile,
  pseudoFilesystemOf,
  type SweepProgress,
  syncLockFileSystem,
  yieldToEventLoop,
} from '@sessile/core/store';
import { cannotOpen } from './errors.js';
import { GlobalLock, type GlobalLockStats } from './global-lock.js';
import { type FileInfo, HashFile, type SweepBatchResult } from './hash-file.js';
import {
  agreeOnStripes,
  assertDirectoryCreatable,
  checkLockDirectory,
  DANGLING_LINK,
  ensureLockDirectory,
  HOLDERS_DIRECTORY,
  isDanglingLink,
  isDirectory,
  missingDirectory,
  openDatabaseFile,
  realPathOf,
  STRIPE_COUNT_FILE,
} from './open-file.js';
import {
  type DbmSettings,
  type DbmStoreOptions,
  type DbmSweepMode,
  resolveSettings,
} from './options.js';
import { idOf } from './records.js';
import { type StripedFileLockStats, StripedFileLocks } from './striped-file-locks.js';

export interface DbmSweepStats {
  sweepMode: DbmSweepMode;
  scanned: number;
  removed: number;
  batches: number;
  /** Time the global lock was held for this sweep, summed over its holds, in ms. */
  globalLockHeldMs: number;
  /** The longest single hold of the global lock in this sweep, in ms: what other requests waited at most. */
  longestGlobalLockHoldMs: number;
}

export interface DbmStoreStats {
  sweepMode: DbmSweepMode;
  globalLock: GlobalLockStats;
  sessionLocks: StripedFileLockStats;
  /** The last sweep this process ran, if any. */
  lastSweep: DbmSweepStats | undefined;
  /** Interrupted changes of a crashed writer this process replayed from the journal. */
  journalRecoveries: number;
  /** Records a full-scan sweep could not decode. */
  undecodableRecords: number;
}

/**
 * A holder file whose heartbeat is this old belongs to a dead instance. Far above the guards'
 * staleness: removing a live instance's lease holders would make it lose its locks.
 */
const ORPHAN_HOLDER_AGE_MS = 60_000;
const INCREMENTAL_BATCH_ENTRIES = 500;
const FULL_SCAN_BATCH_ENTRIES = 1000;
/** Empty buckets cost a read each, so a batch also stops after this many. */
const SWEEP_BATCH_BUCKETS = 256;
/**
 * A sweep batch runs synchronously on the event loop, under the global lock: it ends after
 * this long, so neither requests in this process nor other processes wait much longer. 1 ms,
 * not 2: a garbage collection inside a batch adds to it, and the longest on-CPU stall of the
 * cleanup workload fell from 5.2 to 6.5 ms to 2.7 to 4.5 ms (six runs each, alternated).
 */
const SWEEP_BATCH_MS = 1;
const SCAN_BATCH_BUCKETS = 64;

/** Which file a path named when last looked at: a file replaced under its name is another. */
interface FileIdentity {
  dev: number;
  ino: number;
}

function sameFile(stats: Stats | undefined, identity: FileIdentity): boolean {
  return stats !== undefined && stats.ino === identity.ino && stats.dev === identity.dev;
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
    ownerIndex: true,
  };
  readonly locks: StripedFileLocks;
  /** The absolute path of the database file. */
  readonly path: string;
  /** How `sweep` works: `'incremental'` or `'full-scan'`. */
  readonly sweepMode: DbmSweepMode;
  readonly #durability: DbmSettings['durability'];
  #fd: number;
  #file: HashFile;
  /** The file open as `#fd`, to tell when `path` names another one. */
  #opened: FileIdentity;
  /** Counters of the files this store had open before `path` was replaced. */
  #pastRecoveries = 0;
  #pastUndecodable = 0;
  readonly #lockDirectory: string;
  /** The lock directory's stripe count file, to tell when the directory was removed or replaced. */
  #stripeCount: FileIdentity;
  readonly #guards: HostGuards;
  readonly #globalLock: GlobalLock;
  #lastSweep: DbmSweepStats | undefined;

  private constructor(settings: DbmSettings, path: string, fd: number, file: HashFile) {
    super({ maxRecordBytes: settings.maxRecordBytes });
    this.path = path;
    this.sweepMode = settings.sweepMode;
    this.#durability = settings.durability;
    this.#fd = fd;
    this.#file = file;
    this.#opened = fstatSync(fd);
    const lockDirectory = `${path}.locks`;
    this.#lockDirectory = lockDirectory;
    this.#stripeCount = statSync(join(lockDirectory, STRIPE_COUNT_FILE));
    // One heartbeat holder per instance; the leases' holder files sit beside it.
    this.#guards = new HostGuards({
      directory: join(lockDirectory, HOLDERS_DIRECTORY),
      staleMs: GUARD_STALE_MS,
      fileMode: 0o600,
      directoryMode: 0o700,
      fs: syncLockFileSystem,
    });
    this.#globalLock = new GlobalLock(
      lockDirectory,
      settings.globalLockLeaseMs,
      settings.globalLockWaitMs,
      this.#guards,
      () => this.#followFiles(),
      () => this.#opened,
    );
    this.locks = new StripedFileLocks(lockDirectory, settings.stripes, this.#guards, {
      read: (id) => this._get(id, Date.now()),
      turn: () => this.#globalLock.turn(),
    });
  }

  /**
   * What `open(options)` would find at `options.path`, creating and changing nothing: a dbm file
   * (`'present'`), none yet (a missing or empty file, which `open` lays out), or why `open` would
   * fail (not a sessile dbm file, a newer format, no right to write, a lock directory `open`
   * refuses, such as one that records another stripe count).
   */
  static async probe(options: DbmStoreOptions): Promise<StoreProbe> {
    const settings = resolveSettings(options, 'probe');
    const given = resolve(settings.path);
    const givenStripes = options.stripes !== undefined;
    const directory = dirname(given);
    try {
      if (!existsSync(given) && missingDirectory(directory)) {
        assertDirectoryCreatable(given, directory);
        return {
          state: 'absent',
          reason: `${given} does not exist, nor does its directory ${directory}`,
        };
      }
    } catch (error) {
      return { state: 'refused', reason: errorMessage(error), cause: error };
    }
    const missing = await probeStoreFile(given);
    if (missing !== undefined && missing.state !== 'absent') return missing;
    if (missing !== undefined && isDanglingLink(given)) {
      const refusal = cannotOpen(given, DANGLING_LINK);
      return { state: 'refused', reason: refusal.message, cause: refusal };
    }
    let fd: number | undefined;
    try {
      if (missing !== undefined) {
        // `open` would create the file, judging the lock directory it would get first.
        checkNewFileLocks(given, settings.stripes, givenStripes);
        return missing;
      }
      // Read and write, as `open` asks, so a file this process may not write is refused; the
      // probe itself only reads. Non-blocking, in case a FIFO was swapped in since the check.
      fd = openSync(given, constants.O_RDWR | constants.O_NONBLOCK);
      const path = realPathOf(given, fd);
      const file = new HashFile(fd, path, 'normal');
      // In `open`'s order: the lock directory is judged first wherever it exists.
      const refusal = file.refusal();
      if (refusal !== undefined && !isDirectory(`${path}.locks`)) throw refusal;
      checkLockDirectory(path, `${path}.locks`, settings.stripes, givenStripes);
      if (refusal !== undefined) throw refusal;
      return file.laidOut()
        ? { state: 'present' }
        : { state: 'absent', reason: `${path} is an empty file` };
    } catch (error) {
      const reason = isSessionError(error)
        ? error.message
        : cannotOpen(given, errorMessage(error)).message;
      return { state: 'refused', reason, cause: error };
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  /**
   * Opens (creating when missing) the database file at `options.path`. A path that cannot hold
   * the file, and a file that is not a sessile dbm file or has a newer format, are refused with
   * nothing created or written.
   */
  static async open(options: DbmStoreOptions): Promise<DbmStore> {
    const settings = resolveSettings(options, 'open');
    const given = resolve(settings.path);
    let path = given;
    let fd: number | undefined;
    let store: DbmStore | undefined;
    try {
      // A missing file is created next: a lock directory open refuses is refused first, so the
      // refused open leaves no new file behind.
      checkNewFileLocks(given, settings.stripes, options.stripes !== undefined);
      fd = openDatabaseFile(given);
      // The lock directory goes beside the real file: a process that names it through a
      // symlink (to the file or a directory above it) must take the same locks.
      path = realPathOf(given, fd);
      const lockDirectory = `${path}.locks`;
      // Nothing is written before the store exists and holds its global lock.
      const file = new HashFile(fd, path, settings.durability, () => {
        if (store === undefined) throw new Error(`${path} written before its store was made`);
        store.#globalLock.assertHeld();
      });
      // Judged without the lock, a refused file gets no lock directory beside it. Writers create
      // that directory before they write, so while it exists only a check under the lock counts.
      const refusal = file.refusal();
      if (refusal !== undefined && !isDirectory(lockDirectory)) throw refusal;
      const givenStripes = options.stripes !== undefined;
      const found = checkLockDirectory(path, lockDirectory, settings.stripes, givenStripes);
      if (!found.exists) ensureLockDirectory(path, lockDirectory);
      const stripes =
        found.stripes ?? agreeOnStripes(path, lockDirectory, settings.stripes, givenStripes);
      const opened = new DbmStore({ ...settings, stripes }, path, fd, file);
      store = opened;
      // Holder files of instances whose process died without closing the store.
      await opened.#guards.removeDeadHolders(ORPHAN_HOLDER_AGE_MS);
      // The file the hold found at `path`: the one opened above unless it was replaced since.
      await opened.#globalLock.run(() => opened.#file.initialize());
      return opened;
    } catch (error) {
      if (store !== undefined) {
        await store.#closeLocks();
        closeSync(store.#fd);
      } else if (fd !== undefined) closeSync(fd);
      if (isSessionError(error)) throw error;
      throw cannotOpen(path, errorMessage(error), error);
    }
  }

  /** Counters of this process: lock use, collisions, the last sweep's lock holds. */
  stats(): DbmStoreStats {
    return {
      sweepMode: this.sweepMode,
      globalLock: this.#globalLock.stats(),
      sessionLocks: this.locks.stats(),
      lastSweep: this.#lastSweep && { ...this.#lastSweep },
      journalRecoveries: this.#pastRecoveries + this.#file.recoveries,
      undecodableRecords: this.#pastUndecodable + this.#file.undecodable,
    };
  }

  /** The file's size and table shape, read under the global lock. */
  info(): Promise<FileInfo> {
    return this.operation('info', () => this.#globalLock.run(() => this.#file.info()));
  }

  protected override ioLocation(): string {
    return this.path;
  }

  /**
   * Runs first in every hold of the global lock, so that no process writes to a file, or locks
   * in a lock directory, that the others no longer use. A file replaced under `path` (a restore
   * renamed over it) or removed is opened anew, as `open` would; a lock directory that was
   * removed (the claim of the global lock has made it again) or replaced gets this store's
   * stripe count again, and the session locks this process held in the old one are lost.
   */
  #followFiles(): void {
    if (!sameFile(statSync(this.path, { throwIfNoEntry: false }), this.#opened)) this.#reopen();
    const countFile = join(this.#lockDirectory, STRIPE_COUNT_FILE);
    if (!sameFile(statSync(countFile, { throwIfNoEntry: false }), this.#stripeCount)) {
      agreeOnStripes(this.path, this.#lockDirectory, this.locks.stripes, true);
      this.#stripeCount = statSync(countFile);
      this.locks.recheckHeld();
    }
  }

  /** Opens the file `path` names now (creating it when missing), refusing one that is not a dbm file. */
  #reopen(): void {
    const fd = openDatabaseFile(this.path);
    let file: HashFile;
    try {
      file = new HashFile(fd, this.path, this.#durability, () => this.#globalLock.assertHeld());
      const refusal = file.refusal();
      if (refusal !== undefined) throw refusal;
      file.initialize();
    } catch (error) {
      closeSync(fd);
      throw error;
    }
    this.#pastRecoveries += this.#file.recoveries;
    this.#pastUndecodable += this.#file.undecodable;
    closeSync(this.#fd);
    this.#fd = fd;
    this.#file = file;
    this.#opened = fstatSync(fd);
  }

  protected _get(id: string, now: number): Promise<SessionRecord | undefined> {
    return this.#globalLock.run(() => this.#file.get(id, now));
  }

  protected _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
    lease: HeldLease | undefined,
  ): Promise<boolean> {
    return this.#write(lease, () => this.#file.set(id, record, only, now));
  }

  protected _touch(
    id: string,
    expiresAt: number,
    now: number,
    lease: HeldLease | undefined,
  ): Promise<boolean> {
    return this.#write(lease, () => this.#file.touch(id, expiresAt, now));
  }

  protected _delete(id: string, now: number, lease: HeldLease | undefined): Promise<boolean> {
    return this.#write(lease, () => this.#file.delete(id, now));
  }

  /**
   * A write under the global lock. A fenced one checks its session lock in the same step, so it
   * shares a hold with the other steps queued, and, given `lease.release`, frees the session
   * lock once the write has landed.
   */
  #write(lease: HeldLease | undefined, step: () => boolean): Promise<boolean> {
    if (lease === undefined) return this.#globalLock.run(step);
    const written = this.#globalLock.run(() => {
      if (!this.locks.holds(lease)) {
        throw lockLost('its lease ran out or another holder took it over');
      }
      return step();
    });
    if (lease.release !== true) return written;
    return written.then(async (wrote) => {
      await this.locks.releaseHeld(lease);
      return wrote;
    });
  }

  protected async _sweep(progress: SweepProgress): Promise<SweepResult> {
    const fullScan = this.sweepMode === 'full-scan';
    const stats: DbmSweepStats = {
      sweepMode: this.sweepMode,
      scanned: 0,
      removed: 0,
      batches: 0,
      globalLockHeldMs: 0,
      longestGlobalLockHoldMs: 0,
    };
    this.#lastSweep = stats;
    const batchEntries = fullScan ? FULL_SCAN_BATCH_ENTRIES : INCREMENTAL_BATCH_ENTRIES;
    const budgetEnd = performance.now() + progress.budgetMs;
    const batch = (entries: number): SweepBatchResult => {
      const deadline = Math.min(performance.now() + SWEEP_BATCH_MS, budgetEnd);
      const result = this.#file.sweepBatch(
        entries,
        SWEEP_BATCH_BUCKETS,
        progress.now,
        fullScan,
        deadline,
      );
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
            await renew();
            return batch(entries);
          }),
        );
      } finally {
        stats.globalLockHeldMs = performance.now() - started;
        stats.longestGlobalLockHoldMs = stats.globalLockHeldMs;
      }
    } else {
      // Each batch in a hold of its own, shared with no request, so a hold lasts one batch.
      done = await sweepLoop((entries) =>
        this.#globalLock.hold(() => {
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
    for await (const ids of this.#liveIdBatches(now)) live += ids.length;
    return live;
  }

  protected async *_ids(now: number): AsyncIterable<string> {
    for await (const ids of this.#liveIdBatches(now)) yield* ids;
  }

  /**
   * The ids of live records, a batch of buckets per hold of the global lock. `count` takes them
   * too, so it counts what `ids` lists: an entry whose record head cannot be read (a file cut
   * short) names no id, and `get` of its id rejects it as corrupt.
   */
  async *#liveIdBatches(now: number): AsyncGenerator<string[]> {
    const state = await this.#globalLock.run(() => this.#file.startScan());
    let more = true;
    while (more) {
      const ids: string[] = [];
      more = await this.#globalLock.run(() =>
        this.#file.scanBatch(state, SCAN_BATCH_BUCKETS, (entry, readHead) => {
          if (entry.expiresAt <= now) return;
          const id = idOf(entry, readHead());
          if (id !== undefined) ids.push(id);
        }),
      );
      yield ids;
    }
  }

  protected _clear(): Promise<void> {
    return this.#globalLock.run(() => this.#file.clear());
  }

  protected override async _ownedBy(owner: string, now: number): Promise<OwnedSession[]> {
    const listed = await this.#globalLock.run(() => this.#file.ownedBy(owner, now));
    if (listed !== undefined) return listed;
    // The owner's list was damaged: a scan, batched as for ids(), finds its records again.
    const scanned: string[] = [];
    const state = await this.#globalLock.run(() => this.#file.startScan());
    let more = true;
    while (more) {
      more = await this.#globalLock.run(() =>
        this.#file.scanBatch(state, SCAN_BATCH_BUCKETS, (entry, readHead) => {
          const head = readHead();
          if (head?.owner !== owner) return;
          const id = idOf(entry, head);
          if (id !== undefined) scanned.push(id);
        }),
      );
    }
    return this.#globalLock.run(() => this.#file.rebuildOwnerList(owner, scanned, now));
  }

  /**
   * As every store's `close()`, but the operations waiting for the global lock behind another
   * process's hold reject with `ERR_STORE_CLOSED` at once instead of being waited for.
   */
  override close(): Promise<void> {
    this.#globalLock.stopWaiting();
    return super.close();
  }

  protected async _close(): Promise<void> {
    await this.#closeLocks();
    closeSync(this.#fd);
  }

  async #closeLocks(): Promise<void> {
    await this.#globalLock.close();
    await this.locks.close();
    await this.#guards.close();
  }
}

/**
 * Judges, as `checkLockDirectory` does, the lock directory a missing `path` would get beside the
 * real file: for `open` before it creates the file, and for `probe`. Nothing to judge when `path`
 * exists, is a kernel file (refused as such first) or has no directory to be made in
 * (`openDatabaseFile` and `probeStoreFile` say why).
 */
function checkNewFileLocks(path: string, stripes: number, given: boolean): void {
  if (existsSync(path) || pseudoFilesystemOf(path) !== undefined) return;
  let directory: string;
  try {
    directory = realpathSync(dirname(path));
  } catch {
    return;
  }
  const real = join(directory, basename(path));
  checkLockDirectory(real, `${real}.locks`, stripes, given);
}
