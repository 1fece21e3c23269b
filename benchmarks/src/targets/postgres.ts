import { createHash } from 'node:crypto';
import { importOptional, type OpenTarget, type Target, Unavailable } from '../adapter.js';
import { decodeBody, encodeBody } from './engines.js';
import { type SessileStoreSpec, sessileStore, sessileViaExpress } from './sessile.js';

/** The server every PostgreSQL target uses, with the same pool size as the connect-pg-simple peer. */
const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
const POOL_SIZE = 8;

interface PgPool {
  query(
    config: string | { name?: string; text: string; values?: unknown[] },
    values?: unknown[],
  ): Promise<{ rows: unknown[]; rowCount: number | null }>;
  on(event: string, listener: (error: unknown) => void): void;
  end(): Promise<void>;
}

type PgModule = { default: { Pool: new (options: object) => PgPool } };

/** A schema per run directory, so workers of one run share it and runs never meet. */
function schemaFor(dir: string, prefix: string): string {
  return `${prefix}_${createHash('sha256').update(dir).digest('hex').slice(0, 12)}`;
}

async function reachablePool(): Promise<PgPool> {
  const pg = await importOptional<PgModule>('pg');
  const pool = new pg.default.Pool({
    connectionString: PG_URL,
    max: POOL_SIZE,
    connectionTimeoutMillis: 2000,
  });
  pool.on('error', () => {});
  try {
    await pool.query('SELECT 1');
  } catch (error) {
    await pool.end().catch(() => {});
    throw new Unavailable(`PostgreSQL not reachable at ${PG_URL} (${(error as Error).message})`);
  }
  return pool;
}

async function dropSchema(schema: string): Promise<void> {
  const pool = await reachablePool();
  try {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await pool.end();
  }
}

/** Commits acknowledged before the WAL flush: a server crash may undo the last ~0.6 s of them. */
const ASYNC_COMMIT = '?options=-c%20synchronous_commit%3Doff';

const postgresSpec: SessileStoreSpec = {
  name: 'postgres',
  description: '`PostgresStore` on a pg pool of 8, lease-row locks woken by LISTEN/NOTIFY',
  durability: 'PostgreSQL default (fsync on commit)',
  packageName: '@sessile/postgres',
  className: 'PostgresStore',
  options: (dir) => ({
    connectionString: PG_URL,
    poolSize: POOL_SIZE,
    schema: schemaFor(dir, 'sessile_bench_store'),
  }),
  engine: 'raw-pg',
  peers: ['connect-pg-simple'],
};

const postgresAsyncCommitBase = sessileStore({
  name: 'postgres-async-commit',
  description: '`PostgresStore` as `postgres`, its connections with `synchronous_commit=off`',
  durability:
    'app crash, server restart: yes; server crash: the last ~0.6 s of commits may be lost',
  packageName: '@sessile/postgres',
  className: 'PostgresStore',
  options: (dir) => ({
    connectionString: `${PG_URL}${ASYNC_COMMIT}`,
    poolSize: POOL_SIZE,
    schema: schemaFor(dir, 'sessile_bench_async'),
  }),
  engine: 'raw-pg',
  peers: ['connect-pg-simple'],
});

/** A `PostgresStore` target whose schema is dropped when the target closes. */
function withSchemaDropped(base: Target, prefix: string): Target {
  return {
    ...base,
    needsServer: true,
    async open(dir) {
      await (await reachablePool()).end();
      const target = await base.open(dir);
      return {
        ...target,
        async close() {
          await target.close();
          await dropSchema(schemaFor(dir, prefix));
        },
      };
    },
  };
}

export const postgresStore = withSchemaDropped(sessileStore(postgresSpec), 'sessile_bench_store');
/** The like-for-like comparison with connect-pg-simple: both through express-session's Store API. */
export const postgresExpressStore = withSchemaDropped(
  sessileViaExpress(postgresSpec),
  'sessile_bench_store',
);
export const postgresAsyncCommitStore = withSchemaDropped(
  postgresAsyncCommitBase,
  'sessile_bench_async',
);

/** What the raw engines need from a driver: one prepared statement at a time, and an end. */
interface RawDriver {
  run(
    name: string,
    text: string,
    values: unknown[],
  ): Promise<{ rows: unknown[]; rowCount: number | null }>;
  end(): Promise<void>;
}

