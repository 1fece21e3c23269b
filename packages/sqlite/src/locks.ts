import type { HeldLease } from '@sessile/core';
import {
  type ClaimedRecord,
  type LeaseBackend,
  type LeaseClaim,
  LeaseLocks,
  lockLost,
} from '@sessile/core/store';
import type BetterSqlite3 from 'better-sqlite3';
import type { Executor } from './executor.js';
import type { RecordReader, StoredRow } from './records.js';
import { quote, type SchemaNames } from './schema.js';
import { prepare, unreadableExpiry } from './statements.js';

const NOT_TAKEN: ClaimedRecord = { taken: false };

/**
 * Session locks kept as leases in a table of the same database, so every process that opens
 * the file shares them. Each claim is one upsert, its own write transaction: it takes the row
 * when the id is free or its lease has run out, which is how a crashed holder stops blocking.
 * A claim that reads the session is one statement that returns the live row with the lease, and
 * the store's fenced writes free the lease in their own transaction (`releasesWithWrite`).
 */
class SqliteLeases implements LeaseBackend {
  readonly releasesWithWrite = true;
  /** Its leases are rows written through the store's connection, gone once the store closes. */
  readonly releasesOnClose = true;
  readonly #executor: Executor;
  readonly #records: RecordReader;
  readonly #take: BetterSqlite3.Statement<[string, string, number, number]>;
  readonly #extend: BetterSqlite3.Statement<[number, string, string, number]>;
  readonly #free: BetterSqlite3.Statement<[string, string, number]>;
  readonly #takeAndRead: BetterSqlite3.Statement<
    [string, string, number, number, string, number, string, number, string, number],
    StoredRow
  >;

  constructor(
    db: BetterSqlite3.Database,
    names: SchemaNames,
    executor: Executor,
    records: RecordReader,
  ) {
    const table = quote(names.locks);
    this.#executor = executor;
    this.#records = records;
    // A lease whose end is no number (a hand edit) would never run out and hold its id forever.
    const over = `(${table}.expires_at <= ? OR ${unreadableExpiry(`${table}.expires_at`)})`;
    this.#take = prepare(
      db,
      `INSERT INTO ${table} (id, token, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
       WHERE ${over}`,
    );
    this.#extend = prepare(
      db,
      `UPDATE ${table} SET expires_at = ? WHERE id = ? AND token = ? AND expires_at > ?`,
    );
    // `run` steps to the end, so an error from the autocommit reaches the caller.
    this.#free = prepare(db, `DELETE FROM ${table} WHERE id = ? AND token = ? AND expires_at > ?`);
    // The upsert returns a row only when it took the lease, and its subqueries read the session
    // in the same write transaction: a claim and its read cost one statement and one commit.
    const live = (column: string) =>
      `(SELECT ${column} FROM ${quote(names.records)} WHERE id = ? AND expires_at > ?)`;
    this.#takeAndRead = prepare(
      db,
      `INSERT INTO ${table} (id, token, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
       WHERE ${over}
       RETURNING ${live('data')} AS data, ${live('expires_at')} AS expiresAt, ${live('owner')} AS owner`,
    );
  }

  claim({ key, token, expiresAt }: LeaseClaim): Promise<boolean> {
    const now = Date.now();
    return this.#executor.write(() => this.#take.run(key, token, expiresAt, now).changes === 1);
  }

  claimAndGet({ key, id, token, expiresAt }: LeaseClaim): Promise<ClaimedRecord> {
    return this.#executor.write(() => {
      const now = Date.now();
      // all(), not get(): get() resets the statement after its first row, and an autocommit
      // commits inside that reset, where better-sqlite3 drops a failed commit's error.
      const [row] = this.#takeAndRead.all(key, token, expiresAt, now, id, now, id, now, id, now);
      if (row === undefined) return NOT_TAKEN;
      // The subqueries read null when no live row has the id (data is NOT NULL in the table).
      if (row.data === null) return { taken: true, record: undefined };
      try {
        return { taken: true, record: this.#records.read(row, id, now) };
      } catch (error) {
        // Nobody is left holding a lease for a session that cannot be loaded.
        this.#freeQuietly(key, token);
        throw error;
      }
    });
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

  /** Frees a lease just taken, in the claim's own transaction when it is in one (group commit). */
  #freeQuietly(key: string, token: string): void {
    const free = () => this.#free.run(key, token, Number.NEGATIVE_INFINITY);
    try {
      free();
    } catch {
      // Locked by another process for now: the executor retries it.
      this.#executor.write(free).catch(() => {});
    }
  }
}

/** Session locks shared by every process that opens the database file. */
export class SqliteLocks extends LeaseLocks {
  /** `file` is the database's absolute path, which `ERR_STORE_IO` messages name. */
  constructor(
    db: BetterSqlite3.Database,
    names: SchemaNames,
    executor: Executor,
    file: string,
    records: RecordReader,
  ) {
    // SQLite's own messages ("database or disk is full") name no file.
    super(new SqliteLeases(db, names, executor, records), { location: file });
  }
}

/** Checks the lease, then runs the write; with `lease.release`, frees the lease as it checks. */
export type FencedWrite = (lease: HeldLease, operation: () => unknown) => unknown;

export function fencedWrite(
  db: BetterSqlite3.Database,
  names: SchemaNames,
): BetterSqlite3.Transaction<FencedWrite> {
  const locks = quote(names.locks);
  const holds = prepare<[string, string, number], unknown>(
    db,
    `SELECT 1 FROM ${locks} WHERE id = ? AND token = ? AND expires_at > ?`,
  ).pluck();
  // Deleting the row is the check: it matches only a lease this token still holds. Any failure
  // later in the transaction rolls the delete back with the write.
  const frees = prepare<[string, string, number]>(
    db,
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
