import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { closeSync, fstatSync, linkSync, openSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import {
  type AcquireOptions,
  generateToken,
  LeaseLock,
  type LockManager,
  lockManagerClosed,
  lockTimeout,
  normalizeAcquireOptions,
  type SessionLock,
  stripeOf,
} from '@sessile/core';
import {
  encodeHolder,
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

/** A guard is held for microseconds; one linked this long ago belongs to a process that died holding it. */
const GUARD_STALE_MS = 2_000;
const MAX_POLL_DELAY_MS = 25;

interface Stripe {
  index: number;
  lockPath: string;
  guardPath: string;
  holderPath: string;
  holderFd: number | undefined;
  /** The token of this instance's lock on the stripe, while its holder file is linked as the lock. */
  heldToken: string | undefined;
  heldTag: string | undefined;
  /** Wakes this instance's waiters when it releases the stripe. */
  wakers: Set<() => void>;
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
export class StripedFileLocks implements LockManager {
  readonly stripes: number;
  readonly #directory: string;
  readonly #instance = `${process.pid}.${generateToken()}`;
  readonly #guardSourcePath: string;
  readonly #stripes = new Map<number, Stripe>();
  readonly #closing = new AbortController();
  #acquired = 0;
  #waits = 0;
  #collisions = 0;

  constructor(directory: string, stripes: number) {
    // Every waiting acquire listens for close; there may be any number of them.
    setMaxListeners(0, this.#closing.signal);
    this.#directory = directory;
    this.stripes = stripes;
    this.#guardSourcePath = join(directory, `guard.${this.#instance}.holder`);
  }

  async acquire(id: string, options?: AcquireOptions): Promise<SessionLock> {
    if (this.#closing.signal.aborted) throw lockManagerClosed();
    const { waitMs, leaseMs, signal } = normalizeAcquireOptions(id, options);
    const stripe = this.#stripe(sessionStripe(id, this.stripes));
    const tag = tagOf(id);
    const stop =
      signal === undefined ? this.#closing.signal : AbortSignal.any([signal, this.#closing.signal]);
    const started = Date.now();
    let delayMs = 1;
    let waited = false;
    for (;;) {
      if (stop.aborted) throw stop.reason;
      const attempt = await this.#attempt(stripe, id, tag, leaseMs);
      if (attempt.lock !== undefined) {
        this.#acquired++;
        return attempt.lock;
      }
      if (!waited) {
        waited = true;
        this.#waits++;
        if (attempt.holderTag !== undefined && attempt.holderTag !== tag) this.#collisions++;
      }
      const remainingMs = waitMs - (Date.now() - started);
      if (remainingMs <= 0) throw lockTimeout(waitMs);
      await this.#waitForChange(
        stripe,
        Math.min(remainingMs, delayMs * (0.5 + Math.random())),
        stop,
      );
      delayMs = Math.min(MAX_POLL_DELAY_MS, delayMs * 2);
    }
  }

  stats(): StripedFileLockStats {
    return {
      stripes: this.stripes,
      acquired: this.#acquired,
      waits: this.#waits,
      collisions: this.#collisions,
    };
  }

  /** Rejects waiting and later acquires with `ERR_STORE_CLOSED`. Held locks stay until released or expired. */
  async close(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort(lockManagerClosed());
    for (const stripe of this.#stripes.values()) {
      if (stripe.heldToken === undefined) this.#dropHolderFile(stripe);
    }
    removeIfPresent(this.#guardSourcePath);
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
        wakers: new Set(),
      };
      this.#stripes.set(index, stripe);
    }
    return stripe;
  }

  async #attempt(
    stripe: Stripe,
    id: string,
    tag: string,
    leaseMs: number,
  ): Promise<{ lock?: LeaseLock; holderTag?: string }> {
    for (let tries = 0; tries < 3; tries++) {
      // This instance holds the stripe: its holder file must not change while it is the lock.
      if (stripe.heldToken !== undefined) return { holderTag: stripe.heldTag };
      const token = generateToken();
      const expiresAt = Date.now() + leaseMs;
      const fd = this.#holderFd(stripe);
      writeSync(fd, encodeHolder({ token, expiresAt, pid: process.pid, tag }), 0, undefined, 0);
      try {
        linkSync(stripe.holderPath, stripe.lockPath);
        stripe.heldToken = token;
        stripe.heldTag = tag;
        return { lock: this.#grant(stripe, id, token, leaseMs, expiresAt) };
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
        return { holderTag: seen.kind === 'held' ? seen.holder.tag : undefined };
      }
      await this.#guarded(stripe, () => {
        const again = readHolder(stripe.lockPath);
        if (sameHolder(seen, again) && isStale(again, Date.now(), false))
          removeIfPresent(stripe.lockPath);
      });
    }
    return {};
  }

  #grant(stripe: Stripe, id: string, token: string, leaseMs: number, expiresAt: number): LeaseLock {
    let leaseEnd = expiresAt;
    const ours = () => stripe.heldToken === token && fstatSync(this.#holderFd(stripe)).nlink >= 2;
    // Well inside the lease nobody may take the lock over, so no guard is needed.
    const safe = () => Date.now() < leaseEnd - Math.min(1000, leaseMs / 2);
    const free = () => {
      if (ours()) unlinkSync(stripe.lockPath);
      this.#forget(stripe, token);
    };
    return new LeaseLock({
      id,
      token,
      leaseMs,
      expiresAt,
      backend: {
        extend: async (_token, newExpiresAt) => {
          const extend = () => {
            if (!ours()) return false;
            const fd = this.#holderFd(stripe);
            writeSync(
              fd,
              encodeHolder({
                token,
                expiresAt: newExpiresAt,
                pid: process.pid,
                tag: stripe.heldTag ?? '',
              }),
              0,
              undefined,
              0,
            );
            leaseEnd = newExpiresAt;
            return true;
          };
          return safe() ? extend() : this.#guarded(stripe, extend);
        },
        release: async () => {
          const release = () => {
            const held = ours();
            free();
            return held;
          };
          return safe() ? release() : this.#guarded(stripe, release);
        },
        expired: () => {
          // The lease ran out: free the stripe as any other process would.
          this.#guarded(stripe, free).catch(() => this.#forget(stripe, token));
        },
      },
    });
  }

  #forget(stripe: Stripe, token: string): void {
    if (stripe.heldToken !== token) return;
    stripe.heldToken = undefined;
    stripe.heldTag = undefined;
    if (this.#closing.signal.aborted) this.#dropHolderFile(stripe);
    for (const wake of stripe.wakers) wake();
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

  /** Resolves after `delayMs`, or sooner when this instance releases the stripe; rejects on abort. */
  #waitForChange(stripe: Stripe, delayMs: number, stop: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        stripe.wakers.delete(done);
        stop.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        done();
        reject(stop.reason);
      };
      const timer = setTimeout(done, delayMs);
      stripe.wakers.add(done);
      stop.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Runs `critical` while holding the stripe's guard: a hard link of this instance's guard file. */
  async #guarded<T>(stripe: Stripe, critical: () => T): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(this.#guardSourcePath, stripe.guardPath);
        break;
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
    try {
      return critical();
    } finally {
      removeIfPresent(stripe.guardPath);
    }
  }
}

function sameHolder(a: HolderState, b: HolderState): boolean {
  if (a.kind === 'held' && b.kind === 'held') return a.holder.token === b.holder.token;
  return a.kind === 'unreadable' && b.kind === 'unreadable';
}
