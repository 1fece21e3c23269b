import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { PostgresStore, type PostgresStoreOptions, SCHEMA_VERSION } from '@sessile/postgres';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { schemaNames } from '../src/schema.js';
import { buildStatements } from '../src/statements.js';
import {
  admin,
  CONNECTION_STRING,
  claimRead,
  codeOf,
  countStatements,
  downgradeToVersionFive,
  dropSchema,
  HOUR_MS,
  idOf,
  passwordGate,
  record,
  runSchema,
  textOf,
  useTestSchema,
} from './helpers.js';

const OPEN_CHILD = fileURLToPath(new URL('./open-child.mjs', import.meta.url));

const { schema, cleanups, newTable } = useTestSchema('store');

async function openStore(options: Partial<PostgresStoreOptions> = {}): Promise<PostgresStore> {
  const store = await PostgresStore.open({
    ...(options.pool === undefined ? { connectionString: CONNECTION_STRING } : {}),
    schema,
    table: newTable(),
    ...options,
  });
  cleanups.push(() => store.close());
  return store;
}

async function rowsOf(table: string): Promise<unknown[]> {
  return (await admin(`SELECT * FROM "${schema}"."${table}" ORDER BY 1`)).rows;
}

/**
 * Logs every DDL command on `target` from now on, whichever session runs it; the returned
 * function reads the log, each command once with how often it ran.
 */
async function logDdl(
  target: string,
): Promise<() => Promise<Array<{ tag: string; kind: string; identity: string; n: number }>>> {
  const trigger = `sessile_ddl_${randomBytes(4).toString('hex')}`;
  await admin(`CREATE TABLE "${schema}"."${trigger}" (tag text, kind text, identity text)`);
  await admin(`CREATE FUNCTION "${schema}"."${trigger}"() RETURNS event_trigger
    LANGUAGE plpgsql AS $$
    DECLARE r record;
    BEGIN
      FOR r IN SELECT * FROM pg_event_trigger_ddl_commands()
               WHERE schema_name = '${target}' OR object_identity = '"${target}"'
                  OR object_identity = '${target}' LOOP
        INSERT INTO "${schema}"."${trigger}" VALUES (r.command_tag, r.object_type, r.object_identity);
      END LOOP;
    EXCEPTION WHEN OTHERS THEN NULL;
    END $$`);
  await admin(
    `CREATE EVENT TRIGGER "${trigger}" ON ddl_command_end EXECUTE FUNCTION "${schema}"."${trigger}"()`,
  );
  cleanups.push(() => admin(`DROP EVENT TRIGGER IF EXISTS "${trigger}"`));
  return async () =>
    (
      await admin<{ tag: string; kind: string; identity: string; n: number }>(
        `SELECT tag, kind, identity, count(*)::int AS n FROM "${schema}"."${trigger}"
         GROUP BY tag, kind, identity ORDER BY identity`,
      )
    ).rows;
}

