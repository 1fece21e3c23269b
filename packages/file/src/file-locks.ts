import { dirname, join, sep } from 'node:path';
import type { HeldLease, SessionRecord } from '@sessile/core';
import {
  claimThenRead,
  generateToken,
  type HostGuards,
  type LeaseBackend,
  LeaseFiles,
  LeaseLock,
  LeaseLocks,
  type LockFileSystem,
  lockLost,
  lockManagerClosed,
} from '@sessile/core/store';
import type { EventLoopTurns } from './event-loop-turns.js';
import { unless } from './fs.js';

export interface FileLocksInit {
  /** The directory that holds lease files, `<store path>/.locks`. */
  directory: string;
  /** The store's directory: a session's lease is guarded by its record file's guard. */
  recordsDirectory: string;
  /** The store's host-wide guards: takeovers, extends and fenced writes run under them. */
  guards: HostGuards;
  fileMode: number;
  directoryMode: number;
  /** How lease files are read and written (thread pool or event loop). */
  fs: LockFileSystem;
  /** Claims take turns with the event loop, as the store's calls do. */
  turns: EventLoopTurns;
  shardOf(id: string): string;
  /** Runs a claim once more when the id's record shard was removed under it (see `StoreLayout.inShard`). */
  inShard<T>(id: string, call: () => Promise<T>): Promise<T>;
  /** Makes the id's record shard directory, where its guard lives, before a claim may need it. */
  prepare(id: string): Promise<void> | undefined;
  /** The record of `id` as `store.get(id)` returns it now: what a claim reads (`claimAndGet`). */
  read(id: string): Promise<SessionRecord | undefined>;
}

/**
 * Session locks shared by every process on the host (and NFS clients): core's lease files, one
 * per locked session at `<directory>/<shard>/<id>`, removed on release. A crashed or stuck
 * holder blocks others for at most one lease. A waiting acquire is woken when another process
 * frees the lease (a watch on its shard directory, open only while a claim here waits).
 *
 * A session's lease shares its record file's guard: the store's writes take that guard anyway,
 * so a fenced write checks the lease inside it (`assertHeld`) and takes one guard, not two,
 * while a takeover, an extend or a late release still never interleaves with the write.
 *
 * A claim reads its record once taken (`claimAndGet`), so `SessionManager.open()` locks and
 * loads in one call into the store; a fenced write given `release` frees the lease once it has
 * written (`releasesWithWrite`), so a commit and its unlock are one call too.
 */
export class FileLocks extends LeaseLocks {
  readonly #leases: LeaseFiles;
  readonly #pathOf: (key: string) => string;
  readonly #fs: LockFileSystem;
  readonly #recordsDirectory: string;

  constructor(init: FileLocksInit) {
    const prefix = init.directory + sep;
    const pathOf = (key: string) => join(init.directory, init.shardOf(key), key);
    const leases = new LeaseFiles({
      guards: init.guards,
      fs: init.fs,
      fileMode: init.fileMode,
      directoryMode: init.directoryMode,
      pathOf,
      wakeOnRelease: true,
      guardOf: (path) =>
        path.startsWith(prefix) ? join(init.recordsDirectory, path.slice(prefix.length)) : path,
    });
    // No `fence`: the store's write hooks check the lease under the record's guard.
    const backend: LeaseBackend = {
      releasesWithWrite: true,
      claim: (claim) =>
        init.turns.run(() =>
          init.inShard(claim.id, async () => {
            await init.prepare(claim.id);
            return leases.claim(claim);
          }),
        ),
      claimAndGet: (claim) =>
        init.turns.run(() =>
          init.inShard(claim.id, async () => {
            await init.prepare(claim.id);
            return claimThenRead(leases, claim, init.read);
          }),
        ),
      extend: (claim) => leases.extend(claim),
      release: (claim) => leases.release(claim),
      expired: (claim) => leases.expired(claim),
      watch: (key, wake) => leases.watch(key, wake),
      // close() ends guard waits too: a write stuck on another process's guard rejects then.
      stopAcquiring: () => leases.stopAcquiring(),
      close: () => leases.close(),
    };
    super(backend, { location: init.recordsDirectory });
    this.#leases = leases;
    this.#pathOf = pathOf;
    this.#fs = init.fs;
    this.#recordsDirectory = init.recordsDirectory;
  }

  /**
   * Rejects with `ERR_LOCK_LOST` unless `lease` still holds its session. The caller holds the
   * session's record guard, which makes the check atomic with its write.
   */
  async assertHeld(lease: HeldLease): Promise<void> {
    await this.#leases.assertHeld(lease);
    // One lstat even well inside the lease: a lease file removed by hand (all of `.locks`, or
    // the one file taken for a stale lock) lets another claim link its own, without guard or wait.
    const path = this.#pathOf(lease.key);
    // Where calls go through the thread pool, looked up there first, so a hung server never
    // holds the event loop; `recheckAt`'s own lstat then finds the attributes cached.
    if (
      this.#fs.lstatSync === undefined &&
      (await unless(['ENOENT', 'ENOTDIR'], undefined, () => this.#fs.lstat(path))) === undefined
    ) {
      throw leaseFileGone();
    }
    if (!this.#leases.recheckAt(path, lease.token)) throw leaseFileGone();
  }

  /**
   * Frees `lease` after a fenced write given `release` has written under it. The write checked
   * the lease under the record's guard; a release near the lease end takes that guard again,
   * so it runs once the write has let go of it.
   */
  async releaseAfterWrite(lease: HeldLease): Promise<void> {
    await this.#leases.releaseAt(this.#pathOf(lease.key), lease.token);
  }

  /**
   * One attempt at the lease in `file` (any path inside the store), for the store's own
   * single-runner jobs. Resolves `undefined` while someone else holds it.
   */
  async tryLease(file: string, leaseMs: number): Promise<LeaseLock | undefined> {
    if (this.closed) throw lockManagerClosed();
    // The lease kit makes a lease file's directory again when it is missing; a store whose
    // directory was deleted under a running app stays deleted (its writes reject as well).
    if (dirname(file) === this.#recordsDirectory) await this.#fs.lstat(this.#recordsDirectory);
    const token = generateToken();
    const expiresAt = Date.now() + leaseMs;
    if ((await this.#leases.claimAt(file, token, expiresAt)) === 'refused') return undefined;
    return new LeaseLock({
      id: '',
      token,
      leaseMs,
      expiresAt,
      hooks: {
        extend: async (heldToken, newExpiresAt) => {
          const extended = await this.#leases.extendAt(file, heldToken, newExpiresAt);
          // A lease that ended before its timer ran is lost without `expired`: free it here, or
          // every later claim of this instance would be refused as still being freed.
          if (!extended) this.#leases.releaseAt(file, heldToken).catch(() => {});
          return extended;
        },
        release: (heldToken) => this.#leases.releaseAt(file, heldToken),
        expired: (heldToken) => {
          this.#leases.releaseAt(file, heldToken).catch(() => {});
        },
      },
    });
  }
}

function leaseFileGone() {
  return lockLost('its lease file was removed or another holder linked its own in its place');
}
