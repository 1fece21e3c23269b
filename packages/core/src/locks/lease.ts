import { SessionError } from '../errors.js';
import { assertSessionId } from '../ids.js';
import type { AcquireOptions, SessionLock } from '../types.js';
import { assertAbortSignal, assertDuration, assertKnownOptions } from '../util.js';

export const DEFAULT_WAIT_MS = 10_000;
export const DEFAULT_LEASE_MS = 30_000;

export interface NormalizedAcquireOptions {
  waitMs: number;
  leaseMs: number;
  signal: AbortSignal | undefined;
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
  if (options !== undefined) assertKnownOptions(options, ACQUIRE_OPTIONS, 'locks.acquire()');
  const waitMs = options?.waitMs ?? DEFAULT_WAIT_MS;
  const leaseMs = options?.leaseMs ?? DEFAULT_LEASE_MS;
  assertDuration(waitMs, 'waitMs');
  assertDuration(leaseMs, 'leaseMs', { zero: false });
  assertAbortSignal(options?.signal, 'signal');
  return { waitMs, leaseMs, signal: options?.signal };
}

/** What a `LeaseLock` asks of its manager. Each hook answers whether `token` still held the lock. */
export interface LeaseHooks {
  /** Moves the lease end to `expiresAt` if `token` still holds the lock. */
  extend(token: string, expiresAt: number): boolean | Promise<boolean>;
  /** Frees the lock if `token` still holds it. */
  release(token: string): boolean | Promise<boolean>;
  /** Called once when the lease runs out without an extend; in-process tables free the slot here. */
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
}

/**
 * A held lock's lifecycle: the lease timer, the lost signal, idempotent release and
 * `await using`. `LeaseLocks` creates these; its backend answers the hooks.
 */
export class LeaseLock implements SessionLock {
  readonly id: string;
  readonly token: string;
  #expiresAt: number;
  readonly #leaseMs: number;
  readonly #hooks: LeaseHooks;
  readonly #controller = new AbortController();
  #state: 'held' | 'released' | 'lost' = 'held';
  #timer: NodeJS.Timeout | undefined;

  constructor(init: LeaseLockInit) {
    this.id = init.id;
    this.token = init.token;
    this.#leaseMs = init.leaseMs;
    this.#expiresAt = init.expiresAt;
    this.#hooks = init.hooks;
    this.#arm();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get expiresAt(): number {
    return this.#expiresAt;
  }

  /** True while the lock is held and its lease has not run out. */
  get held(): boolean {
    return this.#state === 'held';
  }

  async extend(ms: number = this.#leaseMs): Promise<void> {
    assertDuration(ms, 'ms', { zero: false });
    if (this.#state !== 'held') throw this.#lostError();
    const expiresAt = Date.now() + ms;
    const stillHeld = await this.#hooks.extend(this.token, expiresAt);
    if (this.#state !== 'held') throw this.#lostError();
    if (!stillHeld) {
      this.markLost('the lock was taken over by another holder');
      throw this.#lostError();
    }
    this.#expiresAt = expiresAt;
    this.#arm();
  }

  async release(): Promise<void> {
    if (this.#state === 'released') return;
    if (this.#state === 'lost') throw this.#lostError();
    this.#state = 'released';
    clearTimeout(this.#timer);
    const stillHeld = await this.#hooks.release(this.token);
    if (!stillHeld) {
      this.#state = 'lost';
      this.#controller.abort(this.#lostError());
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
    clearTimeout(this.#timer);
    this.#hooks.released?.(this.token);
  }

  /** Marks the lock lost and aborts its signal. Backends call this when they see a takeover. */
  markLost(reason: string): void {
    if (this.#state !== 'held') return;
    this.#state = 'lost';
    clearTimeout(this.#timer);
    this.#controller.abort(new SessionError('ERR_LOCK_LOST', `Lock on session lost: ${reason}`));
  }

  #arm(): void {
    clearTimeout(this.#timer);
    const delay = Math.max(0, this.#expiresAt - Date.now());
    this.#timer = setTimeout(() => {
      if (this.#state !== 'held') return;
      this.markLost(`its lease of ${this.#leaseMs} ms ran out without extend()`);
      this.#hooks.expired?.(this.token);
    }, delay);
    this.#timer.unref();
  }

  #lostError(): SessionError {
    const reason = this.#controller.signal.reason;
    if (reason instanceof SessionError) return reason;
    return new SessionError('ERR_LOCK_LOST', 'Lock on session is not held');
  }
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