/** `count` app instances, each in its own process, opening `target`'s sessions at once: how each fared. */
async function openAtOnce(count: number, target: string): Promise<string[]> {
  const location = JSON.stringify({
    connectionString: CONNECTION_STRING,
    schema: target,
    table: 'sessions',
  });
  const children = Array.from({ length: count }, () =>
    fork(OPEN_CHILD, [location], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
  );
  const message = (child: (typeof children)[number], type: string) =>
    new Promise<{ type: string; message?: string }>((resolve, reject) => {
      child.on('message', (received: { type: string }) => {
        if (received.type === type || received.type === 'failed') resolve(received);
      });
      child.once('exit', (code) => reject(new Error(`child exited with ${code}`)));
    });
  await Promise.all(children.map((child) => message(child, 'ready')));
  const outcomes = children.map((child) => message(child, 'opened'));
  for (const child of children) child.send('go');
  return (await Promise.all(outcomes)).map((result) => result.message ?? result.type);
}

async function tableNames(inSchema = schema): Promise<string[]> {
  const { rows } = await admin<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY 1`,
    [inSchema],
  );
  return rows.map((row) => row.name);
}

describe('options', () => {
  it('refuses unknown options, both or neither connection, and bad names, as TypeErrors', async () => {
    await expect(
      PostgresStore.open({ connectionString: CONNECTION_STRING, tabel: 'x' } as never),
    ).rejects.toThrow(/tabel.*table/);
    // `poolSize` in another case or spelling, not `pool`, which it only begins with.
    for (const name of ['poolsize', 'PoolSize', 'pool_size']) {
      await expect(
        PostgresStore.open({ connectionString: CONNECTION_STRING, [name]: 2 } as never),
      ).rejects.toThrow(`unknown option '${name}'; did you mean 'poolSize'?`);
    }
    await expect(PostgresStore.open({} as never)).rejects.toThrow(TypeError);
    const pool = new pg.Pool({ connectionString: CONNECTION_STRING });
    cleanups.push(() => pool.end());
    await expect(PostgresStore.open({ pool, connectionString: CONNECTION_STRING })).rejects.toThrow(
      TypeError,
    );
    await expect(PostgresStore.open({ pool, table: 'bad"name' })).rejects.toThrow(TypeError);
    await expect(PostgresStore.open({ pool, schema: 'pg_catalog' })).rejects.toThrow(
      new TypeError(
        "schema must not start with pg_, which PostgreSQL reserves, got 'pg_catalog' (a string)",
      ),
    );
    await expect(PostgresStore.open({ pool, table: 'sessile_versions' })).rejects.toThrow(
      new TypeError(
        'table must not be sessile_versions, where the store records its schema versions',
      ),
    );
    await expect(PostgresStore.open({ pool, queryTimeoutMs: -1 })).rejects.toThrow(TypeError);
    await expect(PostgresStore.open({ pool, unlogged: 'yes' } as never)).rejects.toThrow(TypeError);
    // A larger record could be written but never read: the read would end the process.
    await expect(PostgresStore.open({ pool, maxRecordBytes: 268_435_444 })).rejects.toThrow(
      /^maxRecordBytes must be at most 268435443/,
    );
    // Names the option whatever the value, even one with no string form.
    for (const name of ['schema', 'table']) {
      for (const value of [Object.create(null), { toString: () => 'sessions' }, 42]) {
        await expect(PostgresStore.open({ pool, [name]: value } as never)).rejects.toThrow(
          new RegExp(`^${name} must be`),
        );
      }
    }
  });

  it('probe checks options as open does, and its errors name probe', async () => {
    for (const [options, message] of [
      [
        { connectionString: CONNECTION_STRING, poolsize: 2 },
        "PostgresStore.probe(): unknown option 'poolsize'; did you mean 'poolSize'?",
      ],
      [null, 'PostgresStore.probe() needs an options object with pool or connectionString'],
      [
        { connectionString: CONNECTION_STRING, unlogged: 'yes' },
        "unlogged must be a boolean, got 'yes' (a string)",
      ],
    ] as const) {
      await expect(PostgresStore.probe(options as never)).rejects.toThrow(new TypeError(message));
    }
    // open's own errors still name open.
    await expect(
      PostgresStore.open({ connectionString: CONNECTION_STRING, poolsize: 2 } as never),
    ).rejects.toThrow(
      new TypeError("PostgresStore.open(): unknown option 'poolsize'; did you mean 'poolSize'?"),
    );
  });

  it("refuses a poolSize above 100 (PostgreSQL's default max_connections) with a TypeError naming it", async () => {
    for (const poolSize of [101, 1_000_000_000]) {
      const options = { connectionString: CONNECTION_STRING, schema, table: newTable(), poolSize };
      const failure = await PostgresStore.open(options)
        .then((store) => store.close())
        .catch((error: unknown) => error);
      expect(failure, String(poolSize)).toBeInstanceOf(TypeError);
      expect((failure as Error).message).toMatch(/^poolSize must be at most 100\b/);
    }
    const store = await openStore({ poolSize: 100 });
    expect(await store.count()).toBe(0);
  });

  it('refuses a connection string node-postgres cannot read with a TypeError naming the option, not the password', async () => {
    // node-postgres would send the libpq form, password and all, as a database name to a host
    // named `base`.
    for (const connectionString of [
      'postgres://app:s3cret@db.internal:port/sessions',
      'host=127.0.0.1 user=postgres password=s3cret dbname=test',
    ]) {
      const failure = await PostgresStore.open({ connectionString, queryTimeoutMs: 2000 }).catch(
        (error: unknown) => error,
      );
      expect(failure, connectionString).toBeInstanceOf(TypeError);
      expect((failure as Error).message).toMatch(/options\.connectionString/);
      expect((failure as Error).message).not.toMatch(/s3cret/);
    }
  });

  it('refuses a pool that reads results in binary, which node-postgres decodes as UTF-8 text, with a TypeError naming it, before connecting', async () => {
    // node-postgres reads the option, which @types/pg leaves out.
    const pool = new pg.Pool({
      connectionString: CONNECTION_STRING,
      binary: true,
    } as pg.PoolConfig);
    cleanups.push(() => pool.end());
    for (const method of ['open', 'probe'] as const) {
      const failure = await PostgresStore[method]({ pool, schema, table: newTable() }).catch(
        (error: unknown) => error,
      );
      expect(failure, method).toBeInstanceOf(TypeError);
      expect((failure as Error).message).toMatch(/options\.pool reads results in binary/);
    }
    expect(pool.totalCount).toBe(0);
    // node-postgres's global default reaches the store's own pool too.
    pg.defaults.binary = true;
    try {
      const failure = await PostgresStore.open({
        connectionString: CONNECTION_STRING,
        schema,
        table: newTable(),
      }).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(TypeError);
      expect((failure as Error).message).toMatch(/pg\.defaults\.binary/);
    } finally {
      pg.defaults.binary = false;
    }
  });

  it('names the server node-postgres connects to, a host given as a query parameter included', async () => {
    const failure = await PostgresStore.open({
      connectionString: 'postgres://postgres:s3cret@/test?host=127.0.0.1&port=1',
      queryTimeoutMs: 5000,
    }).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'ERR_STORE_IO' });
    expect((failure as Error).message).toContain('PostgreSQL 127.0.0.1:1/test');
    expect((failure as Error).message).not.toMatch(/s3cret/);
  });
});

describe('schema', () => {
  it('creates the sessions table, its expiry index, the lock table and a version record', async () => {
    const store = await openStore({ table: 'made' });
    await store.set(idOf('a'), record('x'));
    expect(await tableNames()).toEqual(
      expect.arrayContaining(['made', 'made_locks', 'sessile_versions']),
    );
    const { rows } = await admin(
      `SELECT version FROM "${schema}".sessile_versions WHERE table_name = 'made'`,
    );
    expect(rows).toEqual([{ version: SCHEMA_VERSION }]);
    const index = await admin(
      `SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'made_expires_at'`,
      [schema],
    );
    expect(index.rows[0]?.indexdef).toMatch(/\(expires_at\)/);
    const persistence = await admin(
      `SELECT c.relname AS name, c.relpersistence AS persistence FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname IN ('made', 'made_locks') ORDER BY 1`,
      [schema],
    );
    // Sessions are logged; leases are not (see the README's Locks).
    expect(persistence.rows).toEqual([
      { name: 'made', persistence: 'p' },
      { name: 'made_locks', persistence: 'u' },
    ]);
    expect(store.capabilities).toMatchObject({ shared: 'cluster', durable: true });
  });

  it('10 processes opening at once create every object exactly once', async () => {
    const target = runSchema('race');
    cleanups.push(() => dropSchema(target));
    const ddl = await logDdl(target);
    expect(await openAtOnce(10, target)).toEqual(Array(10).fill('opened'));
    const rows = await ddl();
    const created = rows.map((row) => `${row.tag} ${row.kind} ${row.identity}`);
    expect(created).toEqual(
      expect.arrayContaining([
        `CREATE SCHEMA schema ${target}`,
        `CREATE TABLE table ${target}.sessile_versions`,
        `CREATE TABLE table ${target}.sessions`,
        `CREATE TABLE table ${target}.sessions_locks`,
        `CREATE INDEX index ${target}.sessions_expires_at`,
        `CREATE INDEX index ${target}.sessions_owner`,
        `CREATE FUNCTION function ${target}.sessions_claim_read(pg_catalog.text[],pg_catalog.text[],double precision[],double precision,pg_catalog.text[])`,
      ]),
    );
    for (const row of rows) expect(row.n, `${row.tag} ${row.identity}`).toBe(1);
    expect(await tableNames(target)).toEqual(['sessile_versions', 'sessions', 'sessions_locks']);
  }, 60_000);

  it('processes opening a version 5 table at once replace its claim-and-read function exactly once', async () => {
    const target = runSchema('upgrade');
    cleanups.push(() => dropSchema(target));
    const made = await PostgresStore.open({ connectionString: CONNECTION_STRING, schema: target });
    const id = idOf('kept');
    await made.set(id, record('kept'));
    await made.close();
    await downgradeToVersionFive(target, 'sessions');
    const ddl = await logDdl(target);
    expect(await openAtOnce(6, target)).toEqual(Array(6).fill('opened'));
    // One replaced it under the advisory lock; the others found it done and changed nothing.
    expect(await ddl()).toEqual([
      {
        tag: 'CREATE FUNCTION',
        kind: 'function',
        identity: `${target}.sessions_claim_read(pg_catalog.text[],pg_catalog.text[],double precision[],double precision,pg_catalog.text[])`,
        n: 1,
      },
    ]);
    const { rows } = await admin(
      `SELECT version FROM "${target}".sessile_versions WHERE table_name = 'sessions'`,
    );
    expect(rows).toEqual([{ version: SCHEMA_VERSION }]);
    expect(await claimRead(target, 'sessions', id, 'first')).toHaveLength(1);
    expect(await claimRead(target, 'sessions', id, 'other')).toEqual([]);
    expect(await claimRead(target, 'sessions', id, 'first')).toEqual([
      { token: 'first', data: 'kept' },
    ]);
  }, 60_000);

  it("refuses a same-named table that is not sessile's and touches nothing in it", async () => {
    const table = newTable();
    // connect-pg-simple's table, with a live session in it.
    await admin(
      `CREATE TABLE "${schema}"."${table}" (sid varchar PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL)`,
    );
    await admin(
      `INSERT INTO "${schema}"."${table}" VALUES ('abc', '{"user":1}', now() + interval '1 day')`,
    );
    const before = await rowsOf(table);
    const tablesBefore = await tableNames();
    const open = PostgresStore.open({ connectionString: CONNECTION_STRING, schema, table });
    expect(await codeOf(open)).toBe('ERR_UNSUPPORTED');
    expect(await rowsOf(table)).toEqual(before);
    expect(await tableNames()).toEqual(tablesBefore);
  });

  it('refuses a name an enum or domain type holds, which probe answers refused too, and opens beside an implicit array type', async () => {
    for (const [name, kind, definition] of [
      [newTable('enum_'), 'TYPE', "AS ENUM ('a')"],
      [newTable('domain_'), 'DOMAIN', 'AS integer'],
    ] as const) {
      for (const taken of [name, `${name}_locks`]) {
        await admin(`CREATE ${kind} "${schema}"."${taken}" ${definition}`);
        const tablesBefore = await tableNames();
        const options = { connectionString: CONNECTION_STRING, schema, table: name };
        expect(await PostgresStore.probe(options)).toMatchObject({ state: 'refused' });
        const error = await PostgresStore.open(options).catch((failure: unknown) => failure);
        expect(error).toMatchObject({ code: 'ERR_UNSUPPORTED' });
        expect((error as Error).message).toContain(`"${schema}"."${taken}"`);
        expect(await tableNames()).toEqual(tablesBefore);
        await admin(`DROP ${kind} "${schema}"."${taken}"`);
      }
    }
    // Another store's table x has the array type _x, which PostgreSQL moves aside for a table _x.
    const table = newTable('arrays');
    await (await openStore({ table })).close();
    await (await openStore({ table: `_${table}` })).close();
  });

  it('refuses a table with sessile-like columns but no version record', async () => {
    const table = newTable();
    await admin(
      `CREATE TABLE "${schema}"."${table}" (id text PRIMARY KEY, data bytea NOT NULL, expires_at double precision NOT NULL)`,
    );
    await admin(`INSERT INTO "${schema}"."${table}" VALUES ('theirs', 'x', 1)`);
    const open = PostgresStore.open({ connectionString: CONNECTION_STRING, schema, table });
    expect(await codeOf(open)).toBe('ERR_UNSUPPORTED');
    expect(await rowsOf(table)).toEqual([{ id: 'theirs', data: Buffer.from('x'), expires_at: 1 }]);
    expect(await tableNames()).not.toContain(`${table}_locks`);
  });

  it('refuses a schema version newer than this package, leaving it as it is', async () => {
    const table = newTable();
    const store = await openStore({ table });
    await store.close();
    await admin(`UPDATE "${schema}".sessile_versions SET version = $1 WHERE table_name = $2`, [
      SCHEMA_VERSION + 1,
      table,
    ]);
    const open = PostgresStore.open({ connectionString: CONNECTION_STRING, schema, table });
    expect(await codeOf(open)).toBe('ERR_UNSUPPORTED');
    const { rows } = await admin(
      `SELECT version FROM "${schema}".sessile_versions WHERE table_name = $1`,
      [table],
    );
    expect(rows).toEqual([{ version: SCHEMA_VERSION + 1 }]);
  });

  it('migrates a version 1 table in place, once, keeping its sessions (without an owner)', async () => {
    const table = newTable();
    const qualifiedTable = `"${schema}"."${table}"`;
    // Exactly what version 1 of this package created.
    await admin(
      `CREATE TABLE IF NOT EXISTS "${schema}".sessile_versions (table_name text PRIMARY KEY, version integer NOT NULL)`,
    );
    await admin(
      `CREATE TABLE ${qualifiedTable} (id text COLLATE "C" PRIMARY KEY, data bytea NOT NULL, expires_at double precision NOT NULL)`,
    );
    await admin(`CREATE INDEX "${table}_expires_at" ON ${qualifiedTable} (expires_at)`);
    await admin(
      `CREATE UNLOGGED TABLE "${schema}"."${table}_locks" (id text COLLATE "C" PRIMARY KEY, token text NOT NULL, expires_at double precision NOT NULL)`,
    );
    await admin(`INSERT INTO "${schema}".sessile_versions VALUES ($1, 1)`, [table]);
    const kept = idOf('kept');
    const expiresAt = Date.now() + HOUR_MS;
    await admin(`INSERT INTO ${qualifiedTable} VALUES ($1, $2, $3)`, [
      kept,
      Buffer.from('from v1'),
      expiresAt,
    ]);

    // Instances starting together: a second ALTER TABLE would fail on the existing column.
    const stores = await Promise.all(
      Array.from({ length: 4 }, () =>
        PostgresStore.open({ connectionString: CONNECTION_STRING, schema, table }),
      ),
    );
    for (const store of stores) cleanups.push(() => store.close());
    const [store] = stores as [PostgresStore];

    const { rows } = await admin(
      `SELECT version FROM "${schema}".sessile_versions WHERE table_name = $1`,
      [table],
    );
    expect(rows).toEqual([{ version: SCHEMA_VERSION }]);
    const read = await store.get(kept);
    expect(read).toEqual({ data: new Uint8Array(Buffer.from('from v1')), expiresAt });
    expect(read).not.toHaveProperty('owner');
    expect(await store.set(kept, { ...record('now owned'), owner: 'user-7' })).toBe(true);
    expect((await store.ownedBy('user-7')).map((owned) => owned.id)).toEqual([kept]);
    const index = await admin(
      `SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = $2`,
      [schema, `${table}_owner`],
    );
    expect(index.rows[0]?.indexdef).toMatch(/\(owner\) WHERE \(owner IS NOT NULL\)/);
  });

  it('migrates a version 2 table by adding its claim function; one it did not create is refused', async () => {
    const versionOf = async (table: string) =>
      (
        await admin(`SELECT version FROM "${schema}".sessile_versions WHERE table_name = $1`, [
          table,
        ])
      ).rows;
    // What version 2 had: no claim function, and lease rows without the waited flag.
    const downgrade = async (table: string) => {
      await admin(`DROP FUNCTION "${schema}"."${table}_claim_read"`);
      await admin(`ALTER TABLE "${schema}"."${table}_locks" DROP COLUMN waited`);
      await admin(`UPDATE "${schema}".sessile_versions SET version = 2 WHERE table_name = $1`, [
        table,
      ]);
    };
    const table = newTable();
    const kept = idOf('kept');
    await (await openStore({ table })).set(kept, record('kept'));
    await downgrade(table);
    const migrated = await openStore({ table });
    expect(await versionOf(table)).toEqual([{ version: SCHEMA_VERSION }]);
    const locked = await migrated.locks.acquireAndGet?.(kept);
    expect(textOf(locked?.record?.data)).toBe('kept');
    await locked?.lock.release();

    const other = newTable();
    await openStore({ table: other });
    await downgrade(other);
    await admin(
      `CREATE FUNCTION "${schema}"."${other}_claim_read"() RETURNS int LANGUAGE sql AS 'SELECT 7'`,
    );
    expect(await codeOf(openStore({ table: other }))).toBe('ERR_UNSUPPORTED');
    expect(await versionOf(other)).toEqual([{ version: 2 }]);
    const { rows } = await admin(`SELECT "${schema}"."${other}_claim_read"() AS n`);
    expect(rows).toEqual([{ n: 7 }]);
  });

  it('unlogged: true creates UNLOGGED tables and declares the store not durable', async () => {
    const store = await openStore({ table: 'fast', unlogged: true });
    const { rows } = await admin<{ name: string; persistence: string }>(
      `SELECT c.relname AS name, c.relpersistence AS persistence FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname IN ('fast', 'fast_locks') ORDER BY 1`,
      [schema],
    );
    expect(rows).toEqual([
      { name: 'fast', persistence: 'u' },
      { name: 'fast_locks', persistence: 'u' },
    ]);
    expect(store.capabilities.durable).toBe(false);
  });

  it("declares durable from the existing sessions table's persistence, not from the option", async () => {
    const fast = newTable();
    const first = await openStore({ table: fast, unlogged: true });
    await first.close();
    const reopened = await openStore({ table: fast });
    expect(reopened.capabilities.durable).toBe(false);
    const logged = newTable();
    const created = await openStore({ table: logged });
    await created.close();
    const unloggedAsked = await openStore({ table: logged, unlogged: true });
    expect(unloggedAsked.capabilities.durable).toBe(true);
    // The option never changes an existing table.
    const { rows } = await admin<{ name: string; persistence: string }>(
      `SELECT c.relname AS name, c.relpersistence AS persistence FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname IN ($2, $3) ORDER BY 1`,
      [schema, fast, logged],
    );
    expect(rows).toEqual(
      [
        { name: fast, persistence: 'u' },
        { name: logged, persistence: 'p' },
      ].sort((a, b) => a.name.localeCompare(b.name)),
    );
  });
});

describe('owners', () => {
  it('keeps the owner in the row: get returns it, touch keeps it, set replaces or clears it', async () => {
    const table = newTable();
    const store = await openStore({ table });
    const id = idOf('owned');
    await store.set(id, { ...record('a'), owner: 'alice' });
    expect((await store.get(id))?.owner).toBe('alice');
    expect(await store.touch(id, Date.now() + 2 * HOUR_MS)).toBe(true);
    expect((await store.get(id))?.owner).toBe('alice');
    await store.set(id, { ...record('b'), owner: 'bob' }, { only: 'present' });
    expect(await rowsOf(table)).toEqual([
      expect.objectContaining({ id, owner: Buffer.from('bob') }),
    ]);
    await store.set(id, record('c'));
    expect(await rowsOf(table)).toEqual([expect.objectContaining({ id, owner: null })]);
    expect(await store.ownedBy('alice')).toEqual([]);
    expect(await store.ownedBy('bob')).toEqual([]);
  });

  it('lists an owner through the partial owner index, even with a generic plan', async () => {
    const table = newTable();
    const store = await openStore({ table });
    const qualifiedTable = `"${schema}"."${table}"`;
    const future = Date.now() + HOUR_MS;
    await admin(
      `INSERT INTO ${qualifiedTable} (id, data, expires_at, owner)
       SELECT 'row-' || i, 'x', $1, CASE WHEN i % 2 = 0 THEN convert_to('user-' || (i % 1000), 'UTF8') END
       FROM generate_series(1, 20000) AS i`,
      [future],
    );
    await admin(`ANALYZE ${qualifiedTable}`);
    const owned = await store.ownedBy('user-42');
    expect(owned.map((entry) => entry.id).sort()).toEqual(
      Array.from({ length: 20 }, (_, i) => `row-${42 + i * 1000}`).sort(),
    );
    expect(owned[0]?.record).toEqual({
      data: new Uint8Array(Buffer.from('x')),
      expiresAt: future,
      owner: 'user-42',
    });
    // Prepared statements switch to a generic plan, where the owner is a parameter.
    const client = new pg.Client({ connectionString: CONNECTION_STRING });
    await client.connect();
    cleanups.push(() => client.end());
    await client.query('SET plan_cache_mode = force_generic_plan');
    await client.query(
      `PREPARE owned(bytea, float8) AS
       SELECT id FROM ${qualifiedTable} WHERE owner = $1 AND expires_at > $2`,
    );
    const { rows } = await client.query<{ 'QUERY PLAN': string }>(
      `EXPLAIN EXECUTE owned('user-42'::bytea, 0)`,
    );
    expect(rows.map((row) => row['QUERY PLAN']).join('\n')).toContain(`${table}_owner`);
  });
});

/** An app pool of `max` connections that counts the statements sent through it. */
function countingPool(max: number): { pool: pg.Pool; statements: () => number } {
  const counting = countStatements(max);
  cleanups.push(() => counting.pool.end());
  return counting;
}

describe('batching', () => {
  it('sends concurrent creates and reads as a few statements, each call with its own answer', async () => {
    const { pool, statements } = countingPool(2);
    const store = await PostgresStore.open({ pool, schema, table: newTable() });
    cleanups.push(() => store.close());
    const taken = idOf('taken');
    await store.set(taken, record('first'));
    const ids = Array.from({ length: 100 }, (_, i) => idOf(`c${i}`));
    const before = statements();
    const created = await Promise.all([
      ...ids.map((id) => store.set(id, record(id), { only: 'absent' })),
      store.set(taken, record('second'), { only: 'absent' }),
    ]);
    expect(created).toEqual([...ids.map(() => true), false]);
    const missing = idOf('missing');
    const read = await Promise.all([...ids, missing, taken].map((id) => store.get(id)));
    expect(read.map((found) => textOf(found?.data))).toEqual([...ids, undefined, 'first']);
    const overwritten = await Promise.all(ids.map((id) => store.set(id, record(`new ${id}`))));
    expect(overwritten.every((wrote) => wrote)).toBe(true);
    const updated = await Promise.all(
      [...ids.slice(0, 50), missing].map((id) =>
        store.set(id, record(`new ${id}`), { only: 'present' }),
      ),
    );
    expect(updated).toEqual([...ids.slice(0, 50).map(() => true), false]);
    const later = Date.now() + 2 * HOUR_MS;
    const touched = await Promise.all(
      [...ids.slice(50), missing].map((id) => store.touch(id, later)),
    );
    expect(touched).toEqual([...ids.slice(50).map(() => true), false]);
    expect((await store.get(ids[99] as string))?.expiresAt).toBe(later);
    expect(textOf((await store.get(ids[7] as string))?.data)).toBe(`new ${ids[7]}`);
    // 406 calls; alone, each would be a statement.
    expect(statements() - before).toBeLessThan(80);
  });

  it("a corrupt row (expires_at set to 'NaN' by hand) fails only its own read among reads sent together", async () => {
    const { pool } = countingPool(2);
    const table = newTable();
    const store = await PostgresStore.open({ pool, schema, table });
    cleanups.push(() => store.close());
    const ids = Array.from({ length: 40 }, (_, i) => idOf(`r${i}`));
    await Promise.all(ids.map((id) => store.set(id, record(id))));
    const corrupt = ids[7] as string;
    await admin(`UPDATE "${schema}"."${table}" SET expires_at = 'NaN' WHERE id = $1`, [corrupt]);
    const read = await Promise.allSettled(ids.map((id) => store.get(id)));
    expect(
      read.map((each) =>
        each.status === 'fulfilled'
          ? textOf(each.value?.data)
          : (each.reason as { code?: string }).code,
      ),
    ).toEqual(ids.map((id) => (id === corrupt ? 'ERR_CORRUPT_RECORD' : id)));
  });

  it('lock claims and releases share statements too, and a key keeps one holder at a time', async () => {
    const { pool, statements } = countingPool(2);
    const store = await PostgresStore.open({ pool, schema, table: newTable() });
    cleanups.push(() => store.close());
    const keys = Array.from({ length: 60 }, (_, i) => idOf(`k${i}`));
    const before = statements();
    const locks = await Promise.all(
      keys.map((key) => store.locks.acquire(key, { leaseMs: 60_000 })),
    );
    await Promise.all(locks.map((lock) => lock.release()));
    // 120 calls; alone, each would be a statement.
    expect(statements() - before).toBeLessThan(40);
    const again = await Promise.all(keys.map((key) => store.locks.acquire(key, { waitMs: 0 })));
    await Promise.all(again.map((lock) => lock.release()));

    const shared = idOf('shared');
    let inside = 0;
    let most = 0;
    await Promise.all(
      Array.from({ length: 12 }, async () => {
        const lock = await store.locks.acquire(shared, { waitMs: 60_000, leaseMs: 60_000 });
        most = Math.max(most, ++inside);
        await new Promise((resolve) => setImmediate(resolve));
        inside--;
        await lock.release();
      }),
    );
    expect(most).toBe(1);
  }, 90_000);

  it('concurrent creates of one id: exactly one wins, even when they queue together', async () => {
    const { pool } = countingPool(1);
    const store = await PostgresStore.open({ pool, schema, table: newTable() });
    cleanups.push(() => store.close());
    const id = idOf('race');
    const others = Array.from({ length: 20 }, (_, i) =>
      store.set(idOf(`o${i}`), record('x'), { only: 'absent' }),
    );
    const racing = Array.from({ length: 20 }, (_, i) =>
      store.set(id, record(`w${i}`), { only: 'absent' }),
    );
    await Promise.all(others);
    expect((await Promise.all(racing)).filter(Boolean)).toHaveLength(1);
  });

  it('two stores upserting, updating and touching the same rows in batches, in opposite orders, never deadlock', async () => {
    const table = newTable();
    const stores = await Promise.all(
      [0, 1].map(() => PostgresStore.open({ pool: countingPool(2).pool, schema, table })),
    );
    for (const store of stores) cleanups.push(() => store.close());
    const ids = Array.from({ length: 200 }, (_, i) => idOf(`d${i}`));
    const rounds = Array.from({ length: 6 }, (_, round) =>
      stores.map((store, s) => {
        const order = s === 0 ? ids : [...ids].reverse();
        const write = [
          (id: string) => store.set(id, record(`${round}`)),
          (id: string) => store.set(id, record(`${round}`), { only: 'present' }),
          (id: string) => store.touch(id, Date.now() + HOUR_MS),
        ][round % 3] as (id: string) => Promise<boolean>;
        return Promise.all(order.map(write));
      }),
    );
    for (const round of rounds) await Promise.all(round);
    expect(await (stores[0] as PostgresStore).count()).toBe(200);
  }, 60_000);

  it('clear() empties a table bigger than one statement could delete within queryTimeoutMs', async () => {
    const table = newTable();
    const store = await openStore({ table, queryTimeoutMs: 300 });
    // 400k rows: one DELETE of them all takes about a second here, a page of them a few ms.
    await admin(
      `INSERT INTO "${schema}"."${table}" (id, data, expires_at)
       SELECT 'bulk-' || lpad(n::text, 12, '0'), '\\x00', $1 FROM generate_series(1, 400000) AS n`,
      [Date.now() + HOUR_MS],
    );
    await store.clear();
    expect(await admin(`SELECT count(*)::int AS n FROM "${schema}"."${table}"`)).toMatchObject({
      rows: [{ n: 0 }],
    });
  }, 60_000);

  it("clear() on one store never deadlocks with another store's batch on the same rows", async () => {
    const table = newTable();
    const clearing = await openStore({ table });
    const writing = await openStore({ table, poolSize: 1 });
    const [a, b, c] = ['a', 'b', 'c'].map((prefix) => `${prefix}-${idOf('row')}`) as [
      string,
      string,
      string,
    ];
    // On disk c, b, a: a plain DELETE takes them in that order, a batch in id order.
    for (const id of [c, b, a]) await writing.set(id, record('before'));
    const blocker = new pg.Client({ connectionString: CONNECTION_STRING });
    await blocker.connect();
    cleanups.push(() => blocker.end());
    await blocker.query('BEGIN');
    await blocker.query(`SELECT 1 FROM "${schema}"."${table}" WHERE id = $1 FOR UPDATE`, [b]);
    const waiting = async (count: number) => {
      for (;;) {
        const { rows } = await admin<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE wait_event_type = 'Lock' AND query LIKE $1`,
          [`%"${schema}"."${table}"%`],
        );
        if ((rows[0]?.n ?? 0) >= count) return;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    // The pool's one connection is busy with the first set, so the next three queue as one batch.
    const first = writing.set(idOf('first'), record('first'));
    const batch = Promise.all([a, b, c].map((id) => writing.set(id, record('after'))));
    await first;
    await waiting(1);
    const cleared = clearing.clear();
    await waiting(2);
    await blocker.query('ROLLBACK');
    expect(
      await Promise.all([
        batch.then(() => 'written', String),
        cleared.then(() => 'cleared', String),
      ]),
    ).toEqual(['written', 'cleared']);
    expect(await clearing.count()).toBe(0);
  });

  it('records under maxRecordBytes are all written when queued together, however large', async () => {
    const maxRecordBytes = 4 * 1024 * 1024;
    // 300 MB through two connections: on a loaded machine the last batch may queue past the
    // default 10 s, which is not what this test is about.
    const store = await openStore({ poolSize: 2, maxRecordBytes, queryTimeoutMs: 50_000 });
    const data = new Uint8Array(3 * 1024 * 1024).fill(65);
    const ids = Array.from({ length: 100 }, (_, i) => idOf(`large${i}`));
    const expiresAt = Date.now() + HOUR_MS;
    const written = await Promise.all(ids.map((id) => store.set(id, { data, expiresAt })));
    expect(written.every((wrote) => wrote)).toBe(true);
    expect(await store.count()).toBe(100);
    expect((await store.get(ids[99] as string))?.data.byteLength).toBe(data.byteLength);
  }, 60_000);
});

