import { SessionError } from '@sessile/core';
import type BetterSqlite3 from 'better-sqlite3';
import { pragmaNumber, prepare, SUSPECT_ROW, validSessionId } from './statements.js';

/** The schema version this release writes to `PRAGMA user_version`. */
export const SCHEMA_VERSION = 4;

const TABLE_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** The schema objects of one store, all named after its table. */
export interface SchemaNames {
  records: string;
  expiryIndex: string;
  ownerIndex: string;
  invalidIdIndex: string;
  suspectIndex: string;
  locks: string;
}

/** Checks that `table` is a plain SQL identifier, so it can be quoted into statements safely. */
export function schemaNames(table: unknown): SchemaNames {
  if (typeof table !== 'string' || !TABLE_NAME_PATTERN.test(table)) {
    throw new TypeError(
      `table must be 1 to 63 characters of [A-Za-z0-9_] not starting with a digit, got ${String(table)}`,
    );
  }
  // The lock table and the indexes are named `<table>_…`, so 'sqlite' would make them sqlite_….
  if (`${table}_`.toLowerCase().startsWith('sqlite_')) {
    throw new TypeError(
      `table must not be sqlite or start with sqlite_, which SQLite reserves for its own objects, got ${table}`,
    );
  }
  return {
    records: table,
    expiryIndex: `${table}_expires_at`,
    ownerIndex: `${table}_owner`,
    invalidIdIndex: `${table}_invalid_ids`,
    suspectIndex: `${table}_suspect_rows`,
    locks: `${table}_locks`,
  };
}

/** `name` as a quoted identifier. Names are validated by `schemaNames`, so no escaping is needed. */
export function quote(name: string): string {
  return `"${name}"`;
}

/** What follows `ON <table>` in the expiry index's definition, as `indexDefinition` reads it. */
const EXPIRY_INDEX = '(expires_at)';

// Partial: rows without an owner, the common case for anonymous sessions, cost the index nothing.
// A query's `owner = ?` implies `owner IS NOT NULL`, so SQLite uses it for ownedBy.
const OWNER_INDEX = '(owner) WHERE owner IS NOT NULL';

// Rows under an id no session can have, written by hand or by another tool: normally none, so the
// index costs one check of each written id, and count() subtracts them without reading the table.
const INVALID_ID_INDEX = `(id) WHERE NOT ${validSessionId('id')}`;

// Rows that may hold no record (see SUSPECT_ROW): normally none, so the index costs one check of
// each written row, and count() and touch() find the damaged ones without reading every row.
const SUSPECT_INDEX = `(id) WHERE ${SUSPECT_ROW}`;

function createExpiryIndex(names: SchemaNames): string {
  return `CREATE INDEX IF NOT EXISTS ${quote(names.expiryIndex)} ON ${quote(names.records)} ${EXPIRY_INDEX}`;
}

function createOwnerIndex(names: SchemaNames): string {
  return `CREATE INDEX IF NOT EXISTS ${quote(names.ownerIndex)} ON ${quote(names.records)} ${OWNER_INDEX}`;
}

function createInvalidIdIndex(names: SchemaNames): string {
  return `CREATE INDEX IF NOT EXISTS ${quote(names.invalidIdIndex)} ON ${quote(names.records)} ${INVALID_ID_INDEX}`;
}

function createSuspectIndex(names: SchemaNames): string {
  return `CREATE INDEX IF NOT EXISTS ${quote(names.suspectIndex)} ON ${quote(names.records)} ${SUSPECT_INDEX}`;
}

interface Migration {
  /** The version the database is at after this step. */
  version: number;
  /** Idempotent, so a step can run again on a database where a sibling table already moved on. */
  apply(db: BetterSqlite3.Database, names: SchemaNames): void;
}

/** Forward migrations, oldest first. Each one upgrades from `version - 1`. */
const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    apply: (db, names) => {
      db.exec(
        `CREATE TABLE IF NOT EXISTS ${quote(names.records)} (id TEXT PRIMARY KEY NOT NULL, data BLOB NOT NULL, expires_at INTEGER NOT NULL)`,
      );
      db.exec(createExpiryIndex(names));
    },
  },
  {
    version: 2,
    apply: (db, names) => {
      db.exec(createLocks(names.locks));
    },
  },
  {
    version: 3,
    apply: (db, names) => {
      // ADD COLUMN has no IF NOT EXISTS. A nullable column without a default is a change to the
      // table's definition only: SQLite rewrites no row, so this is instant on any table size.
      if (!columnsOf(db, names.records).some((column) => column.name === 'owner')) {
        db.exec(`ALTER TABLE ${quote(names.records)} ADD COLUMN owner TEXT`);
      }
      db.exec(createOwnerIndex(names));
    },
  },
  {
    version: 4,
    apply: (db, names) => {
      if (withoutRowid(db, names.locks)) return;
      // Rebuilt in the migration's transaction, held leases included; other processes' prepared
      // statements re-prepare against the new table, whose columns are the same.
      const rebuilt = `${names.locks}_v4`;
      db.exec(createLocks(rebuilt));
      db.exec(
        `INSERT INTO ${quote(rebuilt)} (id, token, expires_at) SELECT id, token, expires_at FROM ${quote(names.locks)}`,
      );
      db.exec(`DROP TABLE ${quote(names.locks)}`);
      db.exec(`ALTER TABLE ${quote(rebuilt)} RENAME TO ${quote(names.locks)}`);
    },
  },
];

