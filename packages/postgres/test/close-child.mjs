// Forked by the failure tests: opens a store, reads through its pool, then closes it when told
// and lets go of the parent, so it exits as soon as nothing of the store holds it.
import { PostgresStore } from '@sessile/postgres';

const store = await PostgresStore.open(JSON.parse(process.argv[2]));
await Promise.all([0, 1, 2].map(() => store.get('close-child-0000000000')));
process.once('message', async () => {
  await store.close();
  process.send('closed', () => process.disconnect());
});
process.send('ready');
