// The crash child: loads its store's modules, waits for its task, then opens the store and
// writes as fast as it can, acknowledging each resolved operation to the parent over IPC, until
// the parent kills it with SIGKILL.
import type { SessionRecord, SessionStore } from '@sessile/core';
import { loadStore, openForRole } from '../stores.js';
import type { ChildMessage, ChildTask, ParentMessage } from './protocol.js';
import { expiringPrefix } from './protocol.js';
import { operation, sessionId } from './workload.js';

function send(message: ChildMessage): Promise<void> {
  return new Promise((resolve, reject) => {
    // The callback runs once the message is in the channel, so a kill after it cannot lose it.
    process.send?.(message, undefined, {}, (error) => (error ? reject(error) : resolve()));
  });
}

async function fault(message: string): Promise<never> {
  await send({ type: 'fault', message });
  return new Promise(() => {});
}

async function apply(
  store: SessionStore,
  task: ChildTask,
  index: number,
  step: number,
  before: SessionRecord | undefined,
): Promise<SessionRecord | undefined> {
  const id = sessionId(task.plan, index);
  const op = operation(task.plan, index, step, before);
  let result: boolean;
  try {
    switch (op.kind) {
      case 'create':
        result = await store.set(id, op.after as SessionRecord, { only: 'absent' });
        break;
      case 'update':
        result = await store.set(id, op.after as SessionRecord, { only: 'present' });
        break;
      case 'touch':
        result = await store.touch(id, (op.after as SessionRecord).expiresAt);
        break;
      case 'delete':
        result = await store.delete(id);
        break;
      case 'create-existing':
        result = await store.set(
          id,
          { data: new Uint8Array([1]), expiresAt: task.plan.baseTime + 1 },
          { only: 'absent' },
        );
        break;
    }
  } catch (error) {
    return fault(`${op.kind} ${id} step ${step} rejected: ${String(error)}`);
  }
  if (result !== op.result) {
    return fault(`${op.kind} ${id} step ${step} resolved ${result}, expected ${op.result}`);
  }
  await send({ type: 'ack', index, step });
  return op.after;
}

async function lane(store: SessionStore, task: ChildTask, number: number): Promise<void> {
  const owned: number[] = [];
  for (let index = number; index < task.sessions; index += task.lanes) owned.push(index);
  const records = new Map<number, SessionRecord | undefined>();
  const steps = new Map<number, number>();
  for (let turn = 0; ; turn++) {
    const index = owned[(turn * 7 + number) % owned.length] as number;
    const step = steps.get(index) ?? 0;
    records.set(index, await apply(store, task, index, step, records.get(index)));
    steps.set(index, step + 1);
  }
}

async function runLanes(store: SessionStore, task: ChildTask): Promise<void> {
  await Promise.all(Array.from({ length: task.lanes }, (_, number) => lane(store, task, number)));
}

/** Runs `write` for 0..count-1 from `lanes` concurrent loops. */
async function inLanes(
  count: number,
  lanes: number,
  write: (n: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const loop = async () => {
    while (next < count) await write(next++);
  };
  await Promise.all(Array.from({ length: lanes }, loop));
}

function nextTask(): Promise<ChildTask> {
  return new Promise((resolve) => {
    const onMessage = (message: ParentMessage) => {
      if (message.type !== 'go') return;
      process.off('message', onMessage);
      resolve(message.task);
    };
    process.on('message', onMessage);
  });
}

async function main(): Promise<void> {
  // The child never ends by itself: only the parent's SIGKILL stops it, or the parent's exit.
  setInterval(() => {}, 1 << 30);
  process.on('disconnect', () => process.exit(3));
  // The store's modules load before the task arrives, while the parent checks the previous
  // round; the store itself is opened only once the task says so.
  await loadStore(process.argv[2] as string);
  const tasks = nextTask();
  await send({ type: 'loaded' });
  const task = await tasks;
  const store = await openForRole(task.store, task.dir, 'writer');
  await send({ type: 'ready' });
  switch (task.mode) {
    case 'writes':
      await runLanes(store, task);
      return;
    case 'sweep': {
      const expiresAt = Date.now() + 300;
      await inLanes(task.expiring, task.lanes, (n) => {
        const id = `${expiringPrefix(task.plan)}${String(n).padStart(6, '0')}`;
        return store.set(id, { data: new Uint8Array(64).fill(n & 255), expiresAt });
      });
      while (Date.now() <= expiresAt + 20) await new Promise((r) => setTimeout(r, 25));
      await send({ type: 'sweeping' });
      const lanes = runLanes(store, task);
      for (;;) {
        const result = await store.sweep({ limit: 16 });
        if (result.done) break;
      }
      await send({ type: 'swept' });
      await lanes;
      return;
    }
    case 'clear': {
      await inLanes(task.sessions, task.lanes, (index) => apply(store, task, index, 0, undefined));
      await send({ type: 'clearing' });
      await store.clear();
      await send({ type: 'cleared' });
      return new Promise(() => {});
    }
    case 'lock': {
      const id = sessionId(task.plan, task.sessions);
      const lock = await store.locks.acquire(id, { waitMs: 10_000, leaseMs: task.lockLeaseMs });
      await send({ type: 'locked', id, expiresAt: lock.expiresAt });
      await runLanes(store, task);
      return;
    }
  }
}

main().catch((error: unknown) => fault(`child failed: ${String(error)}`));
