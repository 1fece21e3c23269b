import {
  type ClaimedRecord,
  type LeaseBackend,
  type LeaseClaim,
  LeaseLocks,
} from '@sessile/core/store';
import { type Connection, lostConnection } from './connection.js';
import type { KeyLayout } from './keys.js';
import { decodeRecord } from './record-format.js';
import { CLAIM_AND_GET, CLAIM_LOCK, EXTEND_LOCK, RELEASE_LOCK } from './scripts.js';

/** The head waiter's backstop poll when a release message was missed (a reconnect, a lost message). */
const BACKSTOP_POLL_MS = 250;

/**
 * Leases as Redis keys: a claim is `SET NX PX` with our token (or finds the key holding it
 * already, when sent again after a lost connection), extend and release are
 * compare-and-act scripts. A refused claim marks the lock as waited for, and the release of a
 * lock so marked publishes the key so waiters on every host try at once; other releases publish
 * nothing.
 * A claim that reads the record, and a fenced write that frees the lease, are one script each:
 * the lock and the record share the session id as hash tag, so they share a cluster slot.
 */
class RedisLeases implements LeaseBackend {
  readonly maxPollDelayMs = BACKSTOP_POLL_MS;
  readonly releasesWithWrite = true;
  /** Its releases go through the store's connection, which its `close()` ends. */
  readonly releasesOnClose = true;
  readonly #connection: Connection;
  readonly #keys: KeyLayout;
  readonly #watchers = new Map<string, Set<() => void>>();

  constructor(connection: Connection, keys: KeyLayout) {
    this.#connection = connection;
    this.#keys = keys;
  }

  /** Wakes this process's head waiter on `key` when any host released it. */
  released(key: string): void {
    for (const wake of this.#watchers.get(key) ?? []) wake();
  }

  claim({ key, token, expiresAt }: LeaseClaim): Promise<boolean> {
    const connection = this.#connection;
    const keys = [this.#keys.lock(key)];
    const args = [token, String(leaseMsUntil(expiresAt))];
    return connection.call(
      'lock acquire',
      () => CLAIM_LOCK.run(connection.send, keys, args),
      isOne,
    );
  }

  claimAndGet(claim: LeaseClaim): Promise<ClaimedRecord> {
    const connection = this.#connection;
    const keys = [this.#keys.lock(claim.key), this.#keys.record(claim.id)];
    const args = [claim.token, String(leaseMsUntil(claim.expiresAt))];
    // Ordered with the store's calls on the record, so it reads what those made before it wrote.
    return connection
      .inOrder(keys[1] as string, 'lock acquire and get', () =>
        CLAIM_AND_GET.run(connection.send, keys, args),
      )
      .then(async (reply) => {
        const [taken, value] = reply as [number, Buffer | undefined];
        if (taken !== 1) return { taken: false };
        if (value === undefined) return { taken: true, record: undefined };
        try {
          const record = decodeRecord(value);
          return { taken: true, record: record.expiresAt > Date.now() ? record : undefined };
        } catch (error) {
          // Nobody will hold this lease, so it goes before the error reaches the caller.
          await this.release(claim).catch(() => {});
          throw error;
        }
      });
  }

  extend({ key, token, expiresAt }: LeaseClaim): Promise<boolean> {
    const connection = this.#connection;
    const keys = [this.#keys.lock(key)];
    const args = [token, String(leaseMsUntil(expiresAt))];
    return connection.call(
      'lock extend',
      () => EXTEND_LOCK.run(connection.send, keys, args),
      isOne,
    );
  }

  release({ key, token }: LeaseClaim): Promise<boolean> {
    const connection = this.#connection;
    const keys = [this.#keys.lock(key)];
    const args = [token, this.#keys.releaseChannel, key];
    return connection.call(
      'lock release',
      () => RELEASE_LOCK.run(connection.send, keys, args),
      isOne,
    );
  }

  expired(claim: LeaseClaim): void {
    // Redis drops the key by itself; releasing now only spares waiters a clock-skew margin.
    this.release(claim).catch(() => {});
  }

  /**
   * A claim that failed this way is sent again by a waiting acquire, for up to `commandTimeoutMs`
   * (`reconnectWithinMs`): while the client reconnects, or a Sentinel's primary is away, the
   * store refuses it at once without sending it; sent just before the connection broke, it may
   * have taken the key with its answer lost, and both claim scripts take a lock key that holds
   * their token already.
   */
  lostConnection(error: unknown): boolean {
    return lostConnection(error);
  }

  get reconnectWithinMs(): number {
    return this.#connection.timeoutMs;
  }

  watch(key: string, wake: () => void): () => void {
    let wakes = this.#watchers.get(key);
    if (wakes === undefined) {
      wakes = new Set();
      this.#watchers.set(key, wakes);
    }
    wakes.add(wake);
    return () => {
      wakes.delete(wake);
      if (wakes.size === 0 && this.#watchers.get(key) === wakes) this.#watchers.delete(key);
    };
  }
}

/** A relative lease, so a clock difference between this host and Redis does not shorten it. */
function leaseMsUntil(expiresAt: number): number {
  return Math.max(1, Math.ceil(expiresAt - Date.now()));
}

/** Session locks shared by every host that uses the same Redis and prefix. */
export class RedisLocks extends LeaseLocks {
  readonly #leases: RedisLeases;

  constructor(connection: Connection, keys: KeyLayout) {
    const leases = new RedisLeases(connection, keys);
    super(leases);
    this.#leases = leases;
  }

  /** Feeds a message from the release channel to the waiters of this process. */
  released(key: string): void {
    this.#leases.released(key);
  }
}

/** A lock script's answer: 1 when it did what was asked. */
function isOne(reply: unknown): boolean {
  return reply === 1;
}
