import { join, sep } from 'node:path';
import type { HeldLease } from '@sessile/core';
import {
  generateToken,
  type HostGuards,
  type LeaseBackend,
  LeaseFiles,
  LeaseLock,
  LeaseLocks,
  type LockFileSystem,
  lockManagerClosed,
} from '@sessile/core/store';

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
  shardOf(id: string): string;
  /** Makes the id's record shard directory, where its guard lives, before a claim may need it. */
  prepare(id: string): Promise<void> | undefined;
}

/**
 * Session locks shared by every process on the host (and NFS clients): core's lease files, one
 * per locked session at `<directory>/<shard>/<id>`, removed on release. A crashed or stuck
 * holder blocks others for at most one lease.
 *
 * A session's lease shares its record file's guard: the store's writes take that guard anyway,
 * so a fenced write checks the lease inside it (`assertHeld`) and takes one guard, not two,
 * while a takeover, an extend or a late release still never interleaves with the write.
 */
export class FileLocks extends LeaseLocks {
  readonly #leases: LeaseFiles;

  constructor(init: FileLocksInit) {
    const prefix = init.directory + sep;
    const leases = new LeaseFiles({
      guards: init.guards,
      fs: init.fs,
      fileMode: init.fileMode,
      directoryMode: init.directoryMode,
      pathOf: (id) => join(init.directory, init.shardOf(id), id),
      guardOf: (path) =>
        path.startsWith(prefix) ? join(init.recordsDirectory, path.slice(prefix.length)) : path,
    });
    // No `fence`: the store's write hooks check the lease under the record's guard.
    const backend: LeaseBackend = {
      claim: async (claim) => {
        await init.prepare(claim.id);
        return leases.claim(claim);
      },
      extend: (claim) => leases.extend(claim),
      release: (claim) => leases.release(claim),
      expired: (claim) => leases.expired(claim),
      close: () => leases.close(),
    };
    super(backend);
    this.#leases = leases;
  }

  /**
   * Rejects with `ERR_LOCK_LOST` unless `lease` still holds its session. The caller holds the
   * session's record guard, which makes the check atomic with its write.
   */
  assertHeld(lease: HeldLease): Promise<void> {
    return this.#leases.assertHeld(lease);
  }

  /**
   * One attempt at the lease in `file` (any path inside the store), for the store's own
   * single-runner jobs. Resolves `undefined` while someone else holds it.
   */
  async tryLease(file: string, leaseMs: number): Promise<LeaseLock | undefined> {
    if (this.closed) throw lockManagerClosed();
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
