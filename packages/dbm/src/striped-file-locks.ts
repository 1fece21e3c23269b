import { createHash } from 'node:crypto';
import { closeSync, fstatSync, linkSync, openSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { AcquireOptions, HeldLease, SessionLock } from '@sessile/core';
import {
  generateToken,
  type LeaseBackend,
  type LeaseClaim,
  LeaseLocks,
  lockLost,
  stripeOf,
} from '@sessile/core/store';
import {
  encodeHolder,
  GUARD_STALE_MS,
  type HolderState,
  isCode,
  isStale,
  readHolder,
  removeIfPresent,
} from './lock-file.js';

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

function tagOf(id: string): string {
  return createHash('sha256').update(id).digest('base64url').slice(0, 16);
}

interface Stripe {
  index: number;
  lockPath: string;
  guardPath: string;
  holderPath: string;
  holderFd: number | undefined;
  /** The token of this instance's lock on the stripe, while its holder file is linked as the lock. */
  heldToken: string | undefined;
  heldTag: string | undefined;
  /** The held lease's end and length, for judging whether a change needs the guard. */
  leaseEnd: number;
  leaseMs: number;
}

/**
 * mod_python's fixed pool of global mutexes, as lock files every process on the host shares. The
 * session id picks file `1 + fnv1a32(id) % (stripes - 1)`, so different sessions on one stripe
 * wait for each other (`stats().collisions`).
 *
 * Each instance keeps one holder file per stripe, writes its token, lease end, process id and a
 * digest of the session id into it, and takes the lock by hard-linking it to `<stripe>.lock`. An
 * expired lease may be taken over; extend, release near the lease end, and takeover all run under
 * the stripe's guard (`<stripe>.guard`, also a hard link), so none of them interleave.
 */
export class StripedFileLocks extends LeaseLocks {
  readonly stripes: number;
  readonly #stripeFiles: StripeFiles;

  constructor(directory: string, stripes: number) {
    const stripeFiles = new StripeFiles(directory);
    super(stripeFiles, {
      keyOf: (id) => String(sessionStripe(id, stripes)),
      onWait: (id, holderId) => stripeFiles.countWait(id, holderId),
    });
    this.stripes = stripes;
    this.#stripeFiles = stripeFiles;
  }

  override async acquire(id: string, options?: AcquireOptions): Promise<SessionLock> {
    const lock = await super.acquire(id, options);
    this.#stripeFiles.counts.acquired++;
    return lock;
  }

  stats(): StripedFileLockStats {
    return { stripes: this.stripes, ...this.#stripeFiles.counts };
  }
}

/** The stripes' lock files: the `LeaseBackend` under `StripedFileLocks`. */
class StripeFiles implements LeaseBackend {
  readonly counts = { acquired: 0, waits: 0, collisions: 0 };
  readonly #directory: string;
  readonly #instance = `${process.pid}.${generateToken()}`;
  readonly #guardSourcePath: string;
  readonly #stripes = new Map<number, Stripe>();
  #closed = false;

  constructor(directory: string) {
    this.#directory = directory;
    this.#guardSourcePath = join(directory, `guard.${this.#instance}.holder`);
  }

  countWait(id: string, holderId: string | undefined): void {
    this.counts.waits++;
    if (holderId !== undefined && holderId !== id) this.counts.collisions++;
  }

  async claim({ key, id, token, expiresAt, waited }: LeaseClaim): Promise<boolean> {
    const stripe = this.#stripe(Number(key));
    const tag = tagOf(id);
    for (let tries = 0; tries < 3; tries++) {
      // This instance's last lease on the stripe is still being freed after it ran out.
      if (stripe.heldToken !== undefined) return false;
      const fd = this.#holderFd(stripe);
      writeSync(fd, encodeHolder({ token, expiresAt, pid: process.pid, tag }), 0, undefined, 0);
      try {
        linkSync(stripe.holderPath, stripe.lockPath);
        stripe.heldToken = token;
        stripe.heldTag = tag;
        stripe.leaseEnd = expiresAt;
        stripe.leaseMs = expiresAt - Date.now();
        return true;
      } catch (error) {
        if (isCode(error, 'ENOENT')) {
          this.#dropHolderFile(stripe);
          continue;
        }
        if (!isCode(error, 'EEXIST')) throw error;
      }
      const seen = readHolder(stripe.lockPath);
      if (seen.kind === 'absent') continue;
      if (!isStale(seen, Date.now(), false)) {
        // Another process's holder: a collision when it holds a different session.
        if (!waited && seen.kind === 'held' && seen.holder.tag !== tag) this.counts.collisions++;
        return false;
      }
      await this.#guarded(stripe, () => {
        const again = readHolder(stripe.lockPath);
        if (sameHolder(seen, again) && isStale(again, Date.now(), false))
          removeIfPresent(stripe.lockPath);
      });
    }
    return false;
  }

  async extend({ key, token, expiresAt }: LeaseClaim): Promise<boolean> {
    const stripe = this.#stripe(Number(key));
    const extend = () => {
      if (!this.#ours(stripe, token)) return false;
      const holder = { token, expiresAt, pid: process.pid, tag: stripe.heldTag ?? '' };
      writeSync(this.#holderFd(stripe), encodeHolder(holder), 0, undefined, 0);
      stripe.leaseEnd = expiresAt;
      return true;
    };
    return this.#safe(stripe) ? extend() : this.#guarded(stripe, extend);
  }

  async release({ key, token }: LeaseClaim): Promise<boolean> {
    const stripe = this.#stripe(Number(key));
    const release = () => {
      const held = this.#ours(stripe, token);
      this.#free(stripe, token);
      return held;
    };
    return this.#safe(stripe) ? release() : this.#guarded(stripe, release);
  }

  /** The write runs under the stripe's guard, which a takeover needs too, so no one claims it meanwhile. */
  async fence<T>({ key, token }: HeldLease, write: () => Promise<T>): Promise<T> {
    const stripe = this.#stripe(Number(key));
    const release = await this.#holdGuard(stripe);
    try {
      if (!this.#ours(stripe, token) || stripe.leaseEnd <= Date.now()) {
        throw lockLost('its lease ran out or another holder took it over');
      }
      return await write();
    } finally {
      release();
    }
  }

  expired({ key, token }: LeaseClaim): void {
    // The lease ran out: free the stripe as any other process would.
    const stripe = this.#stripe(Number(key));
    this.#guarded(stripe, () => this.#free(stripe, token)).catch(() => this.#forget(stripe, token));
  }

  close(): void {
    this.#closed = true;
    for (const stripe of this.#stripes.values()) {
      if (stripe.heldToken === undefined) this.#dropHolderFile(stripe);
    }
    removeIfPresent(this.#guardSourcePath);
  }

  #ours(stripe: Stripe, token: string): boolean {
    return stripe.heldToken === token && fstatSync(this.#holderFd(stripe)).nlink >= 2;
  }

  /** Well inside the lease nobody may take the lock over, so no guard is needed. */
  #safe(stripe: Stripe): boolean {
    return Date.now() < stripe.leaseEnd - Math.min(1000, stripe.leaseMs / 2);
  }

  #free(stripe: Stripe, token: string): void {
    if (this.#ours(stripe, token)) unlinkSync(stripe.lockPath);
    this.#forget(stripe, token);
  }

  #stripe(index: number): Stripe {
    let stripe = this.#stripes.get(index);
    if (stripe === undefined) {
      stripe = {
        index,
        lockPath: join(this.#directory, `${index}.lock`),
        guardPath: join(this.#directory, `${index}.guard`),
        holderPath: join(this.#directory, `${index}.${this.#instance}.holder`),
        holderFd: undefined,
        heldToken: undefined,
        heldTag: undefined,
        leaseEnd: 0,
        leaseMs: 0,
      };
      this.#stripes.set(index, stripe);
    }
    return stripe;
  }

  #forget(stripe: Stripe, token: string): void {
    if (stripe.heldToken !== token) return;
    stripe.heldToken = undefined;
    stripe.heldTag = undefined;
    if (this.#closed) this.#dropHolderFile(stripe);
  }

  #holderFd(stripe: Stripe): number {
    if (stripe.holderFd === undefined) stripe.holderFd = openSync(stripe.holderPath, 'w', 0o600);
    return stripe.holderFd;
  }

  #dropHolderFile(stripe: Stripe): void {
    if (stripe.holderFd !== undefined) closeSync(stripe.holderFd);
    stripe.holderFd = undefined;
    removeIfPresent(stripe.holderPath);
  }

  /** Runs `critical` while holding the stripe's guard. */
  async #guarded<T>(stripe: Stripe, critical: () => T): Promise<T> {
    const release = await this.#holdGuard(stripe);
    try {
      return critical();
    } finally {
      release();
    }
  }

  /** Takes the stripe's guard, a hard link of this instance's guard file; resolves its release. */
  async #holdGuard(stripe: Stripe): Promise<() => void> {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(this.#guardSourcePath, stripe.guardPath);
        return () => removeIfPresent(stripe.guardPath);
      } catch (error) {
        if (isCode(error, 'ENOENT')) {
          closeSync(openSync(this.#guardSourcePath, 'w', 0o600));
          continue;
        }
        if (!isCode(error, 'EEXIST')) throw error;
      }
      try {
        // link() sets the ctime: a guard linked this long ago belongs to a dead process.
        if (Date.now() - statSync(stripe.guardPath).ctimeMs > GUARD_STALE_MS) {
          removeIfPresent(stripe.guardPath);
          continue;
        }
      } catch (error) {
        if (!isCode(error, 'ENOENT')) throw error;
        continue;
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(10, 1 + attempt)));
    }
  }
}

function sameHolder(a: HolderState, b: HolderState): boolean {
  if (a.kind === 'held' && b.kind === 'held') return a.holder.token === b.holder.token;
  return a.kind === 'unreadable' && b.kind === 'unreadable';
}
