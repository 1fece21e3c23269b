import { join } from 'node:path';
import {
  generateToken,
  type HostGuards,
  LeaseFiles,
  LeaseLock,
  LeaseLocks,
  type LockFileSystem,
  lockManagerClosed,
} from '@sessile/core/store';

export interface FileLocksInit {
  /** The directory that holds lease files, `<store path>/.locks`. */
  directory: string;
  /** The store's host-wide guards: takeovers, extends and fenced writes run under them. */
  guards: HostGuards;
  fileMode: number;
  directoryMode: number;
  /** How lease files are read and written (thread pool or event loop). */
  fs: LockFileSystem;
  shardOf(id: string): string;
}

/**
 * Session locks shared by every process on the host (and NFS clients): core's lease files, one
 * per locked session at `<directory>/<shard>/<id>`, removed on release. A crashed or stuck
 * holder blocks others for at most one lease.
 */
export class FileLocks extends LeaseLocks {
  readonly #leases: LeaseFiles;

  constructor(init: FileLocksInit) {
    const leases = new LeaseFiles({
      guards: init.guards,
      fs: init.fs,
      fileMode: init.fileMode,
      directoryMode: init.directoryMode,
      pathOf: (id) => join(init.directory, init.shardOf(id), id),
    });
    super(leases);
    this.#leases = leases;
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
        extend: (heldToken, newExpiresAt) => this.#leases.extendAt(file, heldToken, newExpiresAt),
        release: (heldToken) => this.#leases.releaseAt(file, heldToken),
        expired: (heldToken) => {
          this.#leases.releaseAt(file, heldToken).catch(() => {});
        },
      },
    });
  }
}
