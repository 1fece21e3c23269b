// Opened by the conformance suite's forked children: the same table as the parent's store.
import { PostgresStore } from '@sessile/postgres';

export default async function open(location) {
  const { connectionString, schema, table } = JSON.parse(location);
  return PostgresStore.open({ connectionString, schema, table });
}
