import { setMaxListeners } from 'node:events';
import {
  type AcquireOptions,
  generateToken,
  type LeaseBackend,
  LeaseLock,
  type LockManager,
  lockManagerClosed,
  normalizeAcquireOptions,
  pollAcquire,
  type SessionLock,
  toStoreIoError,
} from '@sessile/core';
import type BetterSqlite3 from 'better-sqlite3';
import type { Executor } from './executor.js';
import { quote, type SchemaNames } from './schema.js';

/**
 * Session locks kept as leases in a table of the same database, so every process that opens
 * the file shares them. Each attempt is one upsert, its own write transaction: it takes the row
 * when the id is free or its lease has run out, which is how a crashed holder stops blocking.
 */
export class SqliteLocks implements LockManager {
  readonly #executor: Executor;
  readonly #take: BetterSqlite3.Statement<[string, string, number, number]>;
  readonly #extend: BetterSqlite3.Statement<[number, string, string, number]>;
  readonly #free: BetterSqlite3.Statement<[string, string], { expiresAt: number }>;
  readonly #closer = new AbortController();
  /** Locks this process holds, by id, so a takeover here tells the old holder at once. */
  readonly #holders = new Map<string, LeaseLock>();

  constructor(db: BetterSqlite3.Database, names: SchemaNames, executor: Executor) {
    const table = quote(names.locks);
    this.#executor = executor;
    // Every waiting acquire listens for close(); there is no leak to warn about.
    setMaxListeners(0, this.#closer.signal);
    this.#take = db.prepare(
      `INSERT INTO ${table} (id, token, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
       WHERE ${table}.expires_at <= ?`,
    );
    this.#extend = db.prepare(
      `UPDATE ${table} SET expires_at = ? WHERE id = ? AND token = ? AND expires_at > ?`,
    );
    this.#free = db.prepare(
      `DELETE FROM ${table} WHERE id = ? AND token = ? RETURNING expires_at AS expiresAt`,
    );
  }

  async acquire(id: string, options?: AcquireOptions): Promise<SessionLock> {
    const { waitMs, leaseMs, signal } = normalizeAcquireOptions(id, options);
    const stop =
      signal === undefined ? this.#closer.signal : AbortSignal.any([signal, this.#closer.signal]);
    return pollAcquire(() => this.#attempt(id, leaseMs), { waitMs, signal: stop });
  }

  async close(): Promise<void> {
    this.#closer.abort(lockManagerClosed());
  }

  async #attempt(id: string, leaseMs: number): Promise<LeaseLock | undefined> {
    const token = generateToken();
    const now = Date.now();
    const expiresAt = now + leaseMs;
    let taken: boolean;
    try {
      taken = await this.#executor.write(
        () => this.#take.run(id, token, expiresAt, now).changes === 1,
      );
    } catch (error) {
      throw toStoreIoError(error, 'lock acquire');
    }
    if (!taken) return undefined;
    if (this.#closer.signal.aborted) {
      // close() came while this attempt was committing: hand the row straight back.
      await this.#executor.write(() => this.#free.run(id, token)).catch(() => {});
      throw lockManagerClosed();
    }
    // Its timer may not have fired yet, but its lease is over: the table just said so.
    this.#holders.get(id)?.markLost('its lease ran out and another acquirer took the lock');
    const lock = new LeaseLock({ id, token, leaseMs, expiresAt, backend: this.#backend(id) });
    this.#holders.set(id, lock);
    return lock;
  }

  #forget(id: string, token: string): void {
    if (this.#holders.get(id)?.token === token) this.#holders.delete(id);
  }

  #backend(id: string): LeaseBackend {
    return {
      extend: async (token, expiresAt) => {
        try {
          return await this.#executor.write(
            () => this.#extend.run(expiresAt, id, token, Date.now()).changes === 1,
          );
        } catch (error) {
          throw toStoreIoError(error, 'lock extend');
        }
      },
      release: async (token) => {
        this.#forget(id, token);
        try {
          return await this.#executor.write(() => {
            const freed = this.#free.get(id, token);
            return freed !== undefined && freed.expiresAt > Date.now();
          });
        } catch (error) {
          throw toStoreIoError(error, 'lock release');
        }
      },
      expired: (token) => {
        this.#forget(id, token);
        // The lease is over either way; clearing the row early just spares the next acquirer a takeover.
        this.#executor.write(() => this.#free.get(id, token)).catch(() => {});
      },
    };
  }
}