/**
 * The same prepared statements on one table with an expiry index, through any driver: the floor
 * under `postgres`, and the comparison between node-postgres and postgres.js.
 */
async function openRawEngine(driver: RawDriver, schema: string): Promise<OpenTarget> {
  const table = `"${schema}".sessions`;
  const admin = (text: string) => driver.run('', text, []);
  await admin(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await admin(`CREATE SCHEMA "${schema}"`);
  await admin(
    `CREATE TABLE ${table} (id text COLLATE "C" PRIMARY KEY, data bytea NOT NULL, expires_at double precision NOT NULL)`,
  );
  await admin(`CREATE INDEX ON ${table} (expires_at)`);
  const run = (name: string, text: string, values: unknown[]) =>
    driver.run(`${schema}_${name}`, text, values);
  return {
    async create(id, body, expiresAt) {
      await run('insert', `INSERT INTO ${table} (id, data, expires_at) VALUES ($1, $2, $3)`, [
        id,
        encodeBody(body),
        expiresAt,
      ]);
    },
    async read(id) {
      const { rows } = await run(
        'select',
        `SELECT data FROM ${table} WHERE id = $1 AND expires_at > $2`,
        [id, Date.now()],
      );
      const row = rows[0] as { data: Uint8Array } | undefined;
      return row && decodeBody(row.data);
    },
    async update(id, body, expiresAt) {
      await run(
        'update',
        `UPDATE ${table} SET data = $2, expires_at = $3 WHERE id = $1 AND expires_at > $4`,
        [id, encodeBody(body), expiresAt, Date.now()],
      );
    },
    async touch(id, expiresAt) {
      await run('touch', `UPDATE ${table} SET expires_at = $2 WHERE id = $1 AND expires_at > $3`, [
        id,
        expiresAt,
        Date.now(),
      ]);
    },
    cleanupNote: 'one unbounded `DELETE … WHERE expires_at <= now` through the index',
    async cleanup() {
      const result = await run('sweep', `DELETE FROM ${table} WHERE expires_at <= $1`, [
        Date.now(),
      ]);
      return { removed: result.rowCount ?? 0 };
    },
    async expiredLeft(ids) {
      const { rows } = await run(
        'left',
        `SELECT count(*)::int AS n FROM ${table} WHERE id = ANY($1::text[])`,
        [ids],
      );
      return (rows[0] as { n: number }).n;
    },
    async close() {
      await admin(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
      await driver.end();
    },
  };
}

export const pgEngine: Target = {
  name: 'raw-pg',
  kind: 'engine',
  description: 'bare node-postgres (pool of 8) prepared statements, bytea data, expiry index',
  durability: 'PostgreSQL default (fsync on commit)',
  needsServer: true,
  async open(dir) {
    const pool = await reachablePool();
    return openRawEngine(
      {
        run: (name, text, values) =>
          name === '' ? pool.query(text) : pool.query({ name, text, values }),
        end: () => pool.end(),
      },
      schemaFor(dir, 'sessile_bench_raw'),
    );
  },
};

interface PostgresJs {
  unsafe(
    text: string,
    values?: unknown[],
    options?: { prepare?: boolean },
  ): Promise<unknown[] & { count: number }>;
  end(): Promise<void>;
}

/** The same statements through postgres.js, to choose the driver by measurement. */
export const postgresJsEngine: Target = {
  name: 'raw-postgresjs',
  kind: 'engine',
  description: 'bare postgres.js 3 (8 connections) prepared statements, same table as `raw-pg`',
  durability: 'PostgreSQL default (fsync on commit)',
  needsServer: true,
  async open(dir) {
    await (await reachablePool()).end();
    const { default: postgres } = await importOptional<{
      default: (url: string, options: object) => PostgresJs;
    }>('postgres');
    const sql = postgres(PG_URL, { max: POOL_SIZE, onnotice: () => {} });
    return openRawEngine(
      {
        async run(name, text, values) {
          const rows = await sql.unsafe(text, values, { prepare: name !== '' });
          return { rows, rowCount: rows.count };
        },
        end: () => sql.end(),
      },
      schemaFor(dir, 'sessile_bench_pgjs'),
    );
  },
};
