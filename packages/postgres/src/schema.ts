import {
  MAX_SESSION_ID_LENGTH,
  MIN_SESSION_ID_LENGTH,
  SessionError,
  type StoreProbe,
} from '@sessile/core';
import { describeValue, errorMessage } from '@sessile/core/store';
import type pg from 'pg';
import { STORE_TYPES } from './types.js';

/**
 * The schema version this release records for its tables. 2 added the `owner` column and its
 * index, 3 the function that claims a lock and reads its session, 4 the lease row's `waited`
 * flag, 5 that function's taking a lease whose end is 'NaN' or 'Infinity', 6 its taking a lease
 * its own token holds; `open` migrates older versions in place.
 */
export const SCHEMA_VERSION = 6;

/** The table that records, per store table, which schema version created it. */
const VERSIONS_TABLE = 'sessile_versions';
/** Room for the longest suffixes (`_expires_at`, `_claim_read`) inside PostgreSQL's 63-byte identifiers. */
const TABLE_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,51}$/;
const SCHEMA_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** The schema objects of one store, all named after its table. */
export interface SchemaNames {
  schema: string;
  table: string;
  locks: string;
  expiryIndex: string;
  ownerIndex: string;
  /** The rows under an id no session can have: normally none. */
  invalidIdIndex: string;
  /** The function that claims a lease and reads the session in one call. */
  claimRead: string;
  versions: string;
}

/** Checks that `schema` and `table` are plain identifiers, so they can be quoted into SQL safely. */
export function schemaNames(schema: unknown, table: unknown): SchemaNames {
  if (typeof schema !== 'string' || !SCHEMA_PATTERN.test(schema)) {
    throw new TypeError(
      `schema must be 1 to 63 characters of [A-Za-z0-9_] not starting with a digit, got ${describeValue(schema)}`,
    );
  }
  if (schema.toLowerCase().startsWith('pg_')) {
    throw new TypeError(
      `schema must not start with pg_, which PostgreSQL reserves, got ${describeValue(schema)}`,
    );
  }
  if (typeof table !== 'string' || !TABLE_PATTERN.test(table)) {
    throw new TypeError(
      `table must be 1 to 52 characters of [A-Za-z0-9_] not starting with a digit, got ${describeValue(table)}`,
    );
  }
  if (table === VERSIONS_TABLE) {
    throw new TypeError(
      `table must not be ${VERSIONS_TABLE}, where the store records its schema versions`,
    );
  }
  return {
    schema,
    table,
    locks: `${table}_locks`,
    expiryIndex: `${table}_expires_at`,
    ownerIndex: `${table}_owner`,
    invalidIdIndex: `${table}_bad_ids`,
    claimRead: `${table}_claim_read`,
    versions: VERSIONS_TABLE,
  };
}

/**
 * SQL that holds when `id` is one core's `isSessionId` accepts (16 to 128 characters of
 * `[A-Za-z0-9_-]`): a row written by hand under another id is neither counted nor listed, as
 * every call on it would reject. A negated class and a length, which PostgreSQL checks about
 * twenty times faster than an anchored pattern with a bounded repeat.
 */
export const VALID_ID = `(length(id) BETWEEN ${MIN_SESSION_ID_LENGTH} AND ${MAX_SESSION_ID_LENGTH} AND id !~ '[^A-Za-z0-9_-]')`;

/** `schema.name` quoted. Names are validated by `schemaNames`, so no escaping is needed. */
export function qualified(names: SchemaNames, name: string): string {
  return `"${names.schema}"."${name}"`;
}

interface ColumnShape {
  name: string;
  type: string;
  notnull: boolean;
}

const RECORDS_V1: readonly ColumnShape[] = [
  { name: 'id', type: 'text', notnull: true },
  { name: 'data', type: 'bytea', notnull: true },
  { name: 'expires_at', type: 'double precision', notnull: true },
];

