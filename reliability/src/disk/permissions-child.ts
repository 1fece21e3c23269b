// The permissions child: runs as an unprivileged user (root ignores file modes), writes from
// eight lanes, and runs a battery of calls whenever the parent asks, while the parent changes
// the modes of the store's directories underneath it.
import { runTraffic, unexplained } from '../servers/traffic.js';
import { storeSpec } from '../stores.js';
import { attempt, battery } from './hostile.js';

export interface PermissionsTask {
  store: string;
  dir: string;
  /** Every ERR_STORE_IO must name this path (the run's directory, which holds the store's). */
  root: string;
}

export type PermissionsRequest = { type: 'battery'; tag: string } | { type: 'stop' };

export type PermissionsReply =
  | { type: 'ready' }
  | { type: 'outcomes'; tag: string; outcomes: [string, string][] }
  | {
      type: 'done';
      operations: number;
      acknowledged: number;
      rejected: [string, number][];
      unexplained: string[];
      closed: string;
    };

function send(reply: PermissionsReply): Promise<void> {
  return new Promise((resolve, reject) => {
    process.send?.(reply, undefined, {}, (error) => (error ? reject(error) : resolve()));
  });
}

async function main(): Promise<void> {
  const task = JSON.parse(process.argv[2] ?? '') as PermissionsTask;
  const store = await storeSpec(task.store).open(task.dir);
  let stop = () => {};
  const stopped = new Promise<void>((resolve) => {
    stop = resolve;
  });
  process.on('message', (request: PermissionsRequest) => {
    if (request.type === 'stop') {
      stop();
      return;
    }
    battery(store, request.tag, task.root)
      .then((outcomes) => send({ type: 'outcomes', tag: request.tag, outcomes: [...outcomes] }))
      .catch((error) => {
        console.error(error);
        process.exit(3);
      });
  });
  const traffic = await runTraffic(store, 'permissions', 0, async () => {
    await send({ type: 'ready' });
    await stopped;
  });
  let lost: string[];
  try {
    lost = await unexplained(store, traffic);
  } catch (error) {
    lost = [`reading back the traffic's ids failed: ${String(error)}`];
  }
  const closed = await attempt(() => store.close());
  await send({
    type: 'done',
    operations: traffic.operations,
    acknowledged: traffic.acknowledged,
    rejected: [...traffic.failures],
    unexplained: lost,
    closed,
  });
  process.disconnect();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(2);
});
