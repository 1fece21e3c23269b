// Opened by the conformance suite's forked children: a Sentinel client of its own, as another
// host would have. The store never closes a client it was given, so close() here closes both.
import { RedisStore } from '@sessile/redis';
import { createSentinel } from 'redis';

export default async function open(location) {
  const { name, sentinelRootNodes, prefix } = JSON.parse(location);
  const sentinel = createSentinel({ name, sentinelRootNodes });
  sentinel.on('error', () => {});
  await sentinel.connect();
  const store = await RedisStore.open({ client: sentinel, prefix });
  const close = store.close.bind(store);
  store.close = async () => {
    await close();
    await sentinel.close();
  };
  return store;
}
