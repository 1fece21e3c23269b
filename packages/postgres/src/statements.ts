import { notifyPayloadSql } from './listener.js';
import { qualified, type SchemaNames, VALID_ID } from './schema.js';

/** One named statement: `name` prepares it once per connection. */
export interface Statement {
  name: string;
  text: string;
}

/**
 * The store's SQL, built once per table. Every comparison with expiry takes the app's `now` as a
 * parameter, never the server's clock, as every other store does.
 */
export interface Statements {
  get: Statement;
  upsert: Statement;
  insertUnlessLive: Statement;
  /** The batched forms of the unfenced reads and writes: one array per column. */
  many: {
    /**
     * Fenced updates that release, batched: the rows' columns, then keys, tokens, now and the
     * channel. One row per freed lease: its token and whether its write happened.
     */
    updateIfLiveReleasing: Statement;
    get: Statement;
    upsert: Statement;
    insertUnlessLive: Statement;
    updateIfLive: Statement;
    touch: Statement;
  };
  updateIfLive: Statement;
  touch: Statement;
  delete: Statement;
  fenced: FencedStatements;
  /** The fenced writes that also free the lease and NOTIFY waiters: one more parameter, the channel. */
  fencedReleasing: FencedStatements;
  ownedBy: Statement;
  sweepBatch: Statement;
  /** Deletes up to $1 rows whose expires_at is 'Infinity' or 'NaN' (a hand edit). */
  sweepCorrupt: Statement;
  anyExpired: Statement;
  dropExpiredLeases: Statement;
  count: Statement;
  idsPage: Statement;
  clearPage: Statement;
}

export interface FencedStatements {
  upsert: Statement;
  insertUnlessLive: Statement;
  updateIfLive: Statement;
  touch: Statement;
  delete: Statement;
}

