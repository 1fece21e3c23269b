// Opened by the conformance suite's forked children: a cluster client of its own, as another host
// would have. The store never closes a client it was given, so close() here closes both.
import { RedisStore } from '@sessile/redis';
import { createCluster } from 'redis';

export default async function open(location) {
  const { rootNodes, prefix } = JSON.parse(location);
  const cluster = createCluster({ rootNodes });
  cluster.on('error', () => {});
  await cluster.connect();
  const store = await RedisStore.open({ client: cluster, prefix });
  const close = store.close.bind(store);
  store.close = async () => {
    await close();
    await cluster.close();
  };
  return store;
}
