import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { closeSync } from 'node:fs';
import { join } from 'node:path';
import {
  type AcquireOptions,
  generateToken,
  LeaseLock,
  type LockManager,
  lockManagerClosed,
  normalizeAcquireOptions,
  pollAcquire,
  type SessionLock,
  stripeOf,
} from '@sessile/core';
import {
  isStale,
  readHolder,
  removeIfPresent,
  rewriteHolder,
  tryCreate,
  withGuard,
} from './lock-file.js';

export interface StripedFileLockStats {
  /** Lock files in the pool, including stripe 0, the global lock. */
  stripes: number;
  /** Locks granted to this process. */
  acquired: number;
  /** Acquires that found their stripe held and had to wait. */
  waits: number;
  /** Waits caused by a different session id on the same stripe: the cost of striping. */
  collisions: number;
}

/** The lock file of stripe `index` in `directory`. Stripe 0 is the global lock. */
export function stripePaths(
  directory: string,
  index: number,
): { lockPath: string; guardPath: string } {
  return {
    lockPath: join(directory, `${index}.lock`),
    guardPath: join(directory, `${index}.guard`),
  };
}

/** Which lock file a session id uses in a pool of `stripes`: never 0, which is the global lock. */
export function sessionStripe(id: string, stripes: number): number {
  return 1 + stripeOf(id, stripes - 1);
}

function tagOf(id: string): string {
  return createHash('sha256').update(id).digest('base64url').slice(0, 16);
}

/**
 * mod_python's fixed pool of global mutexes, as lock files every process on the host shares:
 * the file is picked by a hash of the session id, so different sessions on one stripe wait for
 * each other (`stats().collisions`). Each file records its holder's token and lease end; an
 * expired lease may be taken over, and the old holder learns it on extend or release.
 */
export class StripedFileLocks implements LockManager {
  readonly stripes: number;
  readonly #directory: string;
  readonly #closing = new AbortController();
  #acquired = 0;
  #waits = 0;
  #collisions = 0;

  constructor(directory: string, stripes: number) {
    // Every waiting acquire listens for close; there may be any number of them.
    setMaxListeners(0, this.#closing.signal);
    this.#directory = directory;
    this.stripes = stripes;
  }

  async acquire(id: string, options?: AcquireOptions): Promise<SessionLock> {
    if (this.#closing.signal.aborted) throw lockManagerClosed();
    const { waitMs, leaseMs, signal } = normalizeAcquireOptions(id, options);
    const { lockPath, guardPath } = stripePaths(this.#directory, sessionStripe(id, this.stripes));
    const tag = tagOf(id);
    let waited = false;
    const attempt = async (): Promise<SessionLock | undefined> => {
      if (this.#closing.signal.aborted) throw lockManagerClosed();
      for (let tries = 0; tries < 3; tries++) {
        const token = generateToken();
        const expiresAt = Date.now() + leaseMs;
        const fd = tryCreate(lockPath, { token, expiresAt, pid: process.pid, tag });
        if (fd !== undefined) {
          closeSync(fd);
          return this.#grant(id, token, leaseMs, expiresAt, lockPath, guardPath);
        }
        const seen = readHolder(lockPath);
        if (seen.kind === 'absent') continue;
        if (isStale(seen, Date.now(), false)) {
          await withGuard(guardPath, () => {
            const again = readHolder(lockPath);
            const same =
              again.kind === seen.kind &&
              (again.kind !== 'held' ||
                seen.kind !== 'held' ||
                again.holder.token === seen.holder.token);
            if (same && isStale(again, Date.now(), false)) removeIfPresent(lockPath);
          });
          continue;
        }
        if (!waited) {
          waited = true;
          this.#waits++;
          if (seen.kind === 'held' && seen.holder.tag !== tag) this.#collisions++;
        }
        return undefined;
      }
      return undefined;
    };
    const stop =
      signal === undefined ? this.#closing.signal : AbortSignal.any([signal, this.#closing.signal]);
    const lock = await pollAcquire(attempt, {
      waitMs,
      signal: stop,
      minDelayMs: 1,
      maxDelayMs: 25,
    });
    this.#acquired++;
    return lock;
  }

  stats(): StripedFileLockStats {
    return {
      stripes: this.stripes,
      acquired: this.#acquired,
      waits: this.#waits,
      collisions: this.#collisions,
    };
  }

  async close(): Promise<void> {
    if (!this.#closing.signal.aborted) this.#closing.abort(lockManagerClosed());
  }

  #grant(
    id: string,
    token: string,
    leaseMs: number,
    expiresAt: number,
    lockPath: string,
    guardPath: string,
  ): LeaseLock {
    const holds = () => {
      const state = readHolder(lockPath);
      return state.kind === 'held' && state.holder.token === token ? state.holder : undefined;
    };
    return new LeaseLock({
      id,
      token,
      leaseMs,
      expiresAt,
      backend: {
        extend: (_token, newExpiresAt) =>
          withGuard(guardPath, () => {
            const holder = holds();
            if (holder === undefined) return false;
            rewriteHolder(lockPath, { ...holder, expiresAt: newExpiresAt });
            return true;
          }),
        release: () =>
          withGuard(guardPath, () => {
            if (holds() === undefined) return false;
            removeIfPresent(lockPath);
            return true;
          }),
      },
    });
  }
}
