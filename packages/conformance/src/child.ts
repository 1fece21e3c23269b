// Runs in a forked child process: opens the store under test through the author's module and
// performs one task the parent asked for, reporting over IPC.
import { pathToFileURL } from 'node:url';
import type { SessionStore } from '@sessile/core';
import { lockedIncrement } from './groups/locks.js';

export type ChildTask =
  | { kind: 'increment'; id: string; times: number }
  | { kind: 'hold'; id: string; leaseMs: number }
  /** Holds the lock without extending it; on the parent's 'write', tries a fenced set with it. */
  | { kind: 'fenced-write'; id: string; leaseMs: number };

export type ChildMessage =
  | { type: 'ready' }
  | { type: 'held' }
  | { type: 'done' }
  | { type: 'written'; outcome: string }
  | { type: 'error'; message: string };

function send(message: ChildMessage): void {
  process.send?.(message);
}

async function main(): Promise<void> {
  const [modulePath, location, taskJson] = process.argv.slice(2);
  if (modulePath === undefined || location === undefined || taskJson === undefined) {
    throw new Error('usage: child.js <module> <location> <task>');
  }
  const url = modulePath.startsWith('file:') ? modulePath : pathToFileURL(modulePath).href;
  const imported = (await import(url)) as { default: (location: string) => Promise<SessionStore> };
  const store = await imported.default(location);
  const task = JSON.parse(taskJson) as ChildTask;
  send({ type: 'ready' });
  if (task.kind === 'increment') {
    for (let i = 0; i < task.times; i++) await lockedIncrement(store, task.id);
    await store.close();
    send({ type: 'done' });
    process.disconnect?.();
    return;
  }
  const lock = await store.locks.acquire(task.id, { leaseMs: task.leaseMs, waitMs: 60_000 });
  send({ type: 'held' });
  if (task.kind === 'fenced-write') {
    process.once('message', async () => {
      const data = new TextEncoder().encode(JSON.stringify({ by: 'stale child' }));
      const outcome = await store
        .set(task.id, { data, expiresAt: Date.now() + 3_600_000 }, { lock })
        .then(
          (wrote) => `resolved ${wrote}`,
          (error: { code?: string }) => error.code ?? String(error),
        );
      send({ type: 'written', outcome });
    });
    return;
  }
  // Hold the lock until the parent kills this process.
  setInterval(() => {}, 60_000);
}

main().catch((error: unknown) => {
  send({
    type: 'error',
    message: error instanceof Error ? (error.stack ?? error.message) : String(error),
  });
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 100);
});
