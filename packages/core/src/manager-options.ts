import type { SessionCodec } from './codecs.js';
import { SessionError } from './errors.js';
import { DEFAULT_LEASE_MS, DEFAULT_WAIT_MS } from './locks/lease.js';
import type { OwnerLimitAction } from './owner-sessions.js';
import type { CleanupPolicy, SweepRun } from './policies.js';
import type { SessionStore } from './types.js';
import {
  assertDuration,
  assertKnownOptions,
  assertPositiveInteger,
  describeValue,
  MAX_DATE_MS,
  MAX_TIMER_MS,
} from './util.js';

export const DEFAULT_IDLE_TIMEOUT_MS = 30 * 60_000;
export const DEFAULT_ABSOLUTE_TIMEOUT_MS = 24 * 60 * 60_000;
export const DEFAULT_SWEEP_INTERVAL_MS = 5 * 60_000;
/**
 * The longest `idleTimeoutMs` and `absoluteTimeoutMs`: half the range of a `Date` (about 137,000
 * years), so that `now + timeout`, a session's expiry, is a time a `Date` can hold.
 */
export const MAX_SESSION_TIMEOUT_MS = MAX_DATE_MS / 2;

/** `touchAfterMs` when not given: a tenth of `idleTimeoutMs`, at most 60 s. */
export function defaultTouchAfterMs(idleTimeoutMs: number): number {
  return Math.min(60_000, Math.floor(idleTimeoutMs / 10));
}

export interface SessionLockOptions {
  /** How long `open()` waits for another request on the same session. Default 10 000. */
  waitMs?: number;
  /** The lock's lease; it is extended on a timer while the session is open. Default 30 000. */
  leaseMs?: number;
  /** How often the lease is extended. Default a third of `leaseMs`. */
  extendEveryMs?: number;
}

export interface SessionManagerOptions {
  store: SessionStore;
  /** Turns sessions into stored bytes. Default `jsonCodec()`; use `aesGcmCodec()` to encrypt at rest. */
  codec?: SessionCodec;
  /** A session ends this long after its last access. Default 30 minutes. */
  idleTimeoutMs?: number;
  /** A session ends this long after it began, however active. Default 24 hours. */
  absoluteTimeoutMs?: number;
  /** An unmodified session's expiry is pushed back only once this much time has passed since its last access. Default a tenth of `idleTimeoutMs`, at most 60 s. */
  touchAfterMs?: number;
  /** Lock each session from `open()` to `commit()`, so parallel requests never lose each other's writes. `false` turns locking off. Default on. */
  lock?: boolean | SessionLockOptions;
  /** After `regenerate()`, the old id stays readable this long for requests already in flight. Default 0: deleted at once. */
  regenerateGraceMs?: number;
  /** When expired sessions are swept. Default `sweepEvery(5 minutes)` for stores with `expiry: 'sweep'`, else `manual()`. */
  cleanup?: CleanupPolicy;
  /** Errors that do not fail a request: corrupt records (the client gets a fresh session), cleanup failures, lock release failures. Default `console.error`. */
  onError?: (error: unknown) => void;
  /** Called after each cleanup run that was not skipped as busy: for metrics and logs. */
  onSweep?: (run: SweepRun) => void;
  /**
   * The most sessions one owner may have at once; `session.setOwner()` enforces it holding the
   * owner's lock. Needs a store with `capabilities.ownerIndex`. Default: no limit.
   */
  maxSessionsPerOwner?: number;
  /**
   * What a login over `maxSessionsPerOwner` does: `'evict-oldest'` deletes the owner's sessions
   * that began first, `'refuse'` rejects `setOwner()` with `ERR_OWNER_LIMIT`. Default `'evict-oldest'`.
   */
  onLimit?: OwnerLimitAction;
}

// Every option, so that an option added to SessionManagerOptions fails to compile until listed.
const MANAGER_OPTIONS_PRESENT: Record<keyof SessionManagerOptions, true> = {
  store: true,
  codec: true,
  idleTimeoutMs: true,
  absoluteTimeoutMs: true,
  touchAfterMs: true,
  lock: true,
  regenerateGraceMs: true,
  cleanup: true,
  onError: true,
  onSweep: true,
  maxSessionsPerOwner: true,
  onLimit: true,
};
/** The names of `SessionManagerOptions`. */
export const MANAGER_OPTIONS: readonly string[] = Object.keys(MANAGER_OPTIONS_PRESENT);

/**
 * Timeouts that only enter arithmetic (an expiry, a touch threshold) may exceed a timer's
 * limit: a 30-day session is common. Lock durations arm timers and keep the timer limit.
 */
export function checkDuration(
  value: unknown,
  name: string,
  allowZero: boolean,
  max = Number.MAX_SAFE_INTEGER,
): number {
  assertDuration(value, name, { zero: allowZero, max });
  return value;
}

export function checkOwnerLimit(
  options: SessionManagerOptions,
  store: SessionStore,
  prefix = '',
): { maxSessionsPerOwner: number | undefined; onLimit: OwnerLimitAction } {
  const { maxSessionsPerOwner, onLimit = 'evict-oldest' } = options;
  if (onLimit !== 'evict-oldest' && onLimit !== 'refuse') {
    throw new TypeError(
      `${prefix}onLimit must be 'evict-oldest' or 'refuse', got ${describeValue(onLimit)}`,
    );
  }
  if (maxSessionsPerOwner === undefined) {
    if (options.onLimit !== undefined)
      throw new TypeError(`${prefix}onLimit needs maxSessionsPerOwner`);
    return { maxSessionsPerOwner, onLimit };
  }
  assertPositiveInteger(maxSessionsPerOwner, `${prefix}maxSessionsPerOwner`);
  if (!store.capabilities.ownerIndex) {
    throw new SessionError(
      'ERR_UNSUPPORTED',
      `${prefix}maxSessionsPerOwner needs a store with an owner index (capabilities.ownerIndex)`,
    );
  }
  return { maxSessionsPerOwner, onLimit };
}

export function normalizeLockOptions(
  lock: boolean | SessionLockOptions | undefined,
  prefix = '',
): Required<SessionLockOptions> | undefined {
  if (lock === false) return undefined;
  const options = lock === true || lock === undefined ? {} : lock;
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`${prefix}lock must be a boolean or { waitMs, leaseMs, extendEveryMs }`);
  }
  assertKnownOptions(options, ['waitMs', 'leaseMs', 'extendEveryMs'], `${prefix}lock`);
  const waitMs = checkDuration(
    options.waitMs ?? DEFAULT_WAIT_MS,
    `${prefix}lock.waitMs`,
    true,
    MAX_TIMER_MS,
  );
  const leaseMs = checkDuration(
    options.leaseMs ?? DEFAULT_LEASE_MS,
    `${prefix}lock.leaseMs`,
    false,
    MAX_TIMER_MS,
  );
  const extendEveryMs = checkDuration(
    options.extendEveryMs ?? Math.max(1, Math.floor(leaseMs / 3)),
    `${prefix}lock.extendEveryMs`,
    false,
    MAX_TIMER_MS,
  );
  if (extendEveryMs >= leaseMs)
    throw new TypeError(`${prefix}lock.extendEveryMs must be less than lock.leaseMs`);
  return { waitMs, leaseMs, extendEveryMs };
}
