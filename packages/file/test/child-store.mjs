// Opened by the conformance suite's forked children: the same directory as the parent's store.
import { FileStore } from '@sessile/file';

export default async function open(location) {
  return FileStore.open({ path: location });
}
