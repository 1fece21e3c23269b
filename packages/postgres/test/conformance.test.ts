import { runStoreConformance } from '@sessile/conformance';
import { PostgresStore } from '@sessile/postgres';
import { afterAll } from 'vitest';
import { CONNECTION_STRING, dropSchema, runSchema } from './helpers.js';

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
