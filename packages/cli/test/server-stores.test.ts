import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { generateSessionId, type SessionStore } from '@sessile/core';
import { PostgresStore } from '@sessile/postgres';
import { RedisStore } from '@sessile/redis';
import { afterAll, describe, expect, it } from 'vitest';
import { jsonOf, runCli, seed } from './helpers.js';

const require = createRequire(import.meta.url);
const REDIS_URL = 'redis://127.0.0.1:6379';
const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
const run = randomBytes(4).toString('hex');
const schema = (name: string) => `cli_test_${run}_${name}`;
const prefix = (name: string) => `cli-test-${run}-${name}:`;

const pg = require('pg') as typeof import('pg');
const pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
const { createClient } = require('redis') as typeof import('redis');
const redis = createClient({ url: REDIS_URL });
afterAll(async () => {
  const { rows } = await pool.query('SELECT nspname FROM pg_namespace WHERE nspname LIKE $1', [
    `cli_test_${run}_%`,
  ]);
  for (const row of rows) await pool.query(`DROP SCHEMA "${row.nspname}" CASCADE`);
  await pool.end();
  if (redis.isOpen) {
    for await (const keys of redis.scanIterator({ MATCH: `cli-test-${run}-*` })) {
      if (keys.length > 0) await redis.del(keys);
    }
    await redis.quit();
  }
});

/** `sessile copy` from one schema of the test database to another, with `--json` and `extra`. */
function copySchemas(from: string, to: string, ...extra: string[]) {
  return runCli([
    'copy',
    '--from',
    `${PG_URL}?schema=${from}`,
    '--to',
    `${PG_URL}?schema=${to}`,
    ...extra,
    '--json',
  ]);
}

/** Opens a store, seeds `count` live sessions, and closes it; returns their ids. */
async function seeded(open: () => Promise<SessionStore>, count: number): Promise<string[]> {
  const store = await open();
  const ids = Array.from({ length: count }, () => generateSessionId());
  await seed(store, ids, () => Date.now() + 3_600_000);
  await store.close();
  return ids;
}

describe('copy between stores on one server', () => {
  it.each([
    [
      'two tables of one schema',
      `${schema('tables')}&table=old_sessions`,
      `${schema('tables')}&table=new_sessions`,
    ],
    ['two schemas', schema('from'), schema('to')],
  ])('copies between %s in one PostgreSQL database', async (_name, from, to) => {
    const [fromSchema, fromTable] = from.split('&table=') as [string, string | undefined];
    await seeded(
      () =>
        PostgresStore.open({
          connectionString: PG_URL,
          schema: fromSchema,
          ...(fromTable === undefined ? {} : { table: fromTable }),
        }),
      3,
    );
    const result = await copySchemas(from, to);
    expect(result.code, result.stderr).toBe(0);
    expect(jsonOf(result)).toMatchObject({
      from: `${PG_URL}?schema=${from}`,
      to: `${PG_URL}?schema=${to}`,
      counts: { read: 3, written: 3 },
    });
  });

  it('copies between two prefixes of one Redis database', async () => {
    await redis.connect();
    await seeded(() => RedisStore.open({ url: REDIS_URL, prefix: prefix('old') }), 2);
    const result = await runCli([
      'copy',
      '--from',
      `${REDIS_URL}?prefix=${prefix('old')}`,
      '--to',
      `${REDIS_URL}?prefix=${prefix('new')}`,
      '--json',
    ]);
    expect(result.code, result.stderr).toBe(0);
    // Shown with their prefixes, which tell the two stores apart.
    expect(jsonOf(result)).toMatchObject({
      from: `${REDIS_URL}?prefix=${prefix('old')}`,
      to: `${REDIS_URL}?prefix=${prefix('new')}`,
      counts: { read: 2, written: 2 },
    });
  });

  it.each([
    [
      'another name of the host and the default table',
      `${PG_URL}?schema=${schema('same')}`,
      `postgres://postgres@localhost/test?schema=${schema('same')}&table=sessions`,
    ],
    [
      'the default prefix and database spelt out',
      REDIS_URL,
      'redis://localhost:6379/0?prefix=sessile:',
    ],
    [
      'the IPv6 loopback, which the server listens on too',
      `${REDIS_URL}?prefix=${prefix('same')}`,
      `redis://[::1]:6379?prefix=${prefix('same')}`,
    ],
    [
      'a database number with a leading zero',
      `${REDIS_URL}/1?prefix=${prefix('same')}`,
      `${REDIS_URL}/01?prefix=${prefix('same')}`,
    ],
  ])('refuses one store under %s', async (_name, from, to) => {
    const result = await runCli(['copy', '--from', from, '--to', to]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('same store');
  });
});

describe('a Redis record a newer release wrote (a later record format)', () => {
  it('ends stats and copy with ERR_UNSUPPORTED saying to upgrade', async () => {
    if (!redis.isOpen) await redis.connect();
    const [newer] = await seeded(
      () => RedisStore.open({ url: REDIS_URL, prefix: prefix('newer') }),
      1,
    );
    // The format is the hex digit after the record's two magic characters.
    await redis.setRange(`${prefix('newer')}s:{${newer}}`, 2, 'f');
    const url = `${REDIS_URL}?prefix=${prefix('newer')}`;
    for (const args of [
      ['stats', url],
      ['copy', '--from', url, '--to', `${REDIS_URL}?prefix=${prefix('newer-copy')}`],
    ]) {
      const result = await runCli([...args, '--json']);
      expect(result.code, args[0]).toBe(1);
      expect(jsonOf(result), args[0]).toMatchObject({
        ok: false,
        error: {
          code: 'ERR_UNSUPPORTED',
          message: expect.stringMatching(
            /format 15; .*a newer release wrote it; upgrade @sessile\/cli and the store's package$/,
          ),
        },
      });
    }
  });
});

describe('a PostgreSQL store that is not there', () => {
  it.each([
    ['stats', (url: string) => ['stats', url]],
    ['ls', (url: string) => ['ls', url]],
    ['show', (url: string) => ['show', url, '--', generateSessionId()]],
    ['sweep', (url: string) => ['sweep', url]],
    ['copy --from', (url: string) => ['copy', '--from', url, '--to', `${url}_copy`]],
  ])('%s refuses it with exit 1 and creates nothing', async (name, args) => {
    const missing = schema(`missing_${name.replace(/\W+/g, '_')}`);
    const result = await runCli(args(`${PG_URL}?schema=${missing}&table=sesions`));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`no store there: "${missing}"."sesions" does not exist`);
    const { rows } = await pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [missing]);
    expect(rows).toHaveLength(0);
  });
});

