import { type LeaseBackend, type LeaseClaim, LeaseLocks } from '@sessile/core/store';
import type BetterSqlite3 from 'better-sqlite3';
import type { Executor } from './executor.js';
import { quote, type SchemaNames } from './schema.js';

/**
 * Session locks kept as leases in a table of the same database, so every process that opens
 * the file shares them. Each claim is one upsert, its own write transaction: it takes the row
 * when the id is free or its lease has run out, which is how a crashed holder stops blocking.
 */
class SqliteLeases implements LeaseBackend {
  readonly #executor: Executor;
  readonly #take: BetterSqlite3.Statement<[string, string, number, number]>;
  readonly #extend: BetterSqlite3.Statement<[number, string, string, number]>;
  readonly #free: BetterSqlite3.Statement<[string, string, number]>;

  constructor(db: BetterSqlite3.Database, names: SchemaNames, executor: Executor) {
    const table = quote(names.locks);
    this.#executor = executor;
    this.#take = db.prepare(
      `INSERT INTO ${table} (id, token, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
       WHERE ${table}.expires_at <= ?`,
    );
    this.#extend = db.prepare(
      `UPDATE ${table} SET expires_at = ? WHERE id = ? AND token = ? AND expires_at > ?`,
    );
    // `run` steps to the end, so an error from the autocommit reaches the caller.
    this.#free = db.prepare(`DELETE FROM ${table} WHERE id = ? AND token = ? AND expires_at > ?`);
  }

  claim({ key, token, expiresAt }: LeaseClaim): Promise<boolean> {
    const now = Date.now();
    return this.#executor.write(() => this.#take.run(key, token, expiresAt, now).changes === 1);
  }

  extend({ key, token, expiresAt }: LeaseClaim): Promise<boolean> {
    return this.#executor.write(
      () => this.#extend.run(expiresAt, key, token, Date.now()).changes === 1,
    );
  }

  release({ key, token }: LeaseClaim): Promise<boolean> {
    return this.#executor.write(() => this.#free.run(key, token, Date.now()).changes === 1);
  }

  expired({ key, token }: LeaseClaim): void {
    // The lease is over either way; clearing the row early spares the next acquirer a takeover.
    this.#executor
      .write(() => this.#free.run(key, token, Number.NEGATIVE_INFINITY))
      .catch(() => {});
  }
}

/** Session locks shared by every process that opens the database file. */
export class SqliteLocks extends LeaseLocks {
  constructor(db: BetterSqlite3.Database, names: SchemaNames, executor: Executor) {
    super(new SqliteLeases(db, names, executor));
  }
}
