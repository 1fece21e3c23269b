import { MAX_OWNER_LENGTH, MAX_SESSION_ID_LENGTH, MIN_SESSION_ID_LENGTH } from '@sessile/core';
import type BetterSqlite3 from 'better-sqlite3';

/**
 * Prepares `sql` on the store's connection reading integers as numbers, even on an app's
 * connection that reads them as BigInts (`defaultSafeIntegers(true)`), where every expiry would
 * otherwise fail the record's type check.
 */
export function prepare<P extends unknown[] = unknown[], R = unknown>(
  db: BetterSqlite3.Database,
  sql: string,
): BetterSqlite3.Statement<P, R> {
  const statement: BetterSqlite3.Statement<P, R> = db.prepare<P, R>(sql);
  return statement.safeIntegers(false);
}

/** A pragma's single integer value as a number, whatever the connection's integer mode. */
export function pragmaNumber(db: BetterSqlite3.Database, name: string): number {
  return Number(db.pragma(name, { simple: true }));
}

/**
 * SQL that holds when the expiry `column` is a number. SQLite keeps text that reads as no
 * number, or a blob, in an INTEGER column (another tool or a hand edit wrote it there) and sorts
 * it above every number, so `expires_at > now` alone would keep such a row live forever and
 * `expires_at <= now` would never sweep it. Every number sorts below '', every text and blob at
 * or above it. The unary `+` drops the column's affinity and keeps the term out of the choice
 * of index: it only filters the rows another term found.
 */
export function numericExpiry(column: string): string {
  return `+${column} < ''`;
}

/** SQL that holds when the expiry `column` is text or a blob; see `numericExpiry`. */
export function unreadableExpiry(column: string): string {
  return `+${column} >= ''`;
}

/**
 * SQL that holds when `column` is an id core's `isSessionId` accepts: text of 16 to 128
 * base64url characters. Characters and bytes agree only without a NUL (where `length` and GLOB
 * stop) and without a multi-byte character; a blob is no id. It defines the index of invalid
 * ids, which files hold as written, and it counts bytes: in a UTF-16 database, two per
 * character, so that index holds every row there; `sessionIdText` is the test of any encoding.
 */
export function validSessionId(column: string): string {
  const bytes = `length(CAST(${column} AS BLOB))`;
  return `(typeof(${column}) = 'text' AND ${bytes} BETWEEN ${MIN_SESSION_ID_LENGTH} AND ${MAX_SESSION_ID_LENGTH} AND length(${column}) = ${bytes} AND ${column} NOT GLOB '*[^A-Za-z0-9_-]*')`;
}

/**
 * SQL that holds when `column` is an id `isSessionId` accepts, in a database of any encoding:
 * GLOB reads characters, stopping at a NUL, which `instr` finds.
 */
export function sessionIdText(column: string): string {
  return `(typeof(${column}) = 'text' AND length(${column}) BETWEEN ${MIN_SESSION_ID_LENGTH} AND ${MAX_SESSION_ID_LENGTH} AND instr(${column}, char(0)) = 0 AND ${column} NOT GLOB '*[^A-Za-z0-9_-]*')`;
}

/**
 * SQL that holds for every row whose record SQL cannot vouch for: its `data` is not a blob, or
 * its `owner` is neither NULL nor 1 to `MAX_OWNER_LENGTH` printable ASCII characters. Whether
 * other text is a well-formed owner takes decoding its bytes, which no SQL function does, so
 * those rows are suspects that the store decodes one by one; owners are mostly ASCII ids. GLOB
 * stops at a NUL, which `instr` finds.
 */
export const SUSPECT_ROW = `(typeof(data) <> 'blob' OR (owner IS NOT NULL AND (typeof(owner) <> 'text' OR length(owner) NOT BETWEEN 1 AND ${MAX_OWNER_LENGTH} OR instr(owner, char(0)) > 0 OR owner GLOB '*[^ -~]*')))`;
