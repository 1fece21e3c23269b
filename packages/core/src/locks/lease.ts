import { SessionError } from '../errors.js';
import { assertSessionId } from '../ids.js';
import type { AcquireOptions, SessionLock } from '../types.js';
import { assertAbortSignal, assertDuration, assertKnownOptions } from '../util.js';
import { Deadline, Deadlines } from './deadlines.js';

export const DEFAULT_WAIT_MS = 10_000;
export const DEFAULT_LEASE_MS = 30_000;

/**
 * An acquire option that core's own callers pass instead of `signal`: a function called only
 * if the acquire has to wait, returning the signal that stops the wait. An uncontended acquire
 * then builds no `AbortController`. A symbol, so no user-facing option list shows it; from
 * `Symbol.for`, so two copies of core agree on it.
 */
export const signalWhenWaiting: unique symbol = Symbol.for('sessile.signalWhenWaiting');

/** `AcquireOptions` as core passes them to a lock manager that honours `signalWhenWaiting`. */
export interface InternalAcquireOptions extends AcquireOptions {
  [signalWhenWaiting]?: () => AbortSignal;
}

export interface NormalizedAcquireOptions {
  waitMs: number;
  leaseMs: number;
  signal: AbortSignal | undefined;
  signalWhenWaiting: (() => AbortSignal) | undefined;
}

const ACQUIRE_OPTIONS = ['waitMs', 'leaseMs', 'signal'] as const;

/** Validates a lock id and acquire options, filling in defaults. Misuse throws `TypeError`. */
export function normalizeAcquireOptions(
  id: unknown,
  options: AcquireOptions | undefined,
): NormalizedAcquireOptions {
  assertSessionId(id);
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw new TypeError('acquire options must be an object');
  }
  if (options !== undefined) {
    for (const key in options) {
      // Named options are the common case; only an unknown one pays for the full check.
      if (key !== 'waitMs' && key !== 'leaseMs' && key !== 'signal') {
        assertKnownOptions(options, ACQUIRE_OPTIONS, 'locks.acquire()');
      }
    }
  }
  const waitMs = options?.waitMs ?? DEFAULT_WAIT_MS;
  const leaseMs = options?.leaseMs ?? DEFAULT_LEASE_MS;
  assertDuration(waitMs, 'waitMs');
  assertDuration(leaseMs, 'leaseMs', { zero: false });
  assertAbortSignal(options?.signal, 'signal');
  const whenWaiting = (options as InternalAcquireOptions | undefined)?.[signalWhenWaiting];
  if (whenWaiting !== undefined && typeof whenWaiting !== 'function') {
    throw new TypeError('signalWhenWaiting must be a function');
  }
  return { waitMs, leaseMs, signal: options?.signal, signalWhenWaiting: whenWaiting };
}

/** What a `LeaseLock` asks of its manager. Each hook answers whether `token` still held the lock. */
export interface LeaseHooks {
  /** Moves the lease end to `expiresAt` if `token` still holds the lock. */
  extend(token: string, expiresAt: number): boolean | Promise<boolean>;
  /** Frees the lock if `token` still holds it. */
  release(token: string): boolean | Promise<boolean>;
  /**
   * Called once when the lease ends unreleased: it ran out without an extend, or an extend found
   * it no longer held. In-process tables free the slot here.
   */
  expired?(token: string): void;
  /** Called once when a fenced write freed the lease in its own transaction (`markReleased`). */
  released?(token: string): void;
}

export interface LeaseLockInit {
  id: string;
  token: string;
  leaseMs: number;
  expiresAt: number;
  hooks: LeaseHooks;
  /** What the lock manager that grants the lock keeps with it, opaque to everyone else. */
  grant?: object;
}

/** Every held `LeaseLock`'s lease end, on one timer. */
const leaseEnds = new Deadlines();

/**
 * A held lock's lifecycle: the lease end, the lost signal, idempotent release and
 * `await using`. `LeaseLocks` creates these; its backend answers the hooks. The signal's
 * `AbortController` is made on first use: most locks are released long before anyone looks.
 */
export class LeaseLock implements SessionLock {
  readonly id: string;
  readonly token: string;
  #expiresAt: number;
  readonly #leaseMs: number;
  readonly #hooks: LeaseHooks;
  /** What the granting lock manager keeps with the lock (`LeaseLockInit.grant`). */
  readonly grant: object | undefined;
  #controller: AbortController | undefined;
  /** `'unreleased'`: a release the backend failed, which another `release()` tries again. */
  #state: 'held' | 'released' | 'unreleased' | 'lost' = 'held';
  /** Why the lock was lost, once it was. */
  #lostReason: SessionError | undefined;
  readonly #leaseEnded = new Deadline(() => this.#expire());

