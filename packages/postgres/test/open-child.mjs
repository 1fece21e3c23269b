// One app instance starting up: waits for the parent's go, opens the store, reports, exits.
import { PostgresStore } from '@sessile/postgres';

const { connectionString, schema, table } = JSON.parse(process.argv[2]);
process.send({ type: 'ready' });
process.once('message', async () => {
  try {
    const store = await PostgresStore.open({ connectionString, schema, table });
    await store.close();
    process.send({ type: 'opened' });
  } catch (error) {
    process.send({ type: 'failed', message: String(error?.message ?? error) });
  }
  process.disconnect();
});