/**
 * The lock table keeps its rows in the primary key's own B-tree (WITHOUT ROWID): a claim or a
 * release then changes one page instead of two (the table's and its key index's), so each
 * commits one WAL frame less.
 */
function createLocks(table: string): string {
  return `CREATE TABLE IF NOT EXISTS ${quote(table)} (id TEXT PRIMARY KEY NOT NULL, token TEXT NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID`;
}

function withoutRowid(db: BetterSqlite3.Database, table: string): boolean {
  return (
    prepare(
      db,
      "SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ? COLLATE NOCASE",
    )
      .pluck()
      .get(table) === 1
  );
}

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
  { name: 'owner', type: 'TEXT', notnull: 0, pk: 0 },
];

/** Versions 1 and 2 had every column but the last. */
const OLD_RECORDS_SHAPE = RECORDS_SHAPE.slice(0, -1);

const LOCKS_SHAPE: readonly ColumnShape[] = [
  { name: 'id', type: 'TEXT', notnull: 1, pk: 1 },
  { name: 'token', type: 'TEXT', notnull: 1, pk: 0 },
  { name: 'expires_at', type: 'INTEGER', notnull: 1, pk: 0 },
];

/** What a database holds for one store, read without writing anything. */
export interface SchemaState {
  userVersion: number;
  /**
   * The version the existing objects amount to: 0 nothing, 1 records only, 2 records and locks,
   * 3 records with owners and locks, 4 the same with the lock table WITHOUT ROWID.
   */
  presentVersion: number;
  complete: boolean;
}

/**
 * Reads the schema version and the store's tables, and throws `ERR_UNSUPPORTED` when they are
 * not what some version of this package created. Only reads, so a refused file stays untouched.
 */
export function inspectSchema(db: BetterSqlite3.Database, names: SchemaNames): SchemaState {
  const userVersion = pragmaNumber(db, 'user_version');
  const records = objectType(db, names.records);
  // The version lives in the file's one user_version, which an app's own migrations may use too.
  if (
    userVersion !== 0 &&
    userVersion !== SCHEMA_VERSION &&
    records === undefined &&
    !holdsStoreTable(db)
  ) {
    throw new SessionError(
      'ERR_UNSUPPORTED',
      `Refusing to use the database: its PRAGMA user_version is ${userVersion}, but it holds no @sessile/sqlite table, so another program keeps its own schema version there, which the store would overwrite with its own (${SCHEMA_VERSION}). Give the store a database file of its own; the file was left unmodified`,
    );
  }
  if (userVersion > SCHEMA_VERSION) {
    throw new SessionError(
      'ERR_UNSUPPORTED',
      `The database has schema version ${userVersion}, newer than the ${SCHEMA_VERSION} this @sessile/sqlite understands; upgrade the package`,
    );
  }
  const locks = objectType(db, names.locks);
  const recordsShape = assertShape(db, names.records, records, [RECORDS_SHAPE, OLD_RECORDS_SHAPE]);
  assertShape(db, names.locks, locks, [LOCKS_SHAPE]);
  const expiryIndex = indexOn(db, names.expiryIndex, names.records, EXPIRY_INDEX);
  const ownerIndex = indexOn(db, names.ownerIndex, names.records, OWNER_INDEX);
  const invalidIdIndex = indexOn(db, names.invalidIdIndex, names.records, INVALID_ID_INDEX);
  const suspectIndex = indexOn(db, names.suspectIndex, names.records, SUSPECT_INDEX);
  if (locks !== undefined && records === undefined) {
    throw foreign(names.locks, `exists without the table ${names.records}`);
  }
  const presentVersion =
    records === undefined
      ? 0
      : locks === undefined
        ? 1
        : recordsShape !== RECORDS_SHAPE
          ? 2
          : withoutRowid(db, names.locks)
            ? 4
            : 3;
  const complete =
    presentVersion === SCHEMA_VERSION &&
    userVersion === SCHEMA_VERSION &&
    expiryIndex &&
    ownerIndex &&
    invalidIdIndex &&
    suspectIndex;
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
    if (migration.version > from) migration.apply(db, names);
  }
  // An index dropped by hand is recreated, whatever the version says.
  db.exec(createExpiryIndex(names));
  db.exec(createOwnerIndex(names));
  db.exec(createInvalidIdIndex(names));
  db.exec(createSuspectIndex(names));
  if (state.userVersion < SCHEMA_VERSION) db.pragma(`user_version = ${SCHEMA_VERSION}`);
}

