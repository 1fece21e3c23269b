// Opened by the conformance suite's forked children: the same file as the parent's store.
import { SqliteStore } from '@sessile/sqlite';

export default async function open(location) {
  return SqliteStore.open({ path: location });
}
