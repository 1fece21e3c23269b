import { type LeaseBackend, type LeaseClaim, LeaseLocks } from '@sessile/core/store';
import type { Database } from './database.js';
import type { LockListener } from './listener.js';
import { qualified, type SchemaNames } from './schema.js';

/** The backstop poll of a head waiter: NOTIFY wakes it sooner, this bounds a missed one. */
const MAX_POLL_DELAY_MS = 250;

/**
 * Session locks as lease rows (id, token, expires_at) in a table beside the sessions. Every
 * hook is one autocommit statement, so no pooled connection is held while a lock is held, and a
 * release NOTIFYs the store's channel in its own transaction, waking waiters on every host.
 */
class PostgresLeases implements LeaseBackend {
  readonly maxPollDelayMs = MAX_POLL_DELAY_MS;
  readonly #db: Database;
  readonly #listener: LockListener;
  readonly #channel: string;
  readonly #claim: string;
  readonly #extend: string;
  readonly #release: string;
  readonly #drop: string;

  constructor(db: Database, names: SchemaNames, listener: LockListener, channel: string) {
    const table = qualified(names, names.locks);
    this.#db = db;
    this.#listener = listener;
    this.#channel = channel;
    // Takes the row when the key is free or its lease has ended: a crashed holder blocks one lease at most.
    this.#claim = `INSERT INTO ${table} AS held (id, token, expires_at) VALUES ($1, $2, $3)
      ON CONFLICT (id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
      WHERE held.expires_at <= $4`;
    this.#extend = `UPDATE ${table} SET expires_at = $3 WHERE id = $1 AND token = $2 AND expires_at > $4`;
    // pg_notify runs in the deleting transaction, so waiters hear of the release only once it commits.
    this.#release = `WITH freed AS (
        DELETE FROM ${table} WHERE id = $1 AND token = $2 AND expires_at > $3 RETURNING id)
      SELECT pg_notify($4, id) FROM freed`;
    this.#drop = `WITH freed AS (
        DELETE FROM ${table} WHERE id = $1 AND token = $2 RETURNING id)
      SELECT pg_notify($3, id) FROM freed`;
  }

  async claim({ key, token, expiresAt }: LeaseClaim): Promise<boolean> {
    const result = await this.#db.query(`${this.#channel}_claim`, this.#claim, [
      key,
      token,
      expiresAt,
      Date.now(),
    ]);
    return result.rowCount === 1;
  }

  async extend({ key, token, expiresAt }: LeaseClaim): Promise<boolean> {
    const result = await this.#db.query(`${this.#channel}_extend`, this.#extend, [
      key,
      token,
      expiresAt,
      Date.now(),
    ]);
    return result.rowCount === 1;
  }

  async release({ key, token }: LeaseClaim): Promise<boolean> {
    const result = await this.#db.query(`${this.#channel}_release`, this.#release, [
      key,
      token,
      Date.now(),
      this.#channel,
    ]);
    return result.rowCount === 1;
  }

  expired({ key, token }: LeaseClaim): void {
    // The lease is over either way; dropping the row spares the next acquirer a takeover.
    this.#db
      .query(`${this.#channel}_drop`, this.#drop, [key, token, this.#channel])
      .catch(() => {});
  }

  watch(key: string, wake: () => void): () => void {
    return this.#listener.watch(key, wake);
  }

  close(): Promise<void> {
    return this.#listener.close();
  }
}

/** Session locks shared by every process, on every host, that opens the same table. */
export class PostgresLocks extends LeaseLocks {
  constructor(db: Database, names: SchemaNames, listener: LockListener, channel: string) {
    super(new PostgresLeases(db, names, listener, channel));
  }
}
