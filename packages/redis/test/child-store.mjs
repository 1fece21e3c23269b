// Opened by the conformance suite's forked children: its own connection, as another host would have.
import { RedisStore } from '@sessile/redis';

export default async function open(location) {
  const { url, prefix } = JSON.parse(location);
  return RedisStore.open({ url, prefix });
}
