import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import type { StoreProbe } from '@sessile/core';
import { PostgresStore, type PostgresStoreOptions } from '@sessile/postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { admin, CONNECTION_STRING, codeOf, dropSchema, idOf, record } from './helpers.js';

/** Every schema and role of this run starts with this, so afterAll finds them all. */
const prefix = `sessile_rights_${process.pid}_${randomBytes(3).toString('hex')}_`;
let made = 0;

afterAll(async () => {
  const { rows: schemas } = await admin<{ nspname: string }>(
    'SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)',
    [prefix],
  );
  for (const { nspname } of schemas) await dropSchema(nspname);
  const { rows: roles } = await admin<{ rolname: string }>(
    'SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)',
    [prefix],
  );
  for (const { rolname } of roles)
    await admin(`DROP OWNED BY "${rolname}"; DROP ROLE "${rolname}"`);
});

/** A new schema name, and a new role with no privileges whose URL connects as it. */
async function schemaAndRole(): Promise<{ schema: string; role: string; url: string }> {
  const n = ++made;
  const role = `${prefix}r${n}`;
  await admin(`CREATE ROLE "${role}" LOGIN`);
  const url = new URL(CONNECTION_STRING);
  url.username = role;
  return { schema: `${prefix}s${n}`, role, url: url.href };
}

/** A complete store in `schema`, made by the admin user, holding one session. */
async function storeIn(schema: string): Promise<void> {
  const store = await PostgresStore.open({ connectionString: CONNECTION_STRING, schema });
  await store.set(idOf('kept'), record('kept'));
  await store.close();
}

