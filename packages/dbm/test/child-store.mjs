// Opened by the conformance suite's forked children: the same file as the parent's store.
import { DbmStore } from '@sessile/dbm';

export default function open(location) {
  return DbmStore.open({ path: location });
}