  constructor(init: LeaseLockInit) {
    this.id = init.id;
    this.token = init.token;
    this.#leaseMs = init.leaseMs;
    this.#expiresAt = init.expiresAt;
    this.#hooks = init.hooks;
    this.grant = init.grant;
    leaseEnds.set(this.#leaseEnded, this.#expiresAt);
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#state === 'lost') this.#controller.abort(this.#lostError());
    }
    return this.#controller.signal;
  }

  get expiresAt(): number {
    return this.#expiresAt;
  }

  /** True while the lock is held and its lease has not run out. */
  get held(): boolean {
    return this.#state === 'held';
  }

  /** True once the lock was lost (`signal` has aborted), whether or not `signal` was read. */
  get lost(): boolean {
    return this.#state === 'lost';
  }

  async extend(ms: number = this.#leaseMs): Promise<void> {
    assertDuration(ms, 'ms', { zero: false });
    if (this.#state !== 'held') throw this.#lostError();
    const expiresAt = Date.now() + ms;
    const stillHeld = await this.#hooks.extend(this.token, expiresAt);
    if (this.#state !== 'held') throw this.#lostError();
    if (!stillHeld) {
      // Its lease ran out, perhaps while the event loop stalled, before the lease-end timer ran.
      this.end('its lease ended or another holder took it over');
      throw this.#lostError();
    }
    this.#expiresAt = expiresAt;
    leaseEnds.set(this.#leaseEnded, expiresAt);
  }

  async release(): Promise<void> {
    if (this.#state === 'released') return;
    if (this.#state === 'lost') throw this.#lostError();
    const retry = this.#state === 'unreleased';
    this.#state = 'released';
    leaseEnds.delete(this.#leaseEnded);
    // A lease that ran out since a failed release holds nothing left to free.
    if (retry && this.#expiresAt <= Date.now()) return;
    let stillHeld: boolean;
    try {
      stillHeld = await this.#hooks.release(this.token);
    } catch (error) {
      // The backend may still hold the lease (a lost connection, a timeout): the lock stays out
      // of use, and the next release() tries again until the lease runs out by itself.
      this.#state = 'unreleased';
      throw error;
    }
    if (!stillHeld) {
      this.#lose(new SessionError('ERR_LOCK_LOST', 'Lock on session is not held'));
      throw this.#lostError();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }

  /**
   * Marks the lock released without asking the backend, which freed the lease along with a
   * fenced write; a later `release()` resolves at once.
   */
  markReleased(): void {
    if (this.#state !== 'held') return;
    this.#state = 'released';
    leaseEnds.delete(this.#leaseEnded);
    this.#hooks.released?.(this.token);
  }

  /** Marks the lock lost and aborts its signal. Backends call this when they see a takeover. */
  markLost(reason: string): void {
    if (this.#state !== 'held') return;
    leaseEnds.delete(this.#leaseEnded);
    this.#lose(new SessionError('ERR_LOCK_LOST', `Lock on session lost: ${reason}`));
  }

  #lose(reason: SessionError): void {
    this.#state = 'lost';
    this.#lostReason = reason;
    this.#controller?.abort(reason);
  }

  #expire(): void {
    this.end(`its lease of ${this.#leaseMs} ms ran out without extend()`);
  }

  /**
   * Loses the lock and frees it for the next holder, in this process and in the backend: for a
   * lock manager whose backend found the lease no longer held.
   */
  end(reason: string): void {
    if (this.#state !== 'held') return;
    this.markLost(reason);
    this.#hooks.expired?.(this.token);
  }

  #lostError(): SessionError {
    return this.#lostReason ?? new SessionError('ERR_LOCK_LOST', 'Lock on session is not held');
  }
}

/** True once `lock` was lost; reads a `LeaseLock`'s state without creating its signal. */
export function isLockLost(lock: SessionLock): boolean {
  return lock instanceof LeaseLock ? lock.lost : lock.signal.aborted;
}

/** Why `lock` was lost, as `ERR_LOCK_LOST`; `undefined` while it was not. */
export function lockLostReason(lock: SessionLock): unknown {
  return isLockLost(lock) ? lock.signal.reason : undefined;
}

export function lockTimeout(waitMs: number): SessionError {
  return new SessionError(
    'ERR_LOCK_TIMEOUT',
    `Timed out after ${waitMs} ms waiting for a session lock`,
  );
}

/** The error of a write or lock call whose lock is no longer held. */
export function lockLost(reason = 'the lock is no longer held'): SessionError {
  return new SessionError('ERR_LOCK_LOST', `Lock on session lost: ${reason}`);
}

export function lockManagerClosed(): SessionError {
  return new SessionError('ERR_STORE_CLOSED', 'The lock manager is closed');
}