/** The sessions table's columns by schema version. */
const RECORDS_SHAPES: Readonly<Record<number, readonly ColumnShape[]>> = {
  1: RECORDS_V1,
  2: [...RECORDS_V1, { name: 'owner', type: 'bytea', notnull: false }],
  3: [...RECORDS_V1, { name: 'owner', type: 'bytea', notnull: false }],
  4: [...RECORDS_V1, { name: 'owner', type: 'bytea', notnull: false }],
  5: [...RECORDS_V1, { name: 'owner', type: 'bytea', notnull: false }],
  6: [...RECORDS_V1, { name: 'owner', type: 'bytea', notnull: false }],
};

const LOCKS_V1: readonly ColumnShape[] = [
  { name: 'id', type: 'text', notnull: true },
  { name: 'token', type: 'text', notnull: true },
  { name: 'expires_at', type: 'double precision', notnull: true },
];

/** The lock table's columns by schema version. */
const LOCKS_SHAPES: Readonly<Record<number, readonly ColumnShape[]>> = {
  1: LOCKS_V1,
  2: LOCKS_V1,
  3: LOCKS_V1,
  4: [...LOCKS_V1, { name: 'waited', type: 'boolean', notnull: true }],
  5: [...LOCKS_V1, { name: 'waited', type: 'boolean', notnull: true }],
  6: [...LOCKS_V1, { name: 'waited', type: 'boolean', notnull: true }],
};

const SHAPES: Record<'versions', readonly ColumnShape[]> = {
  versions: [
    { name: 'table_name', type: 'text', notnull: true },
    { name: 'version', type: 'integer', notnull: true },
  ],
};

/** What the database holds for one store, read without writing anything. */
export interface SchemaState {
  schemaExists: boolean;
  versionsExists: boolean;
  /** The version record of the table; undefined when there is none. */
  version: number | undefined;
  recordsExists: boolean;
  locksExists: boolean;
  indexExists: boolean;
  ownerIndexExists: boolean;
  invalidIdIndexExists: boolean;
  claimReadExists: boolean;
  /** Whether the sessions table is UNLOGGED; undefined while it does not exist. */
  recordsUnlogged: boolean | undefined;
  complete: boolean;
}

/** A connection whose every statement is bounded by the store's `queryTimeoutMs`. */
interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>>;
}

/**
 * Bounds each statement on `client` by `timeoutMs`, even on an app's pool that sets no
 * `query_timeout`: the client stops waiting for an answer, and `beginBounded` makes the server
 * cancel the statement too, so none stays queued for a lock after `open` gave up.
 */
function bounded(client: pg.ClientBase, timeoutMs: number): Queryable {
  return {
    query: <R extends pg.QueryResultRow>(text: string, values?: unknown[]) => {
      // pg reads `query_timeout` from a query's config; its types do not list it.
      const config = { text, values, query_timeout: timeoutMs, types: STORE_TYPES };
      return client.query<R>(config);
    },
  };
}

/**
 * Opens a transaction whose statements the server cancels after the store's timeout. Its lock
 * waits get the same bound, not a role's shorter `lock_timeout`: instances opening at once wait
 * for the one that migrates, under the schema's advisory lock.
 */
async function beginBounded(db: Queryable, begin: string, timeoutMs: number): Promise<void> {
  await db.query(begin);
  await db.query(
    `SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $1, true)`,
    [String(Math.ceil(timeoutMs))],
  );
}

/**
 * Makes the store's schema ready: reads it lock-free in one snapshot, so a sibling's migration
 * committing meanwhile is seen whole or not at all, and migrates only when something is missing
 * or older, so readers of a complete schema never queue on the advisory lock. Resolves to what
 * the sessions table is: an existing table keeps its persistence, whatever `unlogged` asks.
 */
