import {
  runProbeConformance,
  runStoreConformance,
  storeWithOneSession,
} from '@sessile/conformance';
import { PostgresStore, type PostgresStoreOptions } from '@sessile/postgres';
import { afterAll } from 'vitest';
import { admin, CONNECTION_STRING, dropSchema, runSchema } from './helpers.js';

const schema = runSchema('conformance');
afterAll(() => dropSchema(schema));

let opened = 0;
let latestTable = '';

await runStoreConformance({
  name: 'PostgresStore',
  open: () => {
    latestTable = `sessions_${++opened}`;
    return PostgresStore.open({ connectionString: CONNECTION_STRING, schema, table: latestTable });
  },
  reopen: () =>
    PostgresStore.open({ connectionString: CONNECTION_STRING, schema, table: latestTable }),
  crossProcess: {
    module: new URL('./child-store.mjs', import.meta.url).pathname,
    location: () =>
      JSON.stringify({ connectionString: CONNECTION_STRING, schema, table: latestTable }),
  },
});

/** Every probe place's schema starts with this. */
const probePrefix = `sessile_probe_${process.pid}_`;
let probeSchemas = 0;
const reader = `${probePrefix}reader`;
afterAll(async () => {
  const { rows } = await admin<{ nspname: string }>(
    'SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)',
    [probePrefix],
  );
  for (const { nspname } of rows) await dropSchema(nspname);
  await admin(`DROP ROLE IF EXISTS "${reader}"`);
});

/** The server's URL as `reader`, a role with no privileges of its own. */
async function readerUrl(): Promise<string> {
  await admin(
    `DO $$ BEGIN CREATE ROLE "${reader}" LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
  );
  const url = new URL(CONNECTION_STRING);
  url.username = reader;
  return url.href;
}

/** Options naming the table `sessions` in a new schema, which `setUp` may create things in first. */
async function probeTable(setUp?: (schema: string) => string): Promise<PostgresStoreOptions> {
  const schema = `${probePrefix}${++probeSchemas}`;
  if (setUp !== undefined) await admin(setUp(schema));
  return { connectionString: CONNECTION_STRING, schema };
}

runProbeConformance<PostgresStoreOptions>({
  name: 'PostgresStore',
  probe: (options) => PostgresStore.probe(options),
  open: (options) => PostgresStore.open(options),
  // Every schema and table of the places, and the rows of each table.
  snapshot: async () => {
    const { rows } = await admin<{ schema: string; name: string | null }>(
      `SELECT n.nspname AS schema, c.relname AS name
       FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid
       WHERE starts_with(n.nspname, $1) ORDER BY 1, 2`,
      [probePrefix],
    );
    return rows;
  },
  places: [
    {
      name: 'a store',
      state: 'present',
      make: async () =>
        storeWithOneSession((options) => PostgresStore.open(options), await probeTable()),
    },
    { name: 'a missing schema', state: 'absent', make: () => probeTable() },
    {
      name: 'a schema without the table',
      state: 'absent',
      make: () => probeTable((schema) => `CREATE SCHEMA "${schema}"`),
    },
    {
      name: "an app's table of the same name",
      state: 'refused',
      make: () =>
        probeTable(
          (schema) =>
            `CREATE SCHEMA "${schema}"; CREATE TABLE "${schema}".sessions (sid text PRIMARY KEY, sess json)`,
        ),
    },
    {
      name: 'a missing schema, for a user who may not create one',
      state: 'refused',
      make: async () => ({ ...(await probeTable()), connectionString: await readerUrl() }),
    },
    {
      name: 'a store, for a user who may not use its schema',
      state: 'refused',
      make: async () => {
        const options = await storeWithOneSession(
          (options) => PostgresStore.open(options),
          await probeTable(),
        );
        return { ...options, connectionString: await readerUrl() };
      },
    },
  ],
});
