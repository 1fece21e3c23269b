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