// SQLite matches names ignoring ASCII case, as NOCASE compares: `SESSIONS` is the table `sessions`.
function objectType(db: BetterSqlite3.Database, name: string): string | undefined {
  const row = prepare(db, 'SELECT type FROM sqlite_schema WHERE name = ? COLLATE NOCASE').get(
    name,
  ) as { type: string } | undefined;
  return row?.type;
}

/**
 * True when `name` is an index on `table` with `definition`, false when absent; a foreign object,
 * such as an index of that name on other columns, throws.
 */
function indexOn(
  db: BetterSqlite3.Database,
  name: string,
  table: string,
  definition: string,
): boolean {
  const found = prepare(
    db,
    'SELECT type, tbl_name AS tableName, tbl_name = ? COLLATE NOCASE AS onTable, sql FROM sqlite_schema WHERE name = ? COLLATE NOCASE',
  ).get(table, name) as
    | { type: string; tableName: string; onTable: number; sql: string | null }
    | undefined;
  if (found === undefined) return false;
  if (found.type !== 'index' || found.onTable !== 1) {
    throw foreign(name, `is ${withArticle(found.type)} on ${found.tableName}`);
  }
  const actual = indexDefinition(db, name, found.sql ?? '');
  if (actual.toLowerCase() !== definition.toLowerCase()) {
    throw foreign(name, `indexes ${actual}, not the ${definition} @sessile/sqlite creates`);
  }
  return true;
}

interface IndexColumn {
  name: string | null;
  desc: number;
  coll: string;
}

/**
 * An index as `[UNIQUE ](columns)[ WHERE …]`: its key columns from SQLite, which spells them
 * the same however the index was written, and its WHERE clause from its SQL.
 */
function indexDefinition(db: BetterSqlite3.Database, name: string, sql: string): string {
  const columns = (
    prepare(
      db,
      'SELECT name, desc, coll FROM pragma_index_xinfo(?) WHERE key = 1 ORDER BY seqno',
    ).all(name) as IndexColumn[]
  ).map(
    (column) =>
      `${column.name ?? 'an expression'}${column.desc ? ' DESC' : ''}${column.coll === 'BINARY' ? '' : ` COLLATE ${column.coll}`}`,
  );
  const unique = /^CREATE\s+UNIQUE\b/i.test(sql) ? 'UNIQUE ' : '';
  // The first ')' ends a column list of names; one with an expression differs anyway.
  const where = sql
    .slice(sql.indexOf(')') + 1)
    .trim()
    .replace(/\s+/g, ' ');
  return `${unique}(${columns.join(', ')})${where === '' ? '' : ` ${where}`}`;
}

function columnsOf(db: BetterSqlite3.Database, table: string): ColumnShape[] {
  return prepare(
    db,
    'SELECT name, upper(type) AS type, "notnull", pk FROM pragma_table_info(?) ORDER BY cid',
  ).all(table) as ColumnShape[];
}

/** True when some table of the file has the columns of a sessions table of some version. */
function holdsStoreTable(db: BetterSqlite3.Database): boolean {
  const tables = prepare(db, "SELECT name FROM sqlite_schema WHERE type = 'table'")
    .pluck()
    .all() as string[];
  return tables.some((table) => {
    const columns = columnsOf(db, table);
    return [RECORDS_SHAPE, OLD_RECORDS_SHAPE].some((expected) => sameShape(columns, expected));
  });
}

function sameShape(columns: readonly ColumnShape[], expected: readonly ColumnShape[]): boolean {
  return (
    columns.length === expected.length &&
    columns.every(
      (column, i) =>
        column.name === expected[i]?.name &&
        column.type === expected[i]?.type &&
        column.notnull === expected[i]?.notnull &&
        column.pk === expected[i]?.pk,
    )
  );
}

/** The shape among `accepted` that the table `name` has, or `undefined` when it is absent. */
function assertShape(
  db: BetterSqlite3.Database,
  name: string,
  type: string | undefined,
  accepted: readonly (readonly ColumnShape[])[],
): readonly ColumnShape[] | undefined {
  if (type === undefined) return undefined;
  if (type !== 'table') throw foreign(name, `is ${withArticle(type)}, not a table`);
  const columns = columnsOf(db, name);
  const shape = accepted.find((expected) => sameShape(columns, expected));
  if (shape === undefined) {
    const found = columns.map((column) => `${column.name} ${column.type}`).join(', ');
    throw foreign(name, `has columns (${found}), not the ones @sessile/sqlite creates`);
  }
  return shape;
}

/** A schema object's type as a message names it: `an index`, `a view`. */
function withArticle(type: string): string {
  return `${/^[aeiou]/.test(type) ? 'an' : 'a'} ${type}`;
}

function foreign(name: string, problem: string): SessionError {
  return new SessionError(
    'ERR_UNSUPPORTED',
    `Refusing to use the database: ${quote(name)} ${problem}. Choose another table name; the file was left unmodified`,
  );
}
