import {
  type ClaimedRecord,
  type LeaseBackend,
  type LeaseClaim,
  LeaseLocks,
} from '@sessile/core/store';
import type { Batches, BatchKind } from './batches.js';
import { type Database, lostConnection } from './database.js';
import { type LockListener, notifyPayloadSql } from './listener.js';
import { recordOf, type StoredRow } from './records.js';
import { claimConflict, qualified, type SchemaNames } from './schema.js';

/** A claim's outcome in a batch: a record that failed to decode is its call's error alone. */
type ClaimedRead = ClaimedRecord | { taken: true; unreadable: unknown };

/** The backstop poll of a head waiter: NOTIFY wakes it sooner, this bounds a missed one. */
const MAX_POLL_DELAY_MS = 250;

/**
 * Session locks as lease rows (id, token, expires_at, waited) in a table beside the sessions.
 * Every hook is one autocommit statement, so no pooled connection is held while a lock is held.
 * A refused claim marks the row `waited`, and the release of a row so marked NOTIFYs the store's
 * channel in its own transaction, waking waiters on every host. Releases nobody waits for send
 * no NOTIFY: PostgreSQL serializes the commits of notifying transactions, WAL flush included,
 * under one cluster-wide lock. A claim may read its session in the same call, and the store's
 * fenced writes may release.
 *
 * A waiting acquire's claim outlives a lost connection: a network drop or a server restart
 * wakes the waiters (the LISTEN connection is lost too) onto pooled connections lost in the same
 * drop, and a waiter with time left must not fail for that. `LeaseLocks` sends such a claim
 * again with its own token (see `lostConnection`), which every claim statement takes
 * idempotently.
 */
class PostgresLeases implements LeaseBackend {
  readonly maxPollDelayMs = MAX_POLL_DELAY_MS;
  readonly releasesWithWrite = true;
  /** Its releases go through the store's pool, which its `close()` ends. */
  readonly releasesOnClose = true;
  readonly #claimRead: string;
  readonly #db: Database;
  readonly #listener: LockListener;
  readonly #channel: string;
  readonly #claim: string;
  readonly #extend: string;
  readonly #release: string;
  readonly #drop: string;
  readonly #batches: Batches;
  readonly #claims: BatchKind<LeaseClaim, boolean>;
  readonly #releases: BatchKind<LeaseClaim, boolean>;
  readonly #claimReads: BatchKind<LeaseClaim, ClaimedRead>;