describe('order of calls on one id', () => {
  // With a pool of one, the calls made after this read queue behind it.
  const busyRead = (store: PostgresStore) => store.get(idOf('busy'));

  it('a delete issued after a set of the same id deletes it, while the pool is busy', async () => {
    const store = await openStore({ poolSize: 1 });
    const id = idOf('logout');
    await store.set(id, record('signed in'));
    await Promise.all([busyRead(store), store.set(id, record('saved late')), store.delete(id)]);
    expect(await store.get(id)).toBeUndefined();
  });

  it('a delete issued after a set of the same id deletes it, with every connection reading', async () => {
    const store = await openStore({ poolSize: 10 });
    const id = idOf('logout');
    await store.set(id, record('signed in'));
    const busy = Array.from({ length: 10 }, (_, i) => store.get(idOf(`busy${i}`)));
    await Promise.all([...busy, store.set(id, record('saved late')), store.delete(id)]);
    expect(await store.get(id)).toBeUndefined();
  });

  it('a fenced delete issued after a set of the same id deletes it, while the pool is busy', async () => {
    const store = await openStore({ poolSize: 1 });
    const id = idOf('logout');
    await store.set(id, record('signed in'));
    const lock = await store.locks.acquire(id, { leaseMs: 60_000 });
    await Promise.all([
      busyRead(store),
      store.set(id, record('saved late')),
      store.delete(id, { lock }),
    ]);
    await lock.release();
    expect(await store.get(id)).toBeUndefined();
  });

  it('a set issued after a touch of the same id keeps its own expiry, while the pool is busy', async () => {
    const store = await openStore({ poolSize: 1 });
    const id = idOf('touched');
    await store.set(id, record('first'));
    const touchedTo = Date.now() + 2 * HOUR_MS;
    const savedTo = Date.now() + 3 * HOUR_MS;
    await Promise.all([
      busyRead(store),
      store.set(idOf('other'), record('other')),
      store.touch(id, touchedTo),
      store.set(id, record('saved', savedTo)),
    ]);
    expect((await store.get(id))?.expiresAt).toBe(savedTo);
  });

  it('a clear issued after a set removes that session too, while the pool is busy', async () => {
    const store = await openStore({ poolSize: 1 });
    const id = idOf('cleared');
    await Promise.all([busyRead(store), store.set(id, record('saved late')), store.clear()]);
    expect(await store.get(id)).toBeUndefined();
    expect(await store.count()).toBe(0);
  });

  it('a read issued after a write of the same id sees it, with every connection busy', async () => {
    const store = await openStore({ poolSize: 2 });
    const id = idOf('read-own');
    await store.set(id, record('v0'));
    const calls: Promise<unknown>[] = [];
    for (let i = 1; i <= 20; i++) {
      calls.push(store.get(idOf(`busy${i}`)), store.set(id, record(`v${i}`)), store.get(id));
    }
    const results = await Promise.all(calls);
    const reads = results.filter((_, i) => i % 3 === 2) as ({ data: Uint8Array } | undefined)[];
    expect(reads.map((found) => textOf(found?.data))).toEqual(
      Array.from({ length: 20 }, (_, i) => `v${i + 1}`),
    );
  });
});

