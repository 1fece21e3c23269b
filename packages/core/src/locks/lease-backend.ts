import type { HeldLease, SessionRecord } from '../types.js';

/** One lease on one key: who asks (`token`), for which session, and until when. */
export interface LeaseClaim {
  /** What the backend locks: the session id, or a stripe that several ids share. */
  readonly key: string;
  /** The session id the lock was asked for. */
  readonly id: string;
  readonly token: string;
  /** When the lease ends, in ms since the epoch. */
  readonly expiresAt: number;
  /** True once this acquire has been reported to `onWait`: it is queued or was refused before. */
  readonly waited: boolean;
  /**
   * True when this claim was sent before and that send failed with a lost connection: the
   * backend may have taken the key for `token` with only its answer lost (see `lostConnection`).
   */
  readonly resent?: boolean;
}

/**
 * What a store supplies to `LeaseLocks`: claiming, extending and releasing a lease on a key. Each
 * hook is atomic in the backend (one statement, one script, under a guard) and answers whether it
 * acted. Errors reject; the kit reports them as `ERR_STORE_IO`.
 */
export interface LeaseBackend {
  /** Takes `key` for `claim.token` when it is free or its lease has ended. True when taken. */
  claim(claim: LeaseClaim): boolean | Promise<boolean>;
  /**
   * `claim`, and when taken, the record stored under `claim.id` as a `get` issued after the
   * claim would return it, in one round trip. Offering it gives `LeaseLocks` its
   * `acquireAndGet`, which `SessionManager.open()` uses to lock and load in one go.
   */
  claimAndGet?(claim: LeaseClaim): Promise<ClaimedRecord>;
  /** Moves the lease end to `claim.expiresAt` while `claim.token` still holds `key`. */
  extend(claim: LeaseClaim): boolean | Promise<boolean>;
  /** Frees `key` if `claim.token` still holds it with a lease that has not ended. */
  release(claim: LeaseClaim): boolean | Promise<boolean>;
  /**
   * Runs a fenced write so that no other process can claim the key while it runs, and only if
   * `lease.token` still holds the key with a lease that has not ended; otherwise rejects with
   * `lockLost()`. Backends whose writes share a transaction with the lease (SQL) leave this out
   * and check the lease in the store's write hook instead.
   */
  fence?<T>(lease: HeldLease, write: () => Promise<T>): Promise<T>;
  /**
   * True when the store's fenced writes free the lease in their own transaction when given
   * `lease.release`, so a commit and its unlock cost one round trip.
   */
  readonly releasesWithWrite?: boolean;
  /**
   * True when the backend cannot free a lease once its store is closed (the leases live in the
   * store's own connection): `close()` then releases the locks still held, so that other
   * processes need not wait out their leases, and their holders' `release()` resolves.
   */
  readonly releasesOnClose?: boolean;
  /** Called once when a lease ends without `extend` (or an extend found it lost); the backend may free the key early. */
  expired?(claim: LeaseClaim): void;
  /**
   * Calls `wake` when `key` may have been freed by another process, so the waiter at the head of
   * this process's queue tries again at once instead of at its next poll. Returns an unsubscribe.
   */
  watch?(key: string, wake: () => void): () => void;
  /**
   * True when `error`, as a claim rejected with it, says the connection to the backend was lost
   * or could not be made (a network drop, a server restart or failover), so that the same claim
   * sent again once the connection is back may get past it. Never a timeout, nor an error of the
   * claim itself.
   *
   * Offering it makes a waiting acquire outlive a brief outage: `LeaseLocks` sends a waiting
   * claim that failed so again, with the same token and `resent` set, backing off, until it gets
   * an answer, the waiter leaves, acquiring stops, or `reconnectWithinMs` has passed since the
   * loss. A lost connection does not say whether the backend ran the claim, so a backend that
   * offers this must take a claim idempotently: a key that already holds `claim.token` counts
   * as taken by it. Sent any number of times, a claim then takes the key once, under one token,
   * and never leaves it held by nobody. A resend carries the first send's `expiresAt` while that
   * lease runs, and a new one only once it has ended, so a backend may keep the lease end of a
   * key that holds the token, or move it to `claim.expiresAt`: either agrees with the kit.
   */
  lostConnection?(error: unknown): boolean;
  /**
   * How long after a claim first failed with a lost connection it is sent again: the store's
   * command or query timeout, so that a longer outage fails the waiter with `ERR_STORE_IO` as
   * it fails every other call. Default: until the waiter's own `waitMs` runs out.
   */
  readonly reconnectWithinMs?: number;
  /** Longest pause between two claims by the head waiter. Default `MAX_POLL_DELAY_MS`. */
  readonly maxPollDelayMs?: number;
  /**
   * Called once when acquiring stops (`LeaseLocks#stopAcquiring`, as the store's `close()`
   * begins): waits inside the backend end soon, so that `close()` need not wait them out.
   * `LeaseFiles` ends its guards' waits (`HostGuards#stopAcquiring`).
   */
  stopAcquiring?(): void;
  close?(): void | Promise<void>;
}

/** What `claimAndGet` comes to: not taken, or taken with the record read under the lease. */
/** Socket errors of a connection that broke or could not be made. */
const LOST_SOCKET_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
]);

/**
 * Whether `error` carries the code of a socket that broke or could not be made (`ECONNRESET`,
 * `ECONNREFUSED` and the like): the part of a network store's `lostConnection` that does not
 * depend on its client library.
 */
export function lostSocket(error: Error): boolean {
  const { code } = error as { code?: unknown };
  return typeof code === 'string' && LOST_SOCKET_CODES.has(code);
}

export type ClaimedRecord = { taken: false } | { taken: true; record: SessionRecord | undefined };

/**
 * `claimAndGet` for a backend whose claim and read are two steps: claims, then reads with
 * `read`. A read that fails frees the lease again before the error reaches the caller, so the
 * next opener is not kept waiting a lease long for a holder that never was.
 */
export async function claimThenRead(
  backend: Pick<LeaseBackend, 'claim' | 'release'>,
  claim: LeaseClaim,
  read: (id: string) => Promise<SessionRecord | undefined>,
): Promise<ClaimedRecord> {
  if (!(await backend.claim(claim))) return { taken: false };
  try {
    return { taken: true, record: await read(claim.id) };
  } catch (error) {
    try {
      await backend.release(claim);
    } catch {
      // The read's error is the one to report; the lease ends by itself.
    }
    throw error;
  }
}
