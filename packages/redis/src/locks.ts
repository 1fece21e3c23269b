import { type LeaseBackend, type LeaseClaim, LeaseLocks } from '@sessile/core/store';
import type { Connection } from './connection.js';
import type { KeyLayout } from './keys.js';
import { EXTEND_LOCK, RELEASE_LOCK } from './scripts.js';

/** The head waiter's backstop poll when a release message was missed (a reconnect, a lost message). */
const BACKSTOP_POLL_MS = 250;

/**
 * Leases as Redis keys: a claim is `SET NX PX` with our token, extend and release are
 * compare-and-act scripts, and a release publishes the key so waiters on every host try at once.
 */
class RedisLeases implements LeaseBackend {
  readonly maxPollDelayMs = BACKSTOP_POLL_MS;
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
    return connection.call('lock acquire', async () => {
      const reply = await connection.plain.set(this.#keys.lock(key), token, {
        expiration: { type: 'PX', value: leaseMsUntil(expiresAt) },
        condition: 'NX',
      });
      return reply !== null;
    });
  }

  extend({ key, token, expiresAt }: LeaseClaim): Promise<boolean> {
    const connection = this.#connection;
    const args = [token, String(leaseMsUntil(expiresAt))];
    return connection.call('lock extend', async () => {
      return (await EXTEND_LOCK.run(connection.plain, [this.#keys.lock(key)], args)) === 1;
    });
  }

  release({ key, token }: LeaseClaim): Promise<boolean> {
    const connection = this.#connection;
    const args = [token, this.#keys.releaseChannel, key];
    return connection.call('lock release', async () => {
      return (await RELEASE_LOCK.run(connection.plain, [this.#keys.lock(key)], args)) === 1;
    });
  }

  expired(claim: LeaseClaim): void {
    // Redis drops the key by itself; releasing now only spares waiters a clock-skew margin.
    this.release(claim).catch(() => {});
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
