import { SessionError } from '@sessile/core';
import type BetterSqlite3 from 'better-sqlite3';

/** The schema version this release writes to `PRAGMA user_version`. */
export const SCHEMA_VERSION = 2;

const TABLE_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** The schema objects of one store, all named after its table. */
export interface SchemaNames {
  records: string;
  expiryIndex: string;
  locks: string;
}

/** Checks that `table` is a plain SQL identifier, so it can be quoted into statements safely. */
export function schemaNames(table: unknown): SchemaNames {
  if (typeof table !== 'string' || !TABLE_NAME_PATTERN.test(table)) {
    throw new TypeError(
      `table must be 1 to 63 characters of [A-Za-z0-9_] not starting with a digit, got ${String(table)}`,
    );
  }
  if (table.toLowerCase().startsWith('sqlite_')) {
    throw new TypeError('table must not start with sqlite_, which SQLite reserves');
  }
  return { records: table, expiryIndex: `${table}_expires_at`, locks: `${table}_locks` };
}

/** `name` as a quoted identifier. Names are validated by `schemaNames`, so no escaping is needed. */
export function quote(name: string): string {
  return `"${name}"`;
}

function createExpiryIndex(names: SchemaNames): string {
  return `CREATE INDEX IF NOT EXISTS ${quote(names.expiryIndex)} ON ${quote(names.records)} (expires_at)`;
}

interface Migration {
  /** The version the database is at after this step. */
  version: number;
  /** Idempotent DDL, so a step can run again on a database where a sibling table already moved on. */
  statements(names: SchemaNames): string[];
}

/** Forward migrations, oldest first. Each one upgrades from `version - 1`. */
const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    statements: (names) => [
      `CREATE TABLE IF NOT EXISTS ${quote(names.records)} (id TEXT PRIMARY KEY NOT NULL, data BLOB NOT NULL, expires_at INTEGER NOT NULL)`,
      createExpiryIndex(names),
    ],
  },
  {
    version: 2,
    statements: (names) => [
      `CREATE TABLE IF NOT EXISTS ${quote(names.locks)} (id TEXT PRIMARY KEY NOT NULL, token TEXT NOT NULL, expires_at INTEGER NOT NULL)`,
    ],
  },
];

interface ColumnShape {
  name: string;
  type: string;
  notnull: number;
  pk: number;
}

const RECORDS_SHAPE: readonly ColumnShape[] = [
  { name: 'id', type: 'TEXT', notnull: 1, pk: 1 },
  { name: 'data', type: 'BLOB', notnull: 1, pk: 0 },
  { name: 'expires_at', type: 'INTEGER', notnull: 1, pk: 0 },
];

const LOCKS_SHAPE: readonly ColumnShape[] = [
  { name: 'id', type: 'TEXT', notnull: 1, pk: 1 },
  { name: 'token', type: 'TEXT', notnull: 1, pk: 0 },
  { name: 'expires_at', type: 'INTEGER', notnull: 1, pk: 0 },
];

/** What a database holds for one store, read without writing anything. */
interface SchemaState {
  userVersion: number;
  /** The version the existing objects amount to: 0 nothing, 1 records only, 2 records and locks. */
  presentVersion: number;
  complete: boolean;
}

/**
 * Reads the schema version and the store's tables, and throws `ERR_UNSUPPORTED` when they are
 * not what some version of this package created. Only reads, so a refused file stays untouched.
 */
export function inspectSchema(db: BetterSqlite3.Database, names: SchemaNames): SchemaState {
  const userVersion = db.pragma('user_version', { simple: true }) as number;
  if (userVersion > SCHEMA_VERSION) {
    throw new SessionError(
      'ERR_UNSUPPORTED',
      `The database has schema version ${userVersion}, newer than the ${SCHEMA_VERSION} this @sessile/sqlite understands; upgrade the package`,
    );
  }
  const records = objectType(db, names.records);
  const locks = objectType(db, names.locks);
  const index = db
    .prepare('SELECT type, tbl_name AS tableName FROM sqlite_schema WHERE name = ?')
    .get(names.expiryIndex) as { type: string; tableName: string } | undefined;
  assertShape(db, names.records, records, RECORDS_SHAPE);
  assertShape(db, names.locks, locks, LOCKS_SHAPE);
  if (index !== undefined && (index.type !== 'index' || index.tableName !== names.records)) {
    throw foreign(names.expiryIndex, `is a ${index.type} on ${index.tableName}`);
  }
  if (locks !== undefined && records === undefined) {
    throw foreign(names.locks, `exists without the table ${names.records}`);
  }
  const presentVersion = records === undefined ? 0 : locks === undefined ? 1 : 2;
  const complete =
    presentVersion === SCHEMA_VERSION && userVersion === SCHEMA_VERSION && index !== undefined;
  return { userVersion, presentVersion, complete };
}

/**
 * Brings the schema to `SCHEMA_VERSION` inside the caller's write transaction. Runs every step
 * the existing objects still lack, so a second store table in one file gets created too.
 */
export function migrateSchema(db: BetterSqlite3.Database, names: SchemaNames): void {
  const state = inspectSchema(db, names);
  if (state.complete) return;
  const from = Math.min(state.userVersion, state.presentVersion);
  for (const migration of MIGRATIONS) {
    if (migration.version <= from) continue;
    for (const statement of migration.statements(names)) db.exec(statement);
  }
  // An index dropped by hand is recreated, whatever the version says.
  db.exec(createExpiryIndex(names));
  if (state.userVersion < SCHEMA_VERSION) db.pragma(`user_version = ${SCHEMA_VERSION}`);
}

function objectType(db: BetterSqlite3.Database, name: string): string | undefined {
  const row = db.prepare('SELECT type FROM sqlite_schema WHERE name = ?').get(name) as
    | { type: string }
    | undefined;
  return row?.type;
}

function assertShape(
  db: BetterSqlite3.Database,
  name: string,
  type: string | undefined,
  expected: readonly ColumnShape[],
): void {
  if (type === undefined) return;
  if (type !== 'table') throw foreign(name, `is a ${type}, not a table`);
  const columns = db
    .prepare(
      'SELECT name, upper(type) AS type, "notnull", pk FROM pragma_table_info(?) ORDER BY cid',
    )
    .all(name) as ColumnShape[];
  const matches =
    columns.length === expected.length &&
    columns.every(
      (column, i) =>
        column.name === expected[i]?.name &&
        column.type === expected[i]?.type &&
        column.notnull === expected[i]?.notnull &&
        column.pk === expected[i]?.pk,
    );
  if (!matches) {
    const found = columns.map((column) => `${column.name} ${column.type}`).join(', ');
    throw foreign(name, `has columns (${found}), not the ones @sessile/sqlite creates`);
  }
}

function foreign(name: string, problem: string): SessionError {
  return new SessionError(
    'ERR_UNSUPPORTED',
    `Refusing to use the database: ${quote(name)} ${problem}. Choose another table name; the file was left unmodified`,
  );
}