  constructor(
    db: Database,
    names: SchemaNames,
    listener: LockListener,
    channel: string,
    batches: Batches,
  ) {
    const table = qualified(names, names.locks);
    this.#claimRead = `SELECT token, data, float8send("expiresAt") AS "expiresAt", owner FROM ${qualified(names, names.claimRead)}($1, $2, $3, $4, $5)`;
    this.#db = db;
    this.#batches = batches;
    this.#listener = listener;
    this.#channel = channel;
    // Takes the row when the key is free or its lease has ended: a crashed holder blocks one lease
    // at most. A row holding the claim's own token is taken too (a claim sent again after a lost
    // connection); for a claim sent once no row can hold its token, so one statement serves both.
    this.#claim = `INSERT INTO ${table} AS held (id, token, expires_at) VALUES ($1, $2, $3)
      ${claimConflict('$4')} RETURNING held.token`;
    this.#extend = `UPDATE ${table} SET expires_at = $3 WHERE id = $1 AND token = $2 AND expires_at > $4`;
    // pg_notify runs in the deleting transaction, so waiters hear of the release only once it
    // commits; one row per freed lease, notified or not.
    this.#release = `WITH freed AS (
        DELETE FROM ${table} WHERE id = $1 AND token = $2 AND expires_at > $3 RETURNING id, waited)
      SELECT CASE WHEN waited THEN pg_notify($4, ${notifyPayloadSql('id')}) END FROM freed`;
    this.#drop = `WITH freed AS (
        DELETE FROM ${table} WHERE id = $1 AND token = $2 RETURNING id, waited)
      SELECT CASE WHEN waited THEN pg_notify($3, ${notifyPayloadSql('id')}) END FROM freed`;
    // Batches take lease rows in key order, as session batches take theirs, so they never deadlock.
    const claimMany = `INSERT INTO ${table} AS held (id, token, expires_at)
      SELECT q.id, q.token, q.expires_at
      FROM unnest($1::text[], $2::text[], $3::float8[]) AS q(id, token, expires_at)
      ORDER BY q.id COLLATE "C"
      ${claimConflict('$4')} RETURNING held.token`;
    const releaseMany = `WITH freed AS (
        DELETE FROM ${table} WHERE id = ANY (ARRAY(
          SELECT held.id FROM ${table} AS held
          JOIN unnest($1::text[], $2::text[]) AS q(id, token)
            ON held.id = q.id COLLATE "C" AND held.token = q.token
          WHERE held.expires_at > $3 ORDER BY held.id FOR UPDATE OF held))
        RETURNING id, token, waited)
      SELECT token, CASE WHEN waited THEN pg_notify($4, ${notifyPayloadSql('id')}) END FROM freed`;
    const tokensOf = async (name: string, text: string, values: unknown[], calls: LeaseClaim[]) => {
      const { rows } = await db.query<{ token: string }>(`${channel}_${name}`, text, values);
      const done = new Set(rows.map((row) => row.token));
      return calls.map((call) => done.has(call.token));
    };
    this.#claims = {
      one: async ({ key, token, expiresAt }) => {
        const values = [key, token, expiresAt, Date.now()];
        const { rows } = await db.query<{ token: string }>(`${channel}_claim`, this.#claim, values);
        return rows[0]?.token === token;
      },
      many: (calls) =>
        tokensOf(
          'claim_many',
          claimMany,
          [
            calls.map((call) => call.key),
            calls.map((call) => call.token),
            calls.map((call) => call.expiresAt),
            Date.now(),
          ],
          calls,
        ),
    };
    const claimReads = async (calls: LeaseClaim[]): Promise<ClaimedRead[]> => {
      const { rows } = await db.query<StoredRow & { token: string }>(
        `${channel}_claim_read`,
        this.#claimRead,
        [
          calls.map((call) => call.key),
          calls.map((call) => call.token),
          calls.map((call) => call.expiresAt),
          Date.now(),
          calls.map((call) => call.id),
        ],
      );
      const taken = new Map(rows.map((row) => [row.token, row]));
      return calls.map((call): ClaimedRead => {
        const row = taken.get(call.token);
        if (row === undefined) return { taken: false };
        if (row.data === null) return { taken: true, record: undefined };
        // A corrupt row fails its own call only, not the others read in the same statement.
        try {
          return { taken: true, record: recordOf(row) };
        } catch (error) {
          return { taken: true, unreadable: error };
        }
      });
    };
    this.#claimReads = {
      one: async (call) => (await claimReads([call]))[0] ?? { taken: false },
      many: claimReads,
    };
    this.#releases = {
      one: async ({ key, token }) => {
        const values = [key, token, Date.now(), channel];
        return (await db.query(`${channel}_release`, this.#release, values)).rowCount === 1;
      },
      many: (calls) =>
        tokensOf(
          'release_many',
          releaseMany,
          [calls.map((call) => call.key), calls.map((call) => call.token), Date.now(), channel],
          calls,
        ),
    };
  }

  claim(claim: LeaseClaim): Promise<boolean> {
    return this.#batches.run(this.#claims, claim.key, claim);
  }

  /**
   * As a failed read after a claim does (`claimThenRead`), an unreadable record frees the lease
   * it was read under. A claim sent again after a lost connection goes the same way: the
   * claim-read function takes a row holding its token as taken.
   */
  async claimAndGet(claim: LeaseClaim): Promise<ClaimedRecord> {
    const claimed = await this.#batches.run(this.#claimReads, claim.key, claim);
    if (!('unreadable' in claimed)) return claimed;
    await this.release(claim).catch(() => {});
    throw claimed.unreadable;
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

  release(claim: LeaseClaim): Promise<boolean> {
    return this.#batches.run(this.#releases, claim.key, claim);
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

  /**
   * A claim whose connection was lost, as `query` rejects (reset, refused, terminated, the
   * server shutting down or starting): a waiting acquire sends it again on a fresh connection
   * (the pool drops one that failed) for up to `queryTimeoutMs` (`reconnectWithinMs`).
   *
   * Why sending a claim again is safe: a lost connection does not say whether the server ran
   * the claim. If it committed and only the answer was lost, the key is held under this claim's
   * token, and the claim sent again takes a row holding that token as its own
   * (`claimConflict`): however many sends commit, the key is taken once, under one
   * token the kit grants once, and never by two holders, since a row holds one token and a
   * token belongs to one claim. What a resend cannot see is a first send that the server runs
   * only after the resend was refused (the client's side of the network failed, not the
   * server's): that lease then ends on its own, as a crashed holder's does, and the kit's
   * release of the failed claim frees it sooner when the claim fails.
   */
  lostConnection(error: unknown): boolean {
    return lostConnection(error);
  }

  get reconnectWithinMs(): number {
    return this.#db.timeoutMs;
  }
}

/** Session locks shared by every process, on every host, that opens the same table. */
export class PostgresLocks extends LeaseLocks {
  constructor(
    db: Database,
    names: SchemaNames,
    listener: LockListener,
    channel: string,
    batches: Batches,
  ) {
    super(new PostgresLeases(db, names, listener, channel, batches));
  }
}
