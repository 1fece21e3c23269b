// Runs in a forked child process: opens the store under test through the author's module and
// performs one task the parent asked for, reporting over IPC.
import { pathToFileURL } from 'node:url';
import { generateSessionId, type SessionStore } from '@sessile/core';
import { lockedIncrement } from './groups/locks.js';
import { loginTimes } from './groups/owners.js';

export type ChildTask =
  | { kind: 'increment'; id: string; times: number }
  | { kind: 'hold'; id: string; leaseMs: number }
  /** Holds the lock without extending it; on the parent's 'write', tries a fenced set with it. */
  | { kind: 'fenced-write'; id: string; leaseMs: number }
  /** Writes `ids` for `owner`, then deletes the first, moves the second to `other`, disowns the third. */
  | { kind: 'owner-writes'; ids: string[]; owner: string; other: string }
  /**
   * Until killed: creates sessions for `owner`, and deletes or moves to `other` every third one,
   * announcing each step before it (`disowning`) and after it (`owned`, `gone`).
   */
  | { kind: 'owner-stream'; owner: string; other: string }
  /** Logs `owner` in `times` times through a SessionManager capped at one session per owner. */
  | { kind: 'logins'; owner: string; times: number }
  /**
   * Until killed: creates sessions, touching every third one written before and deleting every
   * fourth, announcing each step before it (`changing`) and once it resolved (`stored`,
   * `touched`, `deleted`).
   */
  | { kind: 'write-stream' }
  /**
   * One write (a set of `{ i: value }`, a touch to `expiresAt`, or a delete), announced with
   * `acknowledged` once it resolved; then nothing more, no close, until killed.
   */
  | {
      kind: 'last-write';
      op: 'set' | 'touch' | 'delete';
      id: string;
      value: number;
      expiresAt: number;
    }
  /**
   * On the parent's message, in order: creates each of `ids` with `only: 'absent'`, updates it
   * with `only: 'present'`, or deletes it, writing `{ by: tag }`; reports the ids it changed.
   */
  | { kind: 'race'; ids: string[]; op: 'create' | 'update' | 'delete'; tag: string };

export type ChildMessage =
  | { type: 'ready' }
  | { type: 'held' }
  | { type: 'done' }
  | { type: 'written'; outcome: string }
  | { type: 'owned'; id: string }
  | { type: 'disowning'; id: string }
  | { type: 'gone'; id: string }
  | { type: 'stored'; id: string; value: number }
  | { type: 'changing'; id: string }
  | { type: 'touched'; id: string; expiresAt: number }
  | { type: 'deleted'; id: string }
  | { type: 'acknowledged'; result: boolean }
  | { type: 'raced'; changed: string[] }
  | { type: 'error'; message: string };

function send(message: ChildMessage): void {
  process.send?.(message);
}

/** Resolves once the message is handed to the channel, so a kill right after cannot lose it. */
function sent(message: ChildMessage): Promise<void> {
  return new Promise((resolve, reject) => {
    process.send?.(message, undefined, undefined, (error) => (error ? reject(error) : resolve()));
  });
}

function ownedRecord(value: unknown, owner: string | undefined) {
  const data = new TextEncoder().encode(JSON.stringify(value));
  const expiresAt = Date.now() + 3_600_000;
  return owner === undefined ? { data, expiresAt } : { data, expiresAt, owner };
}

async function ownerWrites(
  store: SessionStore,
  task: { ids: string[]; owner: string; other: string },
) {
  const [deleted, moved, disowned] = task.ids;
  for (const id of task.ids) await store.set(id, ownedRecord({ id }, task.owner));
  await store.delete(deleted as string);
  await store.set(moved as string, ownedRecord({ moved: true }, task.other));
  await store.set(disowned as string, ownedRecord({ disowned: true }, undefined), {
    only: 'present',
  });
}