describe('--dry-run to a PostgreSQL store that is not there', () => {
  it('counts every session as written and creates nothing', async () => {
    const source = schema('dry_from');
    const target = schema('dry_to');
    await seeded(() => PostgresStore.open({ connectionString: PG_URL, schema: source }), 2);
    const result = await copySchemas(source, target, '--dry-run');
    expect(result.code, result.stderr).toBe(0);
    expect(jsonOf(result)).toMatchObject({ dryRun: true, counts: { written: 2, present: 0 } });
    const { rows } = await pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [target]);
    expect(rows).toHaveLength(0);
  });
});

describe('--dry-run to a PostgreSQL table this user may not create', () => {
  /** A role that may log in (trust) but create nothing in the test database. */
  const role = `cli_test_${run}_reader`;
  afterAll(async () => {
    await pool.query(`DROP OWNED BY "${role}"`).catch(() => {});
    await pool.query(`DROP ROLE IF EXISTS "${role}"`);
  });

  it.each([
    ['in a schema it may not create', false],
    ['in a schema where it may not create tables', true],
  ])('fails as the real run does, %s, and creates nothing', async (_name, schemaExists) => {
    await pool.query(
      `DO $$ BEGIN CREATE ROLE "${role}" LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
    );
    const source = schema(`denied_from_${schemaExists}`);
    const target = schema(`denied_to_${schemaExists}`);
    await seeded(() => PostgresStore.open({ connectionString: PG_URL, schema: source }), 2);
    if (schemaExists) {
      await pool.query(`CREATE SCHEMA "${target}"`);
      await pool.query(`GRANT USAGE ON SCHEMA "${target}" TO "${role}"`);
    }
    const to = `postgres://${role}@127.0.0.1:5432/test?schema=${target}`;
    const args = ['copy', '--from', `${PG_URL}?schema=${source}`, '--to', to, '--json'];
    const dryRun = await runCli([...args, '--dry-run']);
    expect([dryRun.code, jsonOf(dryRun)], dryRun.stderr).toMatchObject([
      1,
      { ok: false, error: { code: 'ERR_STORE_IO' } },
    ]);
    expect(dryRun.stderr).toContain(`cannot make a store there: `);
    expect(dryRun.stderr).toContain(`"${target}"."sessions"`);
    expect(dryRun.stderr).toContain(
      schemaExists ? `may not create tables in schema ${target}` : 'may not create schemas',
    );
    const real = await runCli(args);
    expect([real.code, jsonOf(real)], real.stderr).toMatchObject([1, { ok: false }]);
    const { rows } = await pool.query('SELECT to_regclass($1) AS found', [`"${target}".sessions`]);
    expect(rows[0].found).toBeNull();
  });
});

describe('a PostgreSQL schema or table name PostgresStore refuses', () => {
  const names: [string, string][] = [
    ['a table name with a dash', 'table=bad-name'],
    ['a table name longer than 52 characters', `table=${'t'.repeat(53)}`],
    ['the versions table', 'table=sessile_versions'],
    ['a schema starting with pg_', 'schema=pg_sessions'],
    ['a schema name starting with a digit', 'schema=1sessions'],
  ];
  const commands: [string, (url: string) => string[]][] = [
    ['stats', (url) => ['stats', url]],
    ['ls', (url) => ['ls', url]],
    // An id never starting with '-': '--json' is appended after it.
    ['show', (url) => ['show', url, `s${generateSessionId().slice(1)}`]],
    ['sweep', (url) => ['sweep', url]],
    [
      'copy --from',
      (url) => ['copy', '--from', url, '--to', `${PG_URL}?schema=${schema('unused')}`],
    ],
    [
      'copy --to --dry-run',
      (url) => ['copy', '--from', `${PG_URL}?schema=${schema('unused')}`, '--to', url, '--dry-run'],
    ],
  ];
  it.each(names)('%s exits 2 from every command, as a bad argument', async (_name, parameter) => {
    for (const [command, args] of commands) {
      const result = await runCli([...args(`${PG_URL}?${parameter}`), '--json']);
      expect([command, result.code, jsonOf(result)], result.stderr).toMatchObject([
        command,
        2,
        { ok: false, error: { code: 'ERR_USAGE' } },
      ]);
      expect(result.stderr).toMatch(/(schema|table) must/);
    }
  });
});

describe('a PostgreSQL store with a row whose id was inserted by hand', () => {
  /** Two sessions, and a row whose id no sessile store accepts, which ids() leaves out. */
  async function withForeignId(name: string): Promise<string> {
    const source = schema(name);
    await seeded(() => PostgresStore.open({ connectionString: PG_URL, schema: source }), 2);
    await pool.query(
      `INSERT INTO "${source}".sessions (id, data, expires_at) VALUES ('not a session id!', '\\x7b7d', $1)`,
      [Date.now() + 3_600_000],
    );
    return source;
  }

  it('copy moves the two sessions, leaves the row out as the store does, and exits 0', async () => {
    const source = await withForeignId('foreign_from');
    const target = schema('foreign_to');
    const result = await copySchemas(source, target);
    expect(result.code, result.stderr).toBe(0);
    expect(jsonOf(result)).toMatchObject({ counts: { read: 2, written: 2, unreadable: 0 } });
    const { rows } = await pool.query(`SELECT id FROM "${target}".sessions`);
    expect(rows.map((row) => row.id)).not.toContain('not a session id!');
    expect(rows).toHaveLength(2);
  });

  it('stats lists the two sessions and no corrupt record, and exits 0', async () => {
    const source = await withForeignId('foreign_stats');
    const result = await runCli(['stats', `${PG_URL}?schema=${source}`, '--json']);
    expect(result.code, result.stderr).toBe(0);
    expect(jsonOf(result)).toMatchObject({ corrupt: 0 });
  });
});

describe('libpq connection parameters in a postgres:// address', () => {
  it('reach the driver: with sslmode=disable it connects, and sslmode=require is asked of the server', async () => {
    const source = schema('libpq');
    await seeded(() => PostgresStore.open({ connectionString: PG_URL, schema: source }), 2);
    const plain = await runCli([
      'stats',
      `${PG_URL}?schema=${source}&sslmode=disable&application_name=sessile-cli-${run}`,
      '--json',
    ]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(jsonOf(plain)).toMatchObject({ live: 2 });
    // This server has no TLS: a store that asked for it is refused, naming the server.
    const tls = await runCli(['stats', `${PG_URL}?schema=${source}&sslmode=require`, '--json']);
    expect(tls.code).toBe(1);
    expect(tls.stderr).toMatch(/SSL/i);
    expect(tls.stderr).toContain('127.0.0.1:5432');
  });

  it('name one store whatever they say: copy refuses the same table reached two ways', async () => {
    const source = schema('libpq_same');
    await seeded(() => PostgresStore.open({ connectionString: PG_URL, schema: source }), 1);
    const result = await runCli([
      'copy',
      '--from',
      `${PG_URL}?schema=${source}`,
      '--to',
      `${PG_URL}?schema=${source}&application_name=other`,
    ]);
    expect(result.code).toBe(2);
  });
});
