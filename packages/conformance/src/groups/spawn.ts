import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ChildMessage, ChildTask } from '../child.js';
import type { ConformanceOptions, CrossProcessOptions } from '../options.js';

const CHILD_SCRIPT = fileURLToPath(new URL('../child.js', import.meta.url));

export interface ChildHandle {
  process: ChildProcess;
  /** Every message the child sent, in order. */
  messages: ChildMessage[];
  /** Resolves with the first message of this type; rejects on an error message or an early exit. */
  next(type: ChildMessage['type']): Promise<void>;
  /** Resolves once the child has sent `times` messages of this type; rejects like `next`. */
  count(type: ChildMessage['type'], times: number): Promise<void>;
  /** Resolves when the process has exited, however it ended. */
  exited: Promise<void>;
  /** SIGKILL, unless it already exited. */
  kill(): void;
}

/** The store's cross-process options, or a failure saying the declared `shared` needs them. */
export function requireCrossProcess(
  options: ConformanceOptions,
  shared: string,
): CrossProcessOptions {
  if (options.crossProcess === undefined) {
    throw new Error(
      `the store declares capabilities.shared '${shared}', so the suite needs options.crossProcess to prove it`,
    );
  }
  return options.crossProcess;
}

/** Forks a child that opens the store at `cross.location()` and performs `task`. */
export function spawnChild(cross: CrossProcessOptions, task: ChildTask): ChildHandle {
  const module = cross.module instanceof URL ? cross.module.href : cross.module;
  const child = fork(CHILD_SCRIPT, [module, cross.location(), JSON.stringify(task)], {
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk) => {
    stderr += String(chunk);
  });
  const counts = new Map<string, number>();
  const messages: ChildMessage[] = [];
  const waiters = new Set<{ type: string; times: number; resolve: () => void }>();
  let failure: Error | undefined;
  const failAll = new Set<(error: Error) => void>();
  child.on('message', (message: ChildMessage) => {
    messages.push(message);
    if (message.type === 'error') {
      failure = new Error(`child failed: ${message.message}`);
      for (const fail of failAll) fail(failure);
      return;
    }
    counts.set(message.type, (counts.get(message.type) ?? 0) + 1);
    for (const waiter of waiters) {
      if ((counts.get(waiter.type) ?? 0) >= waiter.times) {
        waiters.delete(waiter);
        waiter.resolve();
      }
    }
  });
  const exited = new Promise<void>((resolve) => {
    child.on('exit', (code, signal) => {
      failure ??= new Error(
        `child exited (code ${code}, signal ${signal}) before finishing: ${stderr}`,
      );
      for (const fail of failAll) fail(failure);
      resolve();
    });
  });
  const count = (type: string, times: number): Promise<void> => {
    if ((counts.get(type) ?? 0) >= times) return Promise.resolve();
    if (failure) return Promise.reject(failure);
    return new Promise<void>((resolve, reject) => {
      waiters.add({ type, times, resolve });
      failAll.add(reject);
    });
  };
  return {
    process: child,
    messages,
    next: (type) => count(type, 1),
    count,
    exited,
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}