export async function prepareSchema(
  client: pg.ClientBase,
  names: SchemaNames,
  unlogged: boolean,
  timeoutMs: number,
): Promise<{ unlogged: boolean }> {
  const db = bounded(client, timeoutMs);
  await beginBounded(db, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', timeoutMs);
  let found: SchemaState;
  try {
    found = await inspectSchema(db, names);
  } finally {
    await db.query('COMMIT');
  }
  if (found.complete) return { unlogged: found.recordsUnlogged === true };
  const existing = await migrateSchema(db, names, unlogged, timeoutMs);
  return { unlogged: existing ?? unlogged };
}

/**
 * `PostgresStore.probe`: what `open` would find, read in one read-only snapshot. Anything
 * missing or older is what `open` would create or migrate, so the answer depends on whether
 * this user holds every privilege those statements need.
 */
export async function probeSchema(
  client: pg.ClientBase,
  names: SchemaNames,
  timeoutMs: number,
): Promise<StoreProbe> {
  const db = bounded(client, timeoutMs);
  await beginBounded(db, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', timeoutMs);
  try {
    let found: SchemaState;
    try {
      found = await inspectSchema(db, names);
    } catch (error) {
      if (!(error instanceof SessionError) || error.code !== 'ERR_UNSUPPORTED') throw error;
      return { state: 'refused', reason: errorMessage(error), cause: error };
    }
    if (found.complete) return { state: 'present' };
    const lacking = await lackedNeeds(db, migrationSteps(names, found, false));
    const table = qualified(names, names.table);
    if (lacking.length === 0) {
      return found.recordsExists
        ? { state: 'present' }
        : { state: 'absent', reason: `${table} does not exist` };
    }
    const why = lacking.join(', and ');
    return {
      state: 'refused',
      reason: found.recordsExists
        ? found.version === SCHEMA_VERSION
          ? `${table} lacks objects of its store that open would create, but ${why}`
          : `${table} has schema version ${found.version}, which open would migrate to ${SCHEMA_VERSION}, but ${why}`
        : found.schemaExists
          ? `${table} does not exist, and ${why}`
          : `neither ${table} nor its schema exists, and ${why}`,
    };
  } finally {
    await db.query('COMMIT');
  }
}

/**
 * SQLSTATEs of a server that answered but will not let this user use this place, which `open`
 * meets as well: no privilege (42501), a login refused (class 28), no such database (3D000).
 */
const REFUSING_STATES = new Set(['42501', '28000', '28P01', '3D000']);

/**
 * `probe`'s answer for an error the server gave: `refused` when `open` would be refused the
 * same way, else undefined (the server could not be asked).
 */
export function refusalOf(
  error: unknown,
  names: SchemaNames,
  server: string,
): StoreProbe | undefined {
  const cause = error instanceof SessionError ? error.cause : error;
  const sqlState = (cause as { code?: unknown } | undefined)?.code;
  if (typeof sqlState !== 'string' || !REFUSING_STATES.has(sqlState)) return undefined;
  return {
    state: 'refused',
    reason: `${qualified(names, names.table)} on PostgreSQL ${server} is refused to this user: ${errorMessage(cause)}`,
    cause,
  };
}

/**
 * Reads the store's objects and its version record, and throws `ERR_UNSUPPORTED` when they are
 * not what this package created. Only reads, so a refused table stays untouched.
 */
async function inspectSchema(db: Queryable, names: SchemaNames): Promise<SchemaState> {
  const wanted = [
    names.table,
    names.locks,
    names.expiryIndex,
    names.ownerIndex,
    names.invalidIdIndex,
    names.versions,
  ];
  const { rows: objects } = await db.query<{ name: string; kind: string; persistence: string }>(
    `SELECT c.relname AS name, c.relkind::text AS kind, c.relpersistence::text AS persistence
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relname = ANY($2::text[])`,
    [names.schema, wanted],
  );
  const { rows: schemas } = await db.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [
    names.schema,
  ]);
  const kindOf = new Map(objects.map((object) => [object.name, object.kind]));
  const { rows: columns } = await db.query<ColumnShape & { table: string }>(
    `SELECT c.relname AS table, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
            a.attnotnull AS notnull
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY c.relname, a.attnum`,
    [names.schema, wanted],
  );
  const assertShape = (name: string, shape: readonly ColumnShape[]) => {
    const kind = kindOf.get(name);
    if (kind === undefined) return false;
    if (kind !== 'r' && kind !== 'p') throw foreign(names, name, 'is not a table');
    const found = columns.filter((column) => column.table === name);
    const matches =
      found.length === shape.length &&
      found.every(
        (column, i) =>
          column.name === shape[i]?.name &&
          column.type === shape[i]?.type &&
          column.notnull === shape[i]?.notnull,
      );
    if (!matches) {
      const list = found.map((column) => `${column.name} ${column.type}`).join(', ');
      throw foreign(names, name, `has columns (${list}), not the ones @sessile/postgres creates`);
    }
    return true;
  };
  // A table takes its name as a type too: a standalone type of that name (an enum, a domain)
  // makes CREATE TABLE fail. Implicit array types are moved aside by PostgreSQL itself.
  const { rows: types } = await db.query<{ name: string }>(
    `SELECT t.typname AS name FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname = $1 AND t.typname = ANY($2::text[]) AND t.typrelid = 0
       AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)`,
    [names.schema, [names.table, names.locks, names.versions]],
  );
  const clash = types[0]?.name;
  if (clash !== undefined)
    throw foreign(names, clash, 'is a type, whose name its table would need');
  const versionsExists = assertShape(names.versions, SHAPES.versions);
  let version: number | undefined;
  if (versionsExists) {
    const { rows } = await db.query<{ version: number }>(
      `SELECT version FROM ${qualified(names, names.versions)} WHERE table_name = $1`,
      [names.table],
    );
    version = rows[0]?.version;
  }
  if (version !== undefined && version > SCHEMA_VERSION) {
    throw new SessionError(
      'ERR_UNSUPPORTED',
      `${qualified(names, names.table)} has schema version ${version}, newer than the ${SCHEMA_VERSION} this @sessile/postgres understands; upgrade the package`,
    );
  }
  const recordsShape = RECORDS_SHAPES[version ?? SCHEMA_VERSION];
  const locksShape = LOCKS_SHAPES[version ?? SCHEMA_VERSION];
  if (recordsShape === undefined || locksShape === undefined) {
    throw foreign(names, names.versions, `records version ${version}, which no release wrote`);
  }
  const recordsExists = assertShape(names.table, recordsShape);
  const locksExists = assertShape(names.locks, locksShape);
  // A same-named table without a version record was made by someone else, whatever its columns.
  if (version === undefined) {
    if (recordsExists) throw foreign(names, names.table, 'has no sessile version record');
    if (locksExists) throw foreign(names, names.locks, 'has no sessile version record');
  }
  const indexExists = assertIndex(names, kindOf, names.expiryIndex);
  const ownerIndexExists = assertIndex(names, kindOf, names.ownerIndex);
  const invalidIdIndexExists = assertIndex(names, kindOf, names.invalidIdIndex);
  const { rows: functions } = await db.query(
    `SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = $1 AND p.proname = $2`,
    [names.schema, names.claimRead],
  );
  const claimReadExists = functions.length > 0;
  // Versions before 3 created no function: one of that name is someone else's.
  if (claimReadExists && (version === undefined || version < 3)) {
    throw foreign(names, names.claimRead, 'is a function @sessile/postgres did not create');
  }
  return {
    schemaExists: schemas.length > 0,
    versionsExists,
    version,
    recordsExists,
    locksExists,
    indexExists,
    ownerIndexExists,
    invalidIdIndexExists,
    claimReadExists,
    recordsUnlogged: recordsExists
      ? objects.some((object) => object.name === names.table && object.persistence === 'u')
      : undefined,
    complete:
      version === SCHEMA_VERSION &&
      recordsExists &&
      locksExists &&
      indexExists &&
      ownerIndexExists &&
      invalidIdIndexExists &&
      claimReadExists,
  };
}

function assertIndex(names: SchemaNames, kindOf: Map<string, string>, name: string): boolean {
  const kind = kindOf.get(name);
  if (kind !== undefined && kind !== 'i') throw foreign(names, name, 'is not an index');
  return kind !== undefined;
}

/**
 * Creates what is missing inside one transaction that holds a transaction-level advisory lock
 * for the schema, so instances starting together create each object once and never fail on a
 * sibling's half-done work. Nothing is created when the existing objects are refused. Resolves
 * to whether a sessions table that already existed is UNLOGGED; undefined when it created one.
 */
async function migrateSchema(
  db: Queryable,
  names: SchemaNames,
  unlogged: boolean,
  timeoutMs: number,
): Promise<boolean | undefined> {
  // READ COMMITTED whatever default_transaction_isolation says: the inspection after the lock
  // must see what a sibling committed while this transaction waited for it.
  await beginBounded(db, 'BEGIN ISOLATION LEVEL READ COMMITTED', timeoutMs);
  try {
    await db.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [
      `sessile schema ${names.schema}`,
    ]);
    const state = await inspectSchema(db, names);
    if (!state.complete) {
      for (const step of migrationSteps(names, state, unlogged)) await db.query(step.sql);
    }
    await db.query('COMMIT');
    return state.recordsUnlogged;
  } catch (error) {
    await db.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/** A privilege a migration statement needs: SQL true when this user holds it, and else why not. */
interface Need {
  holds: string;
  lacking: string;
}

/** One statement of a migration, with what this user needs to run it. */
interface MigrationStep {
  sql: string;
  needs: readonly Need[];
}

/** Every migration writes, which a standby or a read-only default refuses. */
const WRITABLE: Need = {
  holds: `NOT pg_is_in_recovery() AND current_setting('default_transaction_read_only') = 'off'`,
  lacking: 'this connection may not write (a standby, or default_transaction_read_only)',
};

/**
 * What `open` runs to create or migrate the store's objects, in order, ending with the version
 * record. An object in a schema this user creates is theirs, so only an existing schema's
 * objects need privileges beyond the database's CREATE.
 */
function migrationSteps(
  names: SchemaNames,
  state: SchemaState,
  unlogged: boolean,
): MigrationStep[] {
  const steps: MigrationStep[] = [];
  const createIn = (kind: string): Need[] =>
    state.schemaExists
      ? [
          {
            holds: `has_schema_privilege('${names.schema}', 'CREATE')`,
            lacking: `this user may not create ${kind} in schema ${names.schema}`,
          },
        ]
      : [];
  const owns = (name: string): Need[] => [
    {
      holds: `(SELECT pg_has_role(c.relowner, 'USAGE') ${relationOf(names, name)})`,
      lacking: `this user does not own ${qualified(names, name)}`,
    },
  ];
  if (!state.schemaExists) {
    steps.push({
      sql: `CREATE SCHEMA "${names.schema}"`,
      needs: [
        {
          holds: `has_database_privilege(current_database(), 'CREATE')`,
          lacking: 'this user may not create schemas in the database',
        },
      ],
    });
  }
  if (!state.versionsExists) {
    steps.push({
      sql: `CREATE TABLE ${qualified(names, names.versions)} (table_name text PRIMARY KEY, version integer NOT NULL)`,
      needs: createIn('tables'),
    });
  }
  const recordsKind = unlogged ? 'UNLOGGED TABLE' : 'TABLE';
  const table = qualified(names, names.table);
  // Ids compare bytewise (COLLATE "C"), cheaper than a locale; expiry is a float8 so any JS
  // number of ms round-trips exactly; owners are UTF-8 bytes, since text cannot hold U+0000.
  const recordColumns = `id text COLLATE "C" PRIMARY KEY, data bytea NOT NULL, expires_at double precision NOT NULL, owner bytea`;
  // An index on an existing table takes its owner; one on a table created here is the creator's.
  const onRecords = state.recordsExists ? owns(names.table) : [];
  if (!state.recordsExists) {
    steps.push({
      sql: `CREATE ${recordsKind} ${table} (${recordColumns})`,
      needs: createIn('tables'),
    });
  } else if (state.version === 1) {
    // Without a default, adding a nullable column rewrites nothing: existing sessions have no owner.
    steps.push({ sql: `ALTER TABLE ${table} ADD COLUMN owner bytea`, needs: onRecords });
  }
  if (!state.indexExists) {
    steps.push({
      sql: `CREATE INDEX "${names.expiryIndex}" ON ${table} (expires_at)`,
      needs: onRecords,
    });
  }
  // Partial: sessions without an owner (anonymous visitors) cost the index nothing.
  if (!state.ownerIndexExists) {
    steps.push({
      sql: `CREATE INDEX "${names.ownerIndex}" ON ${table} (owner) WHERE owner IS NOT NULL`,
      needs: onRecords,
    });
  }
  // Normally empty, so count() subtracts these rows without reading any id, and each write
  // pays one check of its id.
  if (!state.invalidIdIndexExists) {
    steps.push({
      sql: `CREATE INDEX "${names.invalidIdIndex}" ON ${table} (id) WHERE NOT ${VALID_ID}`,
      needs: onRecords,
    });
  }
  // Leases need no crash safety: a crash that empties the table makes every holder's fenced
  // write fail with ERR_LOCK_LOST, and skipping the WAL spares each claim and release a flush.
  // `waited` marks a lease another process asked for, so only its release pays for a NOTIFY.
  const locks = qualified(names, names.locks);
  const waited = 'waited boolean NOT NULL DEFAULT false';
  if (!state.locksExists) {
    steps.push({
      sql: `CREATE UNLOGGED TABLE ${locks} (id text COLLATE "C" PRIMARY KEY, token text NOT NULL, expires_at double precision NOT NULL, ${waited})`,
      needs: createIn('tables'),
    });
  } else if ((state.version ?? SCHEMA_VERSION) < 4) {
    // A constant default rewrites nothing; held leases count as not waited for.
    steps.push({ sql: `ALTER TABLE ${locks} ADD COLUMN ${waited}`, needs: owns(names.locks) });
  }
  if (!state.claimReadExists) {
    steps.push({ sql: claimReadFunction(names, 'CREATE'), needs: createIn('functions') });
  } else if ((state.version ?? SCHEMA_VERSION) < 6) {
    // Every older function refuses a lease its own token holds, which a resent claim meets.
    steps.push({
      sql: claimReadFunction(names, 'CREATE OR REPLACE'),
      needs: [
        ...createIn('functions'),
        {
          holds: `(SELECT bool_and(pg_has_role(p.proowner, 'USAGE')) FROM pg_proc p
                   JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname = '${names.schema}' AND p.proname = '${names.claimRead}')`,
          lacking: `this user does not own function ${qualified(names, names.claimRead)}`,
        },
      ],
    });
  }
  steps.push({
    sql: `INSERT INTO ${qualified(names, names.versions)} (table_name, version)
          VALUES ('${names.table}', ${SCHEMA_VERSION})
          ON CONFLICT (table_name) DO UPDATE SET version = excluded.version`,
    needs: state.versionsExists
      ? [
          {
            holds: `(SELECT has_table_privilege(c.oid, 'INSERT') AND has_table_privilege(c.oid, 'UPDATE') ${relationOf(names, names.versions)})`,
            lacking: `this user may not write ${qualified(names, names.versions)}`,
          },
        ]
      : [],
  });
  return steps;
}

/**
 * `FROM … WHERE` picking one relation of the store's schema by catalog names, as a lookup of
 * `schema.name` would check USAGE on the schema and fail. Names are validated identifiers.
 */
function relationOf(names: SchemaNames, name: string): string {
  return `FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = '${names.schema}' AND c.relname = '${name}'`;
}

/** What this user lacks for `steps`, each need once, in the order the steps meet them. */
async function lackedNeeds(db: Queryable, steps: readonly MigrationStep[]): Promise<string[]> {
  const needs = new Map<string, Need>([[WRITABLE.holds, WRITABLE]]);
  for (const need of steps.flatMap((step) => step.needs)) {
    if (!needs.has(need.holds)) needs.set(need.holds, need);
  }
  const wanted = [...needs.values()];
  const { rows } = await db.query<{ held: boolean[] }>(
    `SELECT ARRAY[${wanted.map((need) => `coalesce((${need.holds}), false)`).join(', ')}] AS held`,
  );
  const held = rows[0]?.held ?? [];
  return wanted.filter((_, i) => held[i] !== true).map((need) => need.lacking);
}

/**
 * Claims leases as the lock's claim statements do (keys in order, so batches never deadlock;
 * a refused claim marks the lease `waited`; a lease its own token holds counts as taken) and
 * reads the sessions of the claims taken, returning one row per taken claim's token. The
 * read is the VOLATILE function's second statement, so it runs on a fresh snapshot taken after
 * the claim: it sees every write committed before the release that let the claim through, which
 * one statement (one snapshot, taken before the claim waited) would not. PL/pgSQL keeps both
 * plans per connection.
 */
function claimReadFunction(names: SchemaNames, create: 'CREATE' | 'CREATE OR REPLACE'): string {
  return `${create} FUNCTION ${qualified(names, names.claimRead)}(
      lease_keys text[], lease_tokens text[], lease_ends double precision[],
      now_ms double precision, session_ids text[])
    RETURNS TABLE (token text, data bytea, "expiresAt" double precision, owner bytea)
    LANGUAGE plpgsql VOLATILE AS $body$
    #variable_conflict use_column
    DECLARE taken text[];
    BEGIN
      WITH claimed AS (
        INSERT INTO ${qualified(names, names.locks)} AS held (id, token, expires_at)
          SELECT q.id, q.token, q.expires_at
          FROM unnest(lease_keys, lease_tokens, lease_ends) AS q(id, token, expires_at)
          ORDER BY q.id COLLATE "C"
          ${claimConflict('now_ms')}
          RETURNING held.token)
      SELECT array_agg(claimed.token) INTO taken FROM claimed;
      IF taken IS NULL THEN
        RETURN;
      END IF;
      RETURN QUERY SELECT q.token, stored.data, stored.expires_at, stored.owner
        FROM unnest(lease_tokens, session_ids) AS q(token, id)
        LEFT JOIN ${qualified(names, names.table)} AS stored
          ON stored.id = q.id AND stored.expires_at > now_ms
        WHERE q.token = ANY (taken);
    END
    $body$`;
}

function foreign(names: SchemaNames, name: string, problem: string): SessionError {
  return new SessionError(
    'ERR_UNSUPPORTED',
    `Refusing to use ${qualified(names, name)}: it ${problem}. Choose another table or schema; nothing in it was touched`,
  );
}

/**
 * What a claim does on a key that has a lease row (aliased `held`): takes it when the lease has
 * ended, else marks it `waited` (once), so its release knows to NOTIFY. RETURNING then gives the
 * holder's token, which only equals the claim's own when the claim took the key.
 *
 * A row holding the claim's own token counts as taken, unchanged and not marked waited. Tokens
 * are never reused, so such a row is the claim's own, taken by an earlier send whose answer was
 * lost with its connection: sent any number of times (the lock kit resends a waiting claim after
 * a lost connection), the claim takes the key at most once and never leaves it to nobody. Every
 * claim statement and the stored claim-and-read function share this one rule.
 */
export function claimConflict(now: string): string {
  // 'NaN' and 'Infinity' (a hand edit) sort above every number: no lease ends then, so it has ended.
  const ended = `(held.expires_at <= ${now} OR held.expires_at >= 'Infinity')`;
  const free = `(${ended} OR held.token = excluded.token)`;
  return `ON CONFLICT (id) DO UPDATE SET
      token = CASE WHEN ${ended} THEN excluded.token ELSE held.token END,
      expires_at = CASE WHEN ${ended} THEN excluded.expires_at ELSE held.expires_at END,
      waited = held.waited OR NOT ${free}
    WHERE ${free} OR NOT held.waited`;
}