describe('operations', () => {
  it("a row whose expires_at was set to 'NaN' by hand is a corrupt record, not one that expires at NaN", async () => {
    const table = newTable();
    const store = await openStore({ table });
    const [good, bad] = [idOf('good'), idOf('nan')];
    await store.set(good, { ...record('good'), owner: 'alice' });
    await store.set(bad, { ...record('bad'), owner: 'alice' });
    await admin(`UPDATE "${schema}"."${table}" SET expires_at = 'NaN' WHERE id = $1`, [bad]);
    expect(await codeOf(store.get(bad))).toBe('ERR_CORRUPT_RECORD');
    expect(textOf((await store.get(good))?.data)).toBe('good');
    const owned = await store.ownedBy('alice');
    expect(owned.map((session) => session.id)).toEqual([good]);
    expect(await store.count()).toBe(1);
    const ids: string[] = [];
    for await (const id of store.ids()) ids.push(id);
    expect(ids).toEqual([good]);
    expect(await store.touch(bad, Date.now() + HOUR_MS)).toBe(false);
    expect(await store.set(bad, record('late'), { only: 'present' })).toBe(false);
    expect(await store.sweep({})).toEqual({ removed: 1, scanned: 1, done: true });
    expect((await rowsOf(table)).map((row) => (row as { id: string }).id)).toEqual([good]);
    const taken = idOf('nan');
    await store.set(taken, record('old'));
    await admin(`UPDATE "${schema}"."${table}" SET expires_at = 'NaN' WHERE id = $1`, [taken]);
    expect(await store.set(taken, record('new'), { only: 'absent' })).toBe(true);
    expect(textOf((await store.get(taken))?.data)).toBe('new');
    await admin(`UPDATE "${schema}"."${table}" SET expires_at = 'NaN' WHERE id = $1`, [taken]);
    expect(await store.delete(taken)).toBe(false);
  });

  it('ids() leaves out a row inserted by hand under an id no session can have', async () => {
    const table = newTable();
    const store = await openStore({ table });
    const good = idOf('good');
    await store.set(good, record('good'));
    await admin(`INSERT INTO "${schema}"."${table}" VALUES ('not a session id!', 'x', $1)`, [
      Date.now() + HOUR_MS,
    ]);
    const ids: string[] = [];
    for await (const id of store.ids()) ids.push(id);
    expect(ids).toEqual([good]);
  });

  it('count() counts what ids() lists: no row under an id no session can have, no expired row', async () => {
    const table = newTable();
    const store = await openStore({ table });
    const good = idOf('good');
    await store.set(good, record('good'));
    const later = Date.now() + HOUR_MS;
    // One character outside base64url, one too short, one too long: core's isSessionId refuses each.
    for (const id of ['not a session id!', 'a'.repeat(15), 'a'.repeat(129)]) {
      await admin(`INSERT INTO "${schema}"."${table}" VALUES ($1, 'x', $2)`, [id, later]);
    }
    await admin(`INSERT INTO "${schema}"."${table}" VALUES ($1, 'x', $2)`, [
      idOf('expired'),
      Date.now() - HOUR_MS,
    ]);
    const ids: string[] = [];
    for await (const id of store.ids()) ids.push(id);
    expect(ids).toEqual([good]);
    expect(await store.count()).toBe(1);
  });

  it("a row whose expires_at was set to 'Infinity' by hand is corrupt too: no record expires then", async () => {
    const table = newTable();
    const store = await openStore({ table });
    const [good, bad] = [idOf('good'), idOf('inf')];
    await store.set(good, record('good'));
    await store.set(bad, record('bad'));
    await admin(`UPDATE "${schema}"."${table}" SET expires_at = 'Infinity' WHERE id = $1`, [bad]);
    expect(await codeOf(store.get(bad))).toBe('ERR_CORRUPT_RECORD');
    expect(await store.count()).toBe(1);
    expect(await store.touch(bad, Date.now() + HOUR_MS)).toBe(false);
    expect(await store.sweep({})).toEqual({ removed: 1, scanned: 1, done: true });
    expect((await rowsOf(table)).map((row) => (row as { id: string }).id)).toEqual([good]);
  });

  it('reads back every expiresAt exactly, even where extra_float_digits is 0 (PostgreSQL 11)', async () => {
    // As text, a float8 then has 15 significant digits: 1796508525285.123 read as …285.12.
    const url = new URL(CONNECTION_STRING);
    url.searchParams.set('options', '-c extra_float_digits=0');
    const store = await openStore({ connectionString: url.href, poolSize: 1 });
    const expiresAt = Date.now() + HOUR_MS + 0.123;
    const ids = Array.from({ length: 5 }, (_, i) => idOf(`exact${i}`));
    for (const id of ids) await store.set(id, { ...record(id, expiresAt), owner: 'exact' });
    expect((await store.get(ids[0] as string))?.expiresAt).toBe(expiresAt);
    // With the pool's one connection busy, the rest are read as one batch.
    const batch = await Promise.all(ids.map((id) => store.get(id)));
    expect(batch.map((found) => found?.expiresAt)).toEqual(ids.map(() => expiresAt));
    const owned = await store.ownedBy('exact');
    expect(owned.map((session) => session.record.expiresAt)).toEqual(ids.map(() => expiresAt));
    const { lock, record: locked } = await (store.locks.acquireAndGet?.(ids[1] as string) ??
      Promise.reject(new Error('PostgresStore offers acquireAndGet')));
    expect(locked?.expiresAt).toBe(expiresAt);
    await lock.release();
  });

  it('sweeps, owner lists, reads and id pages read indexes even with generic plans', async () => {
    const table = newTable();
    await openStore({ table });
    const now = Date.now();
    await admin(
      `INSERT INTO "${schema}"."${table}" (id, data, expires_at, owner)
       SELECT 'row-' || i, 'x', CASE WHEN i % 2 = 0 THEN $1::float8 - 1000 ELSE $1::float8 + 3600000 END,
              convert_to('user-' || (i % 1000), 'UTF8')
       FROM generate_series(1, 20000) AS i`,
      [now],
    );
    await admin(`ANALYZE "${schema}"."${table}"`);
    const sql = buildStatements(schemaNames(schema, table), 'plan');
    const calls = [
      [sql.sweepBatch.text, `${now}, 500`],
      [sql.anyExpired.text, `${now}`],
      [sql.ownedBy.text, `'\\x75736572', ${now}`],
      [sql.get.text, `'row-1', ${now}`],
      [sql.many.get.text, `'{row-1,row-3}', ${now}`],
      [sql.many.touch.text, `'{row-1,row-3}', '{1,2}', ${now}`],
      [sql.many.updateIfLive.text, `'{row-1,row-3}', '{x,y}', '{1,2}', '{NULL,NULL}', ${now}`],
      [sql.idsPage.text, `'', ${now}, 500`],
    ];
    const client = new pg.Client({ connectionString: CONNECTION_STRING });
    await client.connect();
    cleanups.push(() => client.end());
    // Named statements switch to a generic plan, where the planner cannot see the values.
    await client.query('SET plan_cache_mode = force_generic_plan');
    for (const [i, [text, values]] of calls.entries()) {
      await client.query(`PREPARE plan${i} AS ${text}`);
      const { rows } = await client.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN EXECUTE plan${i}(${values})`,
      );
      const plan = rows.map((row) => row['QUERY PLAN']).join('\n');
      expect(plan, text).not.toMatch(/Seq Scan/);
    }
  });

  it('count() reads no id: the live rows of the expiry index less the index of invalid ids', async () => {
    const table = newTable();
    await openStore({ table });
    const now = Date.now();
    await admin(
      `INSERT INTO "${schema}"."${table}" (id, data, expires_at)
       SELECT 'session-id-' || lpad(i::text, 8, '0'), 'x',
              CASE WHEN i % 2 = 0 THEN $1::float8 - 1000 ELSE $1::float8 + 3600000 END
       FROM generate_series(1, 20000) AS i`,
      [now],
    );
    // As autovacuum leaves a table: index-only scans need the visibility map.
    await admin(`VACUUM ANALYZE "${schema}"."${table}"`);
    const sql = buildStatements(schemaNames(schema, table), 'plan');
    const client = new pg.Client({ connectionString: CONNECTION_STRING });
    await client.connect();
    cleanups.push(() => client.end());
    await client.query('SET plan_cache_mode = force_generic_plan');
    await client.query(`PREPARE counting AS ${sql.count.text}`);
    const { rows } = await client.query<{ 'QUERY PLAN': string }>(
      `EXPLAIN EXECUTE counting(${now})`,
    );
    const plan = rows.map((row) => row['QUERY PLAN']).join('\n');
    expect(plan).toContain(`Index Only Scan using ${table}_expires_at`);
    expect(plan).toContain(`${table}_bad_ids`);
    expect(plan).not.toMatch(/Seq Scan/);
    const store = await openStore({ table });
    expect(await store.count()).toBe(10_000);
  });

  it('open makes the index of invalid ids in a table made without it, and count() then leaves such rows out', async () => {
    const table = newTable();
    const good = idOf('good');
    await (await openStore({ table })).set(good, record('good'));
    await admin(`DROP INDEX "${schema}"."${table}_bad_ids"`);
    await admin(`INSERT INTO "${schema}"."${table}" VALUES ('short', 'x', $1)`, [
      Date.now() + HOUR_MS,
    ]);
    const store = await openStore({ table });
    const { rows } = await admin(
      `SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = $2`,
      [schema, `${table}_bad_ids`],
    );
    expect(rows[0]?.indexdef).toMatch(/WHERE/);
    expect(await store.count()).toBe(1);
  });

  it('a sweep passes rows another transaction holds instead of waiting for them', async () => {
    const table = newTable();
    const store = await openStore({ table, queryTimeoutMs: 60_000 });
    const start = Date.now();
    const held = idOf('held');
    await store.set(held, record('held', start + HOUR_MS));
    for (let i = 0; i < 20; i++) await store.set(idOf(`gone${i}`), record('x', start + HOUR_MS));
    const blocker = new pg.Client({ connectionString: CONNECTION_STRING });
    await blocker.connect();
    cleanups.push(() => blocker.end());
    await blocker.query('BEGIN');
    await blocker.query(`SELECT 1 FROM "${schema}"."${table}" WHERE id = $1 FOR UPDATE`, [held]);
    try {
      const result = await store.sweep({ now: start + 2 * HOUR_MS });
      // The row it passed is still expired and stored: the sweep is not done.
      expect([result.removed, result.done]).toEqual([20, false]);
    } finally {
      await blocker.query('ROLLBACK');
    }
    expect(await store.sweep({ now: start + 2 * HOUR_MS })).toMatchObject({
      removed: 1,
      done: true,
    });
  });

  it('two stores sweeping the same table at once remove each expired row once', async () => {
    const table = newTable();
    const first = await openStore({ table });
    const second = await openStore({ table });
    const start = Date.now();
    const rows = Array.from({ length: 3000 }, (_, i) => i);
    await Promise.all(
      Array.from({ length: 10 }, async (_, worker) => {
        for (const i of rows.filter((row) => row % 10 === worker)) {
          await first.set(idOf(`s${i}`), record('x', start + (i < 2000 ? HOUR_MS : 10 * HOUR_MS)));
        }
      }),
    );
    const sweepAll = async (store: PostgresStore) => {
      let removed = 0;
      for (;;) {
        const result = await store.sweep({ now: start + 2 * HOUR_MS, limit: 200 });
        removed += result.removed;
        if (result.done) return removed;
      }
    };
    const [a, b] = await Promise.all([sweepAll(first), sweepAll(second)]);
    expect(a + b).toBe(2000);
    expect(await first.count()).toBe(1000);
  }, 60_000);

  it('close() stops an unbounded sweep before its next batch, which resolves done: false, and the next store sweeps the rest', async () => {
    const table = newTable();
    const store = await PostgresStore.open({ connectionString: CONNECTION_STRING, schema, table });
    const expired = 5_000;
    await admin(
      `INSERT INTO "${schema}"."${table}" (id, data, expires_at)
       SELECT 'expired-session-' || lpad(n::text, 8, '0'), '\\x00', 1000 + n FROM generate_series(1, $1) AS n`,
      [expired],
    );
    const sweeping = store.sweep({ limit: Number.POSITIVE_INFINITY, budgetMs: 600_000 });
    await store.close();
    const stopped = await sweeping;
    expect(stopped.done).toBe(false);
    expect(stopped.removed).toBeLessThan(expired);
    const again = await openStore({ table });
    const rest = await again.sweep({ limit: Number.POSITIVE_INFINITY, budgetMs: 600_000 });
    expect(rest).toMatchObject({ removed: expired - stopped.removed, done: true });
  });

  it("takes the app's pool, holds no connection while a lock is held, and leaves the pool open", async () => {
    const pool = new pg.Pool({ connectionString: CONNECTION_STRING, max: 1 });
    pool.on('error', () => {});
    cleanups.push(() => pool.end());
    const store = await PostgresStore.open({
      pool,
      schema,
      table: newTable(),
      queryTimeoutMs: 5000,
    });
    const id = idOf('pinned');
    const lock = await store.locks.acquire(id, { leaseMs: 60_000 });
    // With one connection in the pool, these would time out if the lock kept it checked out.
    expect(await store.set(id, record('one'), { lock })).toBe(true);
    expect(textOf((await store.get(id))?.data)).toBe('one');
    const other = await store.locks.acquire(idOf('other'), { leaseMs: 60_000 });
    await other.release();
    await lock.release();
    await store.close();
    expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });

  it("an open() that gave up waiting for the app's pool gives the connection back when it comes", async () => {
    const pool = new pg.Pool({ connectionString: CONNECTION_STRING, max: 1 });
    pool.on('error', () => {});
    cleanups.push(() => pool.end());
    const busy = await pool.connect();
    const opening = PostgresStore.open({ pool, schema, table: newTable(), queryTimeoutMs: 200 });
    expect(await codeOf(opening)).toBe('ERR_STORE_IO');
    busy.release();
    // The abandoned checkout takes the freed connection, and must release it at once.
    const answer = await Promise.race([
      pool.query('SELECT 1 AS one').then((result) => result.rows),
      new Promise((resolve) => setTimeout(() => resolve('the connection leaked'), 5000)),
    ]);
    expect(answer).toEqual([{ one: 1 }]);
    expect(pool.totalCount - pool.idleCount).toBe(0);
  });
});

describe("the app's pool", () => {
  it("a call that gave up waiting for a connection is never sent, so it cannot land after another host's delete", async () => {
    const pool = new pg.Pool({ connectionString: CONNECTION_STRING, max: 1 });
    pool.on('error', () => {});
    cleanups.push(() => pool.end());
    const table = newTable();
    const store = await openStore({ pool, table, queryTimeoutMs: 300 });
    const otherHost = await openStore({ table });
    const id = idOf('signed-out');
    await store.set(id, record('signed in'));
    // The app's own work holds the pool's one connection for longer than queryTimeoutMs.
    const busy = await pool.connect();
    expect(await codeOf(store.set(id, record('stale')))).toBe('ERR_STORE_IO');
    // The user signs out through another host.
    expect(await otherHost.delete(id)).toBe(true);
    busy.release();
    // The pool serves its queue in order: once this answers, every call queued before it ran.
    await pool.query('SELECT 1');
    expect(await otherHost.get(id)).toBeUndefined();
    expect(await store.set(id, record('again'), { only: 'present' })).toBe(false);
  });

  it("reads every record whatever type parsers the app's pool has, and whatever bytea_output its role uses", async () => {
    const url = new URL(CONNECTION_STRING);
    url.searchParams.set('options', '-c bytea_output=escape');
    // An app's parsers: each column as the server's text, as some apps want numbers or bytes.
    const types = { getTypeParser: () => (text: string) => text } as pg.CustomTypesConfig;
    for (const connectionString of [CONNECTION_STRING, url.href]) {
      const pool = new pg.Pool({ connectionString, types });
      pool.on('error', () => {});
      cleanups.push(() => pool.end());
      const table = newTable();
      await (await openStore({ pool, table })).close();
      const store = await openStore({ pool, table });
      const id = idOf('typed');
      const data = Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 7) % 256));
      const expiresAt = Date.now() + HOUR_MS + 0.25;
      await store.set(id, { data, expiresAt, owner: 'ü\u0000\\x' });
      const expected = { data: new Uint8Array(data), expiresAt, owner: 'ü\u0000\\x' };
      expect(await store.get(id)).toEqual(expected);
      expect(await store.count()).toBe(1);
      expect(await store.ownedBy('ü\u0000\\x')).toEqual([{ id, record: expected }]);
      const { lock, record: read } = await (store.locks.acquireAndGet?.(id) ??
        Promise.reject(new Error('PostgresStore offers acquireAndGet')));
      expect(read).toEqual(expected);
      expect(await store.set(id, { ...expected, expiresAt: 1 }, { lock, release: true })).toBe(
        true,
      );
      expect(await store.sweep({ limit: 10 })).toMatchObject({ removed: 1, done: true });
    }
  });

  it('writes sent together keep a session without an owner ownerless where the server reads NULL in an array as text (array_nulls = off)', async () => {
    const url = new URL(CONNECTION_STRING);
    url.searchParams.set('options', '-c array_nulls=off');
    // One connection, so the calls made while it is busy go out together.
    const pool = new pg.Pool({ connectionString: url.href, max: 1 });
    pool.on('error', () => {});
    cleanups.push(() => pool.end());
    const store = await openStore({ pool });
    const ids = Array.from({ length: 20 }, (_, i) => idOf(`anonymous${i}`));
    const giveToAlice = () =>
      Promise.all(ids.map((id) => store.set(id, { ...record('owned'), owner: 'alice' })));
    const expectOwnerless = async () => {
      expect(await store.ownedBy('NULL')).toEqual([]);
      expect(await store.ownedBy('alice')).toEqual([]);
      for (const id of ids) expect((await store.get(id))?.owner).toBeUndefined();
    };
    await Promise.all(ids.map((id) => store.set(id, record('created'), { only: 'absent' })));
    await expectOwnerless();
    await giveToAlice();
    await Promise.all(ids.map((id) => store.set(id, record('saved'))));
    await expectOwnerless();
    await giveToAlice();
    await Promise.all(ids.map((id) => store.set(id, record('saved'), { only: 'present' })));
    await expectOwnerless();
    await giveToAlice();
    const locks = await Promise.all(ids.map((id) => store.locks.acquire(id)));
    await Promise.all(
      locks.map((lock, i) =>
        store.set(ids[i] as string, record('released'), { lock, only: 'present', release: true }),
      ),
    );
    await expectOwnerless();
  });

  it("the LISTEN connection signs in with the pool's password, as its connections do", async () => {
    const gate = await passwordGate('s3cret');
    cleanups.push(() => gate.close());
    const server = new URL(CONNECTION_STRING);
    const applicationName = `gate-${randomBytes(4).toString('hex')}`;
    const pool = new pg.Pool({
      host: '127.0.0.1',
      port: gate.port,
      user: decodeURIComponent(server.username),
      database: server.pathname.slice(1),
      password: 's3cret',
      application_name: applicationName,
    });
    pool.on('error', () => {});
    cleanups.push(() => pool.end());
    const table = newTable();
    const store = await openStore({ pool, table });
    const otherHost = await openStore({ table });
    const id = idOf('waited');
    const held = await otherHost.locks.acquire(id, { leaseMs: 60_000 });
    const waiting = store.locks.acquire(id, { waitMs: 30_000 });
    // Awaited below; a failed expectation first must not leave its rejection unhandled.
    waiting.catch(() => {});
    // The waiter opens its LISTEN connection: it either signs in and listens, or is turned away.
    for (;;) {
      const { rows } = await admin(
        `SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN %'`,
        [applicationName],
      );
      if (rows.length > 0 || gate.refused() > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(gate.refused()).toBe(0);
    await held.release();
    await (await waiting).release();
  });
});

describe('transactions that default to repeatable read', () => {
  /** The server's URL with every transaction of its connections at REPEATABLE READ by default, as a role or database may set. */
  function repeatableReadUrl(): string {
    const url = new URL(CONNECTION_STRING);
    url.searchParams.set('options', '-c default_transaction_isolation=repeatable\\ read');
    return url.href;
  }

  /** Waits until `count` backends whose statement is like `pattern` wait for a lock. */
  async function waitingBackends(count: number, pattern = `%"${schema}".%`): Promise<void> {
    for (;;) {
      const { rows } = await admin<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
         WHERE wait_event_type = 'Lock' AND query LIKE $1`,
        [pattern],
      );
      if ((rows[0]?.n ?? 0) >= count) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** A connection of its own, in a transaction: `ROLLBACK` on it ends whatever it holds. */
  async function blocker(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: CONNECTION_STRING });
    await client.connect();
    cleanups.push(() => client.end());
    await client.query('BEGIN');
    return client;
  }

  it('two instances that waited for the migration lock open the schema the first one made', async () => {
    const table = newTable();
    const holder = await blocker();
    await holder.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`sessile schema ${schema}`]);
    // Both find the schema incomplete, then queue for the lock: the second to get it must see
    // the tables the first made while it waited.
    const opening = [0, 1].map(() =>
      PostgresStore.open({ connectionString: repeatableReadUrl(), schema, table }).then(
        (store) => {
          cleanups.push(() => store.close());
          return 'opened';
        },
        (error: unknown) => String(error),
      ),
    );
    await waitingBackends(2, '%pg_advisory_xact_lock%');
    await holder.query('ROLLBACK');
    expect(await Promise.all(opening)).toEqual(['opened', 'opened']);
  });

  it("a lock's read sees the write of the release it waited for", async () => {
    const table = newTable();
    const holding = await openStore({ connectionString: repeatableReadUrl(), table });
    const waiting = await openStore({ connectionString: repeatableReadUrl(), table });
    const id = idOf('fresh');
    await holding.set(id, record('first'));
    const lock = await holding.locks.acquire(id, { leaseMs: 60_000 });
    const rowLock = await blocker();
    await rowLock.query(`SELECT 1 FROM "${schema}"."${table}" WHERE id = $1 FOR UPDATE`, [id]);
    // The releasing write deletes the lease row, then waits for the session row.
    const writing = holding.set(id, record('second'), { lock, release: true, only: 'present' });
    await waitingBackends(1);
    // The claim starts now, and waits for that write to commit before it takes the lease.
    const claiming = waiting.locks.acquireAndGet?.(id, { waitMs: 30_000, leaseMs: 60_000 });
    claiming?.catch(() => {});
    await waitingBackends(2);
    await rowLock.query('ROLLBACK');
    expect(await writing).toBe(true);
    const { lock: next, record: read } = await (claiming ??
      Promise.reject(new Error('PostgresStore offers acquireAndGet')));
    expect(textOf(read?.data)).toBe('second');
    await next.release();
  });

  it("refuses an app's pool whose transactions default to repeatable read, creating nothing", async () => {
    const pool = new pg.Pool({ connectionString: repeatableReadUrl() });
    pool.on('error', () => {});
    cleanups.push(() => pool.end());
    const table = newTable();
    const opening = PostgresStore.open({ pool, schema, table });
    expect(await codeOf(opening)).toBe('ERR_UNSUPPORTED');
    await expect(opening).rejects.toThrow(/default_transaction_isolation/);
    expect(await tableNames()).not.toContain(table);
  });

  it("probe answers refused for such an app's pool, as open rejects it, and absent for a connectionString on the same server, which open creates", async () => {
    const pool = new pg.Pool({ connectionString: repeatableReadUrl() });
    pool.on('error', () => {});
    cleanups.push(() => pool.end());
    const table = newTable();
    const probe = await PostgresStore.probe({ pool, schema, table });
    expect(probe).toMatchObject({ state: 'refused' });
    if (probe.state === 'refused') {
      expect(probe.reason).toMatch(/default_transaction_isolation/);
      expect(probe.cause).toMatchObject({ code: 'ERR_UNSUPPORTED' });
    }
    expect(await codeOf(PostgresStore.open({ pool, schema, table }))).toBe('ERR_UNSUPPORTED');
    // The store's own pool sets read committed on each connection: open creates the table.
    const own = { connectionString: repeatableReadUrl(), schema, table };
    expect(await PostgresStore.probe(own)).toMatchObject({ state: 'absent' });
    await (await PostgresStore.open(own)).close();
  });
});

describe('close()', () => {
  it('frees a lock whose claim the server granted while the store closed, before its pool ends', async () => {
    const table = newTable();
    const closing = await openStore({ table });
    const otherHost = await openStore({ table });
    const id = idOf('claimed-late');
    const blocker = new pg.Client({ connectionString: CONNECTION_STRING });
    await blocker.connect();
    cleanups.push(() => blocker.end());
    // A busy server: the claim waits for the lock table until the blocker lets go.
    await blocker.query('BEGIN');
    await blocker.query(`LOCK TABLE "${schema}"."${table}_locks" IN EXCLUSIVE MODE`);
    const acquiring = codeOf(closing.locks.acquire(id, { leaseMs: 60_000, waitMs: 10_000 }));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const closed = closing.close();
    expect(await acquiring).toBe('ERR_STORE_CLOSED');
    await blocker.query('ROLLBACK');
    await closed;
    // The claim committed after close() began; close() handed it back, so no lease row is left.
    expect((await admin(`SELECT id FROM "${schema}"."${table}_locks"`)).rows).toEqual([]);
    const lock = await otherHost.locks.acquire(id, { waitMs: 0 });
    await lock.release();
  });

  it('rejects an acquire whose claim still waits for a connection, and closes without serving it', async () => {
    const table = newTable();
    const store = await openStore({ table, poolSize: 1 });
    const id = idOf('busy');
    await store.set(id, record('before'));
    const blocker = new pg.Client({ connectionString: CONNECTION_STRING });
    await blocker.connect();
    cleanups.push(() => blocker.end());
    await blocker.query('BEGIN');
    await blocker.query(`SELECT 1 FROM "${schema}"."${table}" WHERE id = $1 FOR UPDATE`, [id]);
    // The only connection waits on the blocker's row lock; the claim queues behind it.
    const writing = store.set(id, record('after'));
    const acquiring = codeOf(store.locks.acquire(idOf('queued'), { waitMs: 3000 }));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const closed = store.close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    await blocker.query('ROLLBACK');
    // close() waits for the write in flight, then ends the acquire; it used to leave the claim
    // queued in a pool it had ended, until waitMs ran out (ERR_LOCK_TIMEOUT).
    await closed;
    expect(await acquiring).toBe('ERR_STORE_CLOSED');
    expect(await writing).toBe(true);
    expect((await admin(`SELECT id FROM "${schema}"."${table}_locks"`)).rows).toEqual([]);
  });
});