/** The schema's relations and functions and its version records, as the admin sees them. */
async function snapshot(schema: string): Promise<unknown> {
  const { rows } = await admin(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1
     UNION ALL SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = $1 ORDER BY 1`,
    [schema],
  );
  const versions = await admin(`SELECT * FROM "${schema}".sessile_versions ORDER BY 1`).then(
    (result) => result.rows,
    () => 'none',
  );
  return { rows, versions };
}

/**
 * Probes, checks the probe changed nothing, then opens with the same options: a `refused`
 * probe must mean `open` rejects and changes nothing, any other answer that it resolves.
 */
async function probeThenOpen(
  options: PostgresStoreOptions,
): Promise<{ probe: StoreProbe; open: string }> {
  const schema = options.schema ?? 'public';
  const before = await snapshot(schema);
  const probe = await PostgresStore.probe(options);
  expect(await snapshot(schema)).toEqual(before);
  const open = await codeOf(PostgresStore.open(options).then((store) => store.close()));
  if (probe.state === 'refused') {
    expect(open).toBe('ERR_STORE_IO');
    expect(await snapshot(schema)).toEqual(before);
  } else {
    expect(open).toBe('resolved');
  }
  return { probe, open };
}

function sqlStateOf(probe: StoreProbe): unknown {
  return probe.state === 'refused' ? (probe.cause as { code?: unknown })?.code : undefined;
}

describe('PostgresStore.probe for a user the server refuses, and open agrees', () => {
  it('answers refused, naming the table, for a role without USAGE on the store schema', async () => {
    const { schema, url } = await schemaAndRole();
    await storeIn(schema);
    const { probe } = await probeThenOpen({ connectionString: url, schema });
    expect(probe).toMatchObject({ state: 'refused' });
    expect(sqlStateOf(probe)).toBe('42501');
    if (probe.state !== 'refused') return;
    expect(probe.reason).toContain(`"${schema}"."sessions"`);
    expect(probe.reason).toContain(`permission denied for schema ${schema}`);
  });

  it('answers refused for a role with USAGE that may not read sessile_versions', async () => {
    const { schema, role, url } = await schemaAndRole();
    await storeIn(schema);
    await admin(`GRANT USAGE ON SCHEMA "${schema}" TO "${role}"`);
    const { probe } = await probeThenOpen({ connectionString: url, schema });
    expect(probe).toMatchObject({ state: 'refused' });
    expect(sqlStateOf(probe)).toBe('42501');
    if (probe.state !== 'refused') return;
    expect(probe.reason).toContain(`"${schema}"."sessions"`);
    expect(probe.reason).toContain('permission denied for table sessile_versions');
  });

  it('answers refused for a missing table beside sessile_versions in a schema the role may not use', async () => {
    const { schema, url } = await schemaAndRole();
    await storeIn(schema);
    const { probe } = await probeThenOpen({ connectionString: url, schema, table: 'others' });
    expect(probe).toMatchObject({ state: 'refused' });
    if (probe.state !== 'refused') return;
    expect(probe.reason).toContain(`"${schema}"."others"`);
    expect(probe.reason).toContain(`permission denied for schema ${schema}`);
  });

  it('answers refused for a role that does not exist, and for a database that does not exist', async () => {
    const { schema } = await schemaAndRole();
    const noRole = new URL(CONNECTION_STRING);
    noRole.username = `${prefix}nobody`;
    const byNobody = await probeThenOpen({ connectionString: noRole.href, schema });
    expect(byNobody.probe).toMatchObject({ state: 'refused' });
    expect(sqlStateOf(byNobody.probe)).toBe('28000');
    const noDatabase = new URL(CONNECTION_STRING);
    noDatabase.pathname = `/${prefix}nowhere`;
    const nowhere = await PostgresStore.probe({ connectionString: noDatabase.href, schema });
    expect(nowhere).toMatchObject({ state: 'refused' });
    expect(sqlStateOf(nowhere)).toBe('3D000');
    if (nowhere.state !== 'refused') return;
    expect(nowhere.reason).toContain(`"${schema}"."sessions"`);
    expect(nowhere.reason).toContain('does not exist');
    expect(await codeOf(PostgresStore.open({ connectionString: noDatabase.href, schema }))).toBe(
      'ERR_STORE_IO',
    );
  });

  it('still rejects with ERR_STORE_IO when no server answers', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const url = new URL(CONNECTION_STRING);
    url.host = `127.0.0.1:${port}`;
    expect(await codeOf(PostgresStore.probe({ connectionString: url.href }))).toBe('ERR_STORE_IO');
  });
});

describe("open's refusal names the table", () => {
  it('for a role that may use the schema but not create in it, and for a read-only connection', async () => {
    const { schema, role, url } = await schemaAndRole();
    await storeIn(schema);
    await admin(
      `GRANT USAGE ON SCHEMA "${schema}" TO "${role}"; GRANT SELECT ON "${schema}".sessile_versions TO "${role}"`,
    );
    const readOnly = new URL(CONNECTION_STRING);
    readOnly.searchParams.set('options', '-c default_transaction_read_only=on');
    for (const [connectionString, sqlState] of [
      [url, '42501'],
      [readOnly.href, '25006'],
    ] as const) {
      const error = await PostgresStore.open({ connectionString, schema, table: 'fresh' }).then(
        (store) => store.close(),
        (failure: unknown) => failure,
      );
      expect(error).toMatchObject({ code: 'ERR_STORE_IO', cause: { code: sqlState } });
      expect((error as Error).message).toContain(`"${schema}"."fresh"`);
    }
  });
});

describe('PostgresStore.probe for a user who may read but not create or write, and open agrees', () => {
  /** A complete store, and a role that may read its three tables and nothing more. */
  async function readOnlyStore(): Promise<{ schema: string; url: string }> {
    const { schema, role, url } = await schemaAndRole();
    await storeIn(schema);
    await admin(
      `GRANT USAGE ON SCHEMA "${schema}" TO "${role}";
       GRANT SELECT ON "${schema}".sessile_versions, "${schema}".sessions,
         "${schema}".sessions_locks TO "${role}"`,
    );
    return { schema, url };
  }

  it('answers present for a complete store: open resolves, reads work and writes reject', async () => {
    const { schema, url } = await readOnlyStore();
    const { probe } = await probeThenOpen({ connectionString: url, schema });
    expect(probe).toEqual({ state: 'present' });
    const store = await PostgresStore.open({ connectionString: url, schema });
    try {
      expect(await store.count()).toBe(1);
      expect(await codeOf(store.set(idOf('new'), record('new')))).toBe('ERR_STORE_IO');
    } finally {
      await store.close();
    }
  });

  it('answers refused for a store that open would complete, which takes its owner', async () => {
    const { schema, url } = await readOnlyStore();
    await admin(`DROP INDEX "${schema}".sessions_bad_ids`);
    const { probe } = await probeThenOpen({ connectionString: url, schema });
    expect(probe).toMatchObject({ state: 'refused' });
    if (probe.state !== 'refused') return;
    expect(probe.reason).toContain(`this user does not own "${schema}"."sessions"`);
    expect(probe.reason).toContain(`this user may not write "${schema}"."sessile_versions"`);
  });

  it('answers refused for an older schema version, even with CREATE and every write granted', async () => {
    const { schema, role, url } = await schemaAndRole();
    await storeIn(schema);
    await admin(
      `GRANT USAGE, CREATE ON SCHEMA "${schema}" TO "${role}";
       GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "${schema}" TO "${role}";
       UPDATE "${schema}".sessile_versions SET version = 4`,
    );
    const { probe } = await probeThenOpen({ connectionString: url, schema });
    expect(probe).toMatchObject({ state: 'refused' });
    if (probe.state !== 'refused') return;
    expect(probe.reason).toContain('schema version 4');
    expect(probe.reason).toContain(`does not own function "${schema}"."sessions_claim_read"`);
    expect(probe.reason).not.toContain('may not write');
  });

  it('answers refused for a missing table when sessile_versions may not be written', async () => {
    const { schema, role, url } = await schemaAndRole();
    await storeIn(schema);
    await admin(
      `GRANT USAGE, CREATE ON SCHEMA "${schema}" TO "${role}";
       GRANT SELECT ON "${schema}".sessile_versions TO "${role}"`,
    );
    const { probe } = await probeThenOpen({ connectionString: url, schema, table: 'others' });
    expect(probe).toEqual({
      state: 'refused',
      reason: `"${schema}"."others" does not exist, and this user may not write "${schema}"."sessile_versions"`,
    });
    await admin(`GRANT INSERT, UPDATE ON "${schema}".sessile_versions TO "${role}"`);
    const granted = await probeThenOpen({ connectionString: url, schema, table: 'others2' });
    expect(granted.probe).toMatchObject({ state: 'absent' });
  });

  it('answers refused for a missing table on a connection that may not write, present for a complete one', async () => {
    const { schema } = await schemaAndRole();
    await storeIn(schema);
    const url = new URL(CONNECTION_STRING);
    url.searchParams.set('options', '-c default_transaction_read_only=on');
    const missing = await probeThenOpen({ connectionString: url.href, schema, table: 'others' });
    expect(missing.probe).toMatchObject({ state: 'refused' });
    if (missing.probe.state !== 'refused') return;
    expect(missing.probe.reason).toContain('this connection may not write');
    const complete = await probeThenOpen({ connectionString: url.href, schema });
    expect(complete.probe).toEqual({ state: 'present' });
  });
});
