import type { HeldLease, SessionRecord } from '@sessile/core';
import {
  type ClaimedRecord,
  type LeaseBackend,
  type LeaseClaim,
  LeaseLocks,
  lockLost,
} from '@sessile/core/store';
import type BetterSqlite3 from 'better-sqlite3';
import type { Executor } from './executor.js';
import { quote, type SchemaNames } from './schema.js';

/** What a claim with its session read comes to. */

/** Reads the live record stored under an id, as `store.get` would; runs inside the claim's transaction. */
export type ReadRecord = (id: string, now: number) => SessionRecord | undefined;

/**
 * Session locks kept as leases in a table of the same database, so every process that opens
 * the file shares them. Each claim is one upsert, its own write transaction: it takes the row
 * when the id is free or its lease has run out, which is how a crashed holder stops blocking.
 * A claim that reads the session does both in one transaction, and the store's fenced writes
 * free the lease in theirs (`releasesWithWrite`).
 */
class SqliteLeases implements LeaseBackend {
  readonly releasesWithWrite = true;
  readonly #executor: Executor;
  readonly #take: BetterSqlite3.Statement<[string, string, number, number]>;
  readonly #extend: BetterSqlite3.Statement<[number, string, string, number]>;
  readonly #free: BetterSqlite3.Statement<[string, string, number]>;
  readonly #takeAndRead: BetterSqlite3.Transaction<(claim: LeaseClaim) => ClaimedRecord>;

  constructor(
    db: BetterSqlite3.Database,
    names: SchemaNames,
    executor: Executor,
    readRecord: ReadRecord,
  ) {
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
    // A record that fails to decode throws inside the transaction, which rolls the claim back:
    // nobody is left holding a lease for a session that cannot be loaded.
    this.#takeAndRead = db.transaction(({ key, id, token, expiresAt }: LeaseClaim) => {
      const now = Date.now();
      if (this.#take.run(key, token, expiresAt, now).changes !== 1) return { taken: false };
      return { taken: true, record: readRecord(id, now) };
    });
  }

  claim({ key, token, expiresAt }: LeaseClaim): Promise<boolean> {
    const now = Date.now();
    return this.#executor.write(() => this.#take.run(key, token, expiresAt, now).changes === 1);
  }

  claimAndGet(claim: LeaseClaim): Promise<ClaimedRecord> {
    return this.#executor.write(() => this.#takeAndRead.immediate(claim));
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
  constructor(
    db: BetterSqlite3.Database,
    names: SchemaNames,
    executor: Executor,
    readRecord: ReadRecord,
  ) {
    super(new SqliteLeases(db, names, executor, readRecord));
  }
}

/** Checks the lease, then runs the write; with `lease.release`, frees the lease as it checks. */
export type FencedWrite = (lease: HeldLease, operation: () => unknown) => unknown;

export function fencedWrite(
  db: BetterSqlite3.Database,
  names: SchemaNames,
): BetterSqlite3.Transaction<FencedWrite> {
  const locks = quote(names.locks);
  const holds = db
    .prepare<[string, string, number], unknown>(
      `SELECT 1 FROM ${locks} WHERE id = ? AND token = ? AND expires_at > ?`,
    )
    .pluck();
  // Deleting the row is the check: it matches only a lease this token still holds. Any failure
  // later in the transaction rolls the delete back with the write.
  const frees = db.prepare<[string, string, number]>(
    `DELETE FROM ${locks} WHERE id = ? AND token = ? AND expires_at > ?`,
  );
  return db.transaction((lease: HeldLease, operation: () => unknown) => {
    const { key, token } = lease;
    const now = Date.now();
    const held =
      lease.release === true
        ? frees.run(key, token, now).changes === 1
        : holds.get(key, token, now) !== undefined;
    if (!held) throw lockLost('its lease ran out or another holder took it over');
    return operation();
  });
}
