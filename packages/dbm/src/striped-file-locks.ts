import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { AcquireOptions, SessionLock } from '@sessile/core';
import {
  type HostGuards,
  LeaseFiles,
  LeaseLocks,
  stripeOf,
  syncLockFileSystem,
} from '@sessile/core/store';

export interface StripedFileLockStats {
  /** Lock files in the pool, including file 0, the global lock. */
  stripes: number;
  /** Locks granted to this process. */
  acquired: number;
  /** Acquires that found their stripe held and had to wait. */
  waits: number;
  /** Waits caused by a different session id on the same stripe: the cost of striping. */
  collisions: number;
}

/** Which lock file a session id uses in a pool of `stripes`: never 0, which is the global lock. */
export function sessionStripe(id: string, stripes: number): number {
  return 1 + stripeOf(id, stripes - 1);
}

/** Where the stripes' lease files go, inside the lock directory. */
const STRIPES_DIRECTORY = 'stripes';

/** What a stripe's lease names its session by: a digest, so ids never reach the lock directory. */
function tagOf(id: string): string {
  return createHash('sha256').update(id).digest('base64url').slice(0, 16);
}

/**
 * mod_python's fixed pool of global mutexes, as lease files every process on the host shares
 * (core's `LeaseFiles`): the session id picks `stripes/<1 + fnv1a32(id) % (stripes - 1)>.lock` in
 * the lock directory, so different sessions on one stripe wait for each other
 * (`stats().collisions`); a lease names its session by a digest, so a waiter in another process
 * can tell a collision too. A release wakes the waiters of other processes through a watch on
 * that directory.
 */
export class StripedFileLocks extends LeaseLocks {
  readonly stripes: number;
  readonly #counts: { acquired: number; waits: number; collisions: number };

  constructor(lockDirectory: string, stripes: number, guards: HostGuards) {
    const counts = { acquired: 0, waits: 0, collisions: 0 };
    // A directory of their own, so the watch that wakes waiters sees only the stripes' changes.
    const directory = join(lockDirectory, STRIPES_DIRECTORY);
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    const leases = new LeaseFiles({
      guards,
      fs: syncLockFileSystem,
      fileMode: 0o600,
      directoryMode: 0o700,
      pathOf: (key) => join(directory, `${key}.lock`),
      tagOf,
      wakeOnRelease: true,
      onRefused: ({ id, waited }, current) => {
        // Another process holds the stripe for a different session: a collision.
        if (!waited && current?.tag !== undefined && current.tag !== tagOf(id)) counts.collisions++;
      },
    });
    super(leases, {
      keyOf: (id) => String(sessionStripe(id, stripes)),
      onWait: (id, holderId) => {
        counts.waits++;
        if (holderId !== undefined && holderId !== id) counts.collisions++;
      },
    });
    this.stripes = stripes;
    this.#counts = counts;
  }

  override async acquire(id: string, options?: AcquireOptions): Promise<SessionLock> {
    const lock = await super.acquire(id, options);
    this.#counts.acquired++;
    return lock;
  }

  stats(): StripedFileLockStats {
    return { stripes: this.stripes, ...this.#counts };
  }
}