export function buildStatements(names: SchemaNames, prefix: string): Statements {
  const table = qualified(names, names.table);
  const locks = qualified(names, names.locks);
  const statement = (name: string, text: string): Statement => ({
    name: `${prefix}_${name}`,
    text,
  });
  const columns = '(id, data, expires_at, owner)';
  const upsert = `ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at, owner = excluded.owner`;
  // The expiry as its 8 bytes: as text it has 15 significant digits where extra_float_digits is
  // 0 (PostgreSQL 11's default), which rounds a fractional ms.
  const record = `data, float8send(expires_at) AS "expiresAt", owner`;
  /**
   * The write and the lease check as one statement. FOR SHARE holds the lease row until the
   * write commits, so a takeover waits for it; the result says whether the lease held and
   * whether the write happened. The releasing form deletes the lease row instead, which holds
   * it the same way, and NOTIFYs its key when the statement commits if another process waited.
   */
  const fence = (name: string, write: string, leaseAt: number, nowAt: number, releasing: boolean) =>
    statement(
      releasing ? `${name}_release` : name,
      releasing
        ? `WITH lease AS (
             DELETE FROM ${locks} WHERE id = $${leaseAt} AND token = $${leaseAt + 1} AND expires_at > $${nowAt}
             RETURNING id, waited),
           written AS (${write})
           SELECT EXISTS (SELECT 1 FROM lease) AS held,
                  COALESCE((SELECT wrote FROM written LIMIT 1), false) AS wrote,
                  (SELECT pg_notify($${leaseAt + 2}, ${notifyPayloadSql('id')}) FROM lease WHERE waited) IS NULL AS quiet`
        : `WITH lease AS (
             SELECT 1 FROM ${locks} WHERE id = $${leaseAt} AND token = $${leaseAt + 1} AND expires_at > $${nowAt}
             FOR SHARE),
           written AS (${write})
           SELECT EXISTS (SELECT 1 FROM lease) AS held,
                  COALESCE((SELECT wrote FROM written LIMIT 1), false) AS wrote`,
    );
  const leaseHolds = 'EXISTS (SELECT 1 FROM lease)';
  // A hand-edited expires_at of 'Infinity' or 'NaN' (which PostgreSQL sorts above every number)
  // is no time a record may expire at: such a row is live to nothing (get reports it corrupt),
  // writes take its id as absent, and sweep removes it.
  const live = (at: string, column = 'expires_at') =>
    `(${column} > ${at} AND ${column} < 'Infinity')`;
  const gone = (at: string, column = 'expires_at') =>
    `(${column} <= ${at} OR ${column} >= 'Infinity')`;
  // Rows are written (or locked first) in id order, so two batches on any hosts take shared rows
  // in one order and never deadlock; ids compare as the column does.
  const lockLive = (nowAt: number) =>
    `WITH locked AS (SELECT id FROM ${table} WHERE id = ANY ($1::text[]) AND ${live(`$${nowAt}`)}
       ORDER BY id FOR UPDATE)`;
  const isLocked =
    'stored.id = q.id COLLATE "C" AND stored.id = ANY (ARRAY(SELECT id FROM locked))';
  // A batch sends no owner as an empty bytea, which no owner is: a NULL element of an array
  // parameter reads as the text 'NULL' where the server has `array_nulls = off`.
  const batchOwner = `NULLIF(q.owner, ''::bytea)`;
  const rows = `SELECT q.id, q.data, q.expires_at, ${batchOwner}
    FROM unnest($1::text[], $2::bytea[], $3::float8[], $4::bytea[]) AS q(id, data, expires_at, owner)
    ORDER BY q.id COLLATE "C"`;
  const fenced = (releasing: boolean): FencedStatements => ({
    upsert: fence(
      'fenced_upsert',
      `INSERT INTO ${table} ${columns} SELECT $1::text, $2::bytea, $3::float8, $4::bytea
       WHERE ${leaseHolds} ${upsert} RETURNING true AS wrote`,
      6,
      5,
      releasing,
    ),
    insertUnlessLive: fence(
      'fenced_insert_unless_live',
      `INSERT INTO ${table} AS stored ${columns} SELECT $1::text, $2::bytea, $3::float8, $4::bytea
       WHERE ${leaseHolds} ${upsert} WHERE ${gone('$5', 'stored.expires_at')} RETURNING true AS wrote`,
      6,
      5,
      releasing,
    ),
    updateIfLive: fence(
      'fenced_update_if_live',
      `UPDATE ${table} SET data = $2, expires_at = $3, owner = $4
       WHERE id = $1 AND ${live('$5')} AND ${leaseHolds} RETURNING true AS wrote`,
      6,
      5,
      releasing,
    ),
    touch: fence(
      'fenced_touch',
      `UPDATE ${table} SET expires_at = $2
       WHERE id = $1 AND ${live('$3')} AND ${leaseHolds} RETURNING true AS wrote`,
      4,
      3,
      releasing,
    ),
    delete: fence(
      'fenced_delete',
      `DELETE FROM ${table} WHERE id = $1 AND ${leaseHolds} RETURNING ${live('$2')} AS wrote`,
      3,
      2,
      releasing,
    ),
  });
  return {
    get: statement('get', `SELECT ${record} FROM ${table} WHERE id = $1 AND expires_at > $2`),
    upsert: statement(
      'upsert',
      `INSERT INTO ${table} ${columns} VALUES ($1, $2, $3, $4) ${upsert}`,
    ),
    insertUnlessLive: statement(
      'insert_unless_live',
      `INSERT INTO ${table} AS stored ${columns} VALUES ($1, $2, $3, $4) ${upsert}
       WHERE ${gone('$5', 'stored.expires_at')}`,
    ),
    updateIfLive: statement(
      'update_if_live',
      `UPDATE ${table} SET data = $2, expires_at = $3, owner = $4 WHERE id = $1 AND ${live('$5')}`,
    ),
    touch: statement(
      'touch',
      `UPDATE ${table} SET expires_at = $2 WHERE id = $1 AND ${live('$3')}`,
    ),
    delete: statement(
      'delete',
      `DELETE FROM ${table} WHERE id = $1 RETURNING ${live('$2')} AS live`,
    ),
    many: {
      // Lease rows and then session rows are locked in id order, as every batch takes them.
      updateIfLiveReleasing: statement(
        'fenced_update_if_live_release_many',
        `WITH freed AS (
           DELETE FROM ${locks} WHERE id = ANY (ARRAY(
             SELECT held.id FROM ${locks} AS held
             JOIN unnest($5::text[], $6::text[]) AS q(key, token)
               ON held.id = q.key COLLATE "C" AND held.token = q.token
             WHERE held.expires_at > $7 ORDER BY held.id FOR UPDATE OF held))
           RETURNING id, token, waited),
         locked AS (SELECT id FROM ${table} WHERE id = ANY ($1::text[]) AND ${live('$7')}
           ORDER BY id FOR UPDATE),
         written AS (
           UPDATE ${table} AS stored SET data = q.data, expires_at = q.expires_at, owner = ${batchOwner}
           FROM unnest($1::text[], $2::bytea[], $3::float8[], $4::bytea[], $6::text[])
             AS q(id, data, expires_at, owner, token)
           WHERE ${isLocked} AND q.token IN (SELECT token FROM freed)
           RETURNING q.token)
         SELECT freed.token, written.token IS NOT NULL AS wrote,
                CASE WHEN freed.waited THEN pg_notify($8, ${notifyPayloadSql('freed.id')}) END IS NULL AS quiet
         FROM freed LEFT JOIN written ON written.token = freed.token`,
      ),
      get: statement(
        'get_many',
        `SELECT q.i::int AS i, ${record} FROM unnest($1::text[]) WITH ORDINALITY AS q(id, i)
         JOIN ${table} AS stored ON stored.id = q.id COLLATE "C" WHERE stored.expires_at > $2`,
      ),
      upsert: statement('upsert_many', `INSERT INTO ${table} ${columns} ${rows} ${upsert}`),
      insertUnlessLive: statement(
        'insert_unless_live_many',
        `INSERT INTO ${table} AS stored ${columns} ${rows} ${upsert}
         WHERE ${gone('$5', 'stored.expires_at')} RETURNING id`,
      ),
      updateIfLive: statement(
        'update_if_live_many',
        `${lockLive(5)}
         UPDATE ${table} AS stored SET data = q.data, expires_at = q.expires_at, owner = ${batchOwner}
         FROM unnest($1::text[], $2::bytea[], $3::float8[], $4::bytea[]) AS q(id, data, expires_at, owner)
         WHERE ${isLocked} RETURNING stored.id`,
      ),
      touch: statement(
        'touch_many',
        `${lockLive(3)}
         UPDATE ${table} AS stored SET expires_at = q.expires_at
         FROM unnest($1::text[], $2::float8[]) AS q(id, expires_at)
         WHERE ${isLocked} RETURNING stored.id`,
      ),
    },
    fenced: fenced(false),
    fencedReleasing: fenced(true),
    // Through the partial owner index: `owner = $1` implies `owner IS NOT NULL`.
    ownedBy: statement(
      'owned_by',
      `SELECT id, ${record} FROM ${table} WHERE owner = $1 AND ${live('$2')}`,
    ),
    // SKIP LOCKED lets two sweepers (or a sweeper and a writer) pass each other instead of
    // queueing; the expiry index makes each batch cost what it removes. Both statements are
    // shaped so that even a generic plan (parameters unknown) reads the indexes: ORDER BY
    // expires_at walks the expiry index, and = ANY (ARRAY(…)) deletes by primary key, where
    // IN (…) may be planned as a hash join over a scan of the whole table.
    sweepBatch: statement(
      'sweep_batch',
      `DELETE FROM ${table} WHERE id = ANY (ARRAY(
         SELECT id FROM ${table} WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2
         FOR UPDATE SKIP LOCKED))`,
    ),
    // Infinity and NaN sort after every number, past where sweepBatch stops; the index finds them.
    sweepCorrupt: statement(
      'sweep_corrupt',
      `DELETE FROM ${table} WHERE id = ANY (ARRAY(
         SELECT id FROM ${table} WHERE expires_at >= 'Infinity' LIMIT $1 FOR UPDATE SKIP LOCKED))`,
    ),
    anyExpired: statement(
      'any_expired',
      `SELECT COALESCE((SELECT expires_at FROM ${table} ORDER BY expires_at LIMIT 1) <= $1, false)
         OR EXISTS (SELECT 1 FROM ${table} WHERE expires_at >= 'Infinity') AS any`,
    ),
    dropExpiredLeases: statement(
      'drop_expired_leases',
      `DELETE FROM ${locks} WHERE id IN (
         SELECT id FROM ${locks} WHERE ${gone('$1')} LIMIT $2 FOR UPDATE SKIP LOCKED)`,
    ),
    count: statement(
      'count',
      // The live rows, from the expiry index alone, less the live ones in the (empty) index of
      // invalid ids: no id of a valid row is read.
      `SELECT ((SELECT count(*) FROM ${table} WHERE ${live('$1')})
         - (SELECT count(*) FROM ${table} WHERE NOT ${VALID_ID} AND ${live('$1')}))::float8 AS count`,
    ),
    idsPage: statement(
      'ids_page',
      `SELECT id FROM ${table} WHERE id > $1 AND ${live('$2')} AND ${VALID_ID} ORDER BY id LIMIT $3`,
    ),
    // One page of a clear: the first $2 ids after $1. Rows are locked in id order, as every
    // batch locks them, so a clear on one host and a batch on another cannot deadlock; a plain
    // DELETE takes them in the order they lie on disk. `last` is where the next page starts.
    clearPage: statement(
      'clear_page',
      `WITH page AS (SELECT id FROM ${table} WHERE id > $1 ORDER BY id LIMIT $2 FOR UPDATE),
       gone AS (DELETE FROM ${table} WHERE id IN (SELECT id FROM page))
       SELECT count(*)::int AS n, max(id) AS last FROM page`,
    ),
  };
}
