import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { ChildMessage, ChildTask } from '../child.js';
import { decodeValue, expectCode, newId, record } from '../helpers.js';
import type { ConformanceOptions, CrossProcessOptions } from '../options.js';

const CHILD_SCRIPT = fileURLToPath(new URL('../child.js', import.meta.url));

interface Child {
  process: ChildProcess;
  /** Every message the child sent, in order. */
  messages: ChildMessage[];
  /** Resolves with the first message of this type; rejects on an error message or an early exit. */
  next(type: ChildMessage['type']): Promise<void>;
}

function spawnChild(cross: CrossProcessOptions, task: ChildTask): Child {
  const module = cross.module instanceof URL ? cross.module.href : cross.module;
  const child = fork(CHILD_SCRIPT, [module, cross.location(), JSON.stringify(task)], {
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk) => {
    stderr += String(chunk);
  });
  const seen = new Set<string>();
  const messages: ChildMessage[] = [];
  const waiters = new Map<string, Array<() => void>>();
  let failure: Error | undefined;
  const failAll = new Set<(error: Error) => void>();
  child.on('message', (message: ChildMessage) => {
    messages.push(message);
    if (message.type === 'error') {
      failure = new Error(`child failed: ${message.message}`);
      for (const fail of failAll) fail(failure);
      return;
    }
    seen.add(message.type);
    for (const resolve of waiters.get(message.type) ?? []) resolve();
  });
  child.on('exit', (code, signal) => {
    failure ??= new Error(
      `child exited (code ${code}, signal ${signal}) before finishing: ${stderr}`,
    );
    for (const fail of failAll) fail(failure);
  });
  return {
    process: child,
    messages,
    next(type) {
      if (seen.has(type)) return Promise.resolve();
      if (failure) return Promise.reject(failure);
      return new Promise<void>((resolve, reject) => {
        const list = waiters.get(type) ?? [];
        list.push(resolve);
        waiters.set(type, list);
        failAll.add(reject);
      });
    },
  };
}

export function crossProcessTests(options: ConformanceOptions, shared: string): void {
  const scale = options.timeScale ?? 1;
  const children: ChildProcess[] = [];
  const requireCross = (): CrossProcessOptions => {
    if (options.crossProcess === undefined) {
      throw new Error(
        `the store declares capabilities.shared '${shared}', so the suite needs options.crossProcess to prove it`,
      );
    }
    return options.crossProcess;
  };

  describe('cross-process', () => {
    afterEach(() => {
      for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
    });

    it(
      '4 child processes x 100 locked increments on one session end at exactly 400',
      async () => {
        const cross = requireCross();
        const store = await options.open();
        try {
          const id = newId();
          await store.set(id, record({ n: 0 }));
          const workers = Array.from({ length: 4 }, () =>
            spawnChild(cross, { kind: 'increment', id, times: 100 }),
          );
          children.push(...workers.map((worker) => worker.process));
          await Promise.all(workers.map((worker) => worker.next('done')));
          expect(decodeValue((await store.get(id))?.data ?? new Uint8Array())).toEqual({ n: 400 });
        } finally {
          await store.close();
        }
      },
      300_000 * scale,
    );

    it(
      'a holder killed with SIGKILL blocks others no longer than its lease',
      async () => {
        const cross = requireCross();
        const store = await options.open();
        try {
          const id = newId();
          const leaseMs = 1500 * scale;
          const holder = spawnChild(cross, { kind: 'hold', id, leaseMs });
          children.push(holder.process);
          await holder.next('held');
          // The lock really is held by the other process...
          await expectCode(store.locks.acquire(id, { waitMs: 0 }), 'ERR_LOCK_TIMEOUT');
          holder.process.kill('SIGKILL');
          // ...and its lease frees it even though the holder never released.
          const lock = await store.locks.acquire(id, {
            waitMs: leaseMs + 20_000 * scale,
            leaseMs: 10_000,
          });
          expect(lock.signal.aborted).toBe(false);
          await lock.release();
        } finally {
          await store.close();
        }
      },
      120_000 * scale,
    );

    it(
      'a holder in another process whose lease was taken over cannot write',
      async () => {
        const cross = requireCross();
        const store = await options.open();
        try {
          const id = newId();
          const leaseMs = 500 * scale;
          const holder = spawnChild(cross, { kind: 'fenced-write', id, leaseMs });
          children.push(holder.process);
          await holder.next('held');
          // Stopped, the holder can neither extend nor notice that its lease ran out.
          holder.process.kill('SIGSTOP');
          const lock = await store.locks.acquire(id, {
            waitMs: leaseMs + 20_000 * scale,
            leaseMs: 60_000,
          });
          expect(await store.set(id, record({ by: 'new holder' }), { lock })).toBe(true);
          holder.process.kill('SIGCONT');
          holder.process.send('write');
          await holder.next('written');
          const written = holder.messages.find((message) => message.type === 'written');
          expect(written, 'the stale holder must be refused').toEqual({
            type: 'written',
            outcome: 'ERR_LOCK_LOST',
          });
          expect(decodeValue((await store.get(id))?.data ?? new Uint8Array())).toEqual({
            by: 'new holder',
          });
          await lock.release();
        } finally {
          await store.close();
        }
      },
      120_000 * scale,
    );
  });
}