async function ownerStream(store: SessionStore, task: { owner: string; other: string }) {
  const live: string[] = [];
  for (let i = 0; ; i++) {
    const id = generateSessionId();
    await store.set(id, ownedRecord({ i }, task.owner));
    live.push(id);
    await sent({ type: 'owned', id });
    if (i % 3 === 2) {
      const target = live.splice(i % 2, 1)[0] as string;
      await sent({ type: 'disowning', id: target });
      if (i % 2 === 0) await store.delete(target);
      else await store.set(target, ownedRecord({ moved: i }, task.other));
      await sent({ type: 'gone', id: target });
    }
  }
}

async function writeStream(store: SessionStore): Promise<void> {
  const live: string[] = [];
  for (let i = 0; ; i++) {
    const id = generateSessionId();
    await store.set(id, ownedRecord({ i }, undefined));
    live.push(id);
    await sent({ type: 'stored', id, value: i });
    if (i % 3 === 2) {
      const target = live[i % live.length] as string;
      const expiresAt = Date.now() + 2 * 3_600_000 + i;
      await sent({ type: 'changing', id: target });
      await store.touch(target, expiresAt);
      await sent({ type: 'touched', id: target, expiresAt });
    }
    if (i % 4 === 3) {
      const target = live.splice(0, 1)[0] as string;
      await sent({ type: 'changing', id: target });
      await store.delete(target);
      await sent({ type: 'deleted', id: target });
    }
  }
}

function lastWrite(
  store: SessionStore,
  task: { op: 'set' | 'touch' | 'delete'; id: string; value: number; expiresAt: number },
): Promise<boolean> {
  if (task.op === 'touch') return store.touch(task.id, task.expiresAt);
  if (task.op === 'delete') return store.delete(task.id);
  const data = new TextEncoder().encode(JSON.stringify({ i: task.value }));
  return store.set(task.id, { data, expiresAt: task.expiresAt });
}

async function race(
  store: SessionStore,
  task: { ids: string[]; op: 'create' | 'update' | 'delete'; tag: string },
): Promise<void> {
  await new Promise((resolve) => process.once('message', resolve));
  const changed: string[] = [];
  for (const id of task.ids) {
    const only = task.op === 'create' ? 'absent' : 'present';
    const wrote =
      task.op === 'delete'
        ? await store.delete(id)
        : await store.set(id, ownedRecord({ by: task.tag }, undefined), { only });
    if (wrote) changed.push(id);
  }
  await store.close();
  send({ type: 'raced', changed });
  process.disconnect?.();
}

async function main(): Promise<void> {
  const [modulePath, location, taskJson] = process.argv.slice(2);
  if (modulePath === undefined || location === undefined || taskJson === undefined) {
    throw new Error('usage: child.js <module> <location> <task>');
  }
  const url = modulePath.startsWith('file:') ? modulePath : pathToFileURL(modulePath).href;
  const imported = (await import(url)) as { default?: unknown };
  if (typeof imported.default !== 'function') {
    const names = Object.keys(imported).join(', ') || 'nothing';
    throw new TypeError(
      `crossProcess.module ${modulePath} must have a default export (location) => store that opens your store at location; it exports ${names}`,
    );
  }
  const store = (await imported.default(location)) as SessionStore;
  const task = JSON.parse(taskJson) as ChildTask;
  send({ type: 'ready' });
  if (task.kind === 'owner-writes') {
    await ownerWrites(store, task);
    await store.close();
    send({ type: 'done' });
    process.disconnect?.();
    return;
  }
  if (task.kind === 'logins') {
    await loginTimes(store, task.owner, task.times);
    await store.close();
    send({ type: 'done' });
    process.disconnect?.();
    return;
  }
  if (task.kind === 'race') {
    await race(store, task);
    return;
  }
  if (task.kind === 'write-stream') {
    await writeStream(store);
    return;
  }
  if (task.kind === 'last-write') {
    await sent({ type: 'acknowledged', result: await lastWrite(store, task) });
    // Idle until the parent kills this process: nothing after the write may carry it to disk.
    setInterval(() => {}, 60_000);
    return;
  }
  if (task.kind === 'owner-stream') {
    await ownerStream(store, task);
    return;
  }
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
