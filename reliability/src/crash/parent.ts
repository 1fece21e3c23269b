import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { SessionRecord } from '@sessile/core';
import type { ChildMessage, ChildTask, CrashMode, ParentMessage } from './protocol.js';
import { operation, type RoundPlan } from './workload.js';

const CHILD = fileURLToPath(new URL('./child.js', import.meta.url));

/** How long the child may take to reach its trigger before the round fails. */
const TRIGGER_TIMEOUT_MS = 60_000;

const TRIGGER: Record<CrashMode, ChildMessage['type']> = {
  writes: 'ack',
  sweep: 'sweeping',
  clear: 'clearing',
  lock: 'locked',
};

/**
 * A crash child forked ahead of its round: it loads the store's modules and then waits for its
 * task, so the load overlaps the previous round's checks. It has not opened the store yet, so
 * the round's kill still kills the one process that wrote.
 */
export interface PreparedChild {
  process: ChildProcess;
  /** Settles once the child has loaded (rejects when it exits or fails to start first). */
  loaded: Promise<void>;
}

export function prepareChild(store: string): PreparedChild {
  const child = fork(CHILD, [store], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: [],
  });
  const loaded = new Promise<void>((resolve, reject) => {
    const settle = (error?: Error) => {
      child.off('message', onMessage);
      child.off('exit', onExit);
      child.off('error', settle);
      if (error === undefined) resolve();
      else reject(error);
    };
    const onMessage = (message: ChildMessage) => {
      if (message.type === 'loaded') settle();
      if (message.type === 'fault') settle(new Error(`child: ${message.message}`));
    };
    const onExit = (code: number | null, signal: string | null) =>
      settle(new Error(`the child exited before it loaded (code ${code}, signal ${signal})`));
    child.on('message', onMessage);
    child.on('exit', onExit);
    child.on('error', settle);
  });
  // A round awaits it; one never used (the last prepared) is killed without awaiting.
  loaded.catch(() => {});
  return { process: child, loaded };
}

/** Kills a prepared child that no round will use, and waits for its exit. */
export async function discardChild(prepared: PreparedChild): Promise<void> {
  const child = prepared.process;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

export interface ChildRunInput {
  task: ChildTask;
  plan: RoundPlan;
  /** Milliseconds after the trigger message (ready, sweeping, clearing, locked) to kill. */
  killAfterMs: number;
  /** Called once the child has opened the store. */
  onReady?(): void;
}

export interface ChildRun {
  acknowledged: number;
  /** Per session: the record after its last acknowledged step, and that step. */
  states: Map<number, { record: SessionRecord | undefined; step: number }>;
  events: Set<ChildMessage['type']>;
  faults: string[];
  lock?: { id: string; expiresAt: number };
  /** When the round began waiting for the child to load. */
  waitedAt: number;
  /** When the child got its task. */
  goAt: number;
  readyAt: number;
  triggeredAt: number;
  killedAt: number;
  exitedAt: number;
}

/** Gives a prepared child its task and kills it with SIGKILL at the round's moment. */
export async function runChild(prepared: PreparedChild, input: ChildRunInput): Promise<ChildRun> {
  const run: ChildRun = {
    acknowledged: 0,
    states: new Map(),
    events: new Set(),
    faults: [],
    waitedAt: Date.now(),
    goAt: 0,
    readyAt: 0,
    triggeredAt: 0,
    killedAt: 0,
    exitedAt: 0,
  };
  const { mode } = input.task;
  try {
    await prepared.loaded;
  } catch (error) {
    // A child that failed to load stays alive (see child.ts's fault()): it must not outlive the round.
    await discardChild(prepared);
    run.faults.push(String(error));
    run.goAt = run.readyAt = run.triggeredAt = run.killedAt = run.exitedAt = Date.now();
    return run;
  }
  const child = prepared.process;
  if (child.exitCode !== null || child.signalCode !== null) {
    run.faults.push(`the child exited before its task (code ${child.exitCode})`);
    run.goAt = run.readyAt = run.triggeredAt = run.killedAt = run.exitedAt = Date.now();
    return run;
  }
  return new Promise((resolve) => {
    const kill = () => {
      if (run.killedAt === 0) {
        run.killedAt = Date.now();
        child.kill('SIGKILL');
      }
    };
    const timeout = setTimeout(() => {
      run.faults.push(`the child never reached '${TRIGGER[mode]}' in ${TRIGGER_TIMEOUT_MS} ms`);
      kill();
    }, TRIGGER_TIMEOUT_MS);
    child.on('message', (message: ChildMessage) => {
      run.events.add(message.type);
      if (message.type === 'ready') {
        run.readyAt = Date.now();
        input.onReady?.();
      }
      if (message.type === 'ack') {
        const previous = run.states.get(message.index);
        const expectedStep = previous === undefined ? 0 : previous.step + 1;
        if (message.step !== expectedStep) {
          run.faults.push(
            `ack of step ${message.step} of ${message.index}, expected ${expectedStep}`,
          );
        }
        const op = operation(input.plan, message.index, message.step, previous?.record);
        run.states.set(message.index, { record: op.after, step: message.step });
        run.acknowledged++;
      } else if (message.type === 'fault') {
        run.faults.push(`child: ${message.message}`);
        kill();
      } else if (message.type === 'locked') {
        run.lock = { id: message.id, expiresAt: message.expiresAt };
      }
      if (message.type === TRIGGER[mode] && run.triggeredAt === 0) {
        run.triggeredAt = Date.now();
        clearTimeout(timeout);
        setTimeout(kill, input.killAfterMs);
      }
    });
    child.on('error', (error) => {
      run.faults.push(`the child failed: ${String(error)}`);
      kill();
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timeout);
      if (signal !== 'SIGKILL') run.faults.push(`the child exited by itself (code ${code})`);
      if (run.killedAt === 0) run.killedAt = Date.now();
      run.exitedAt = Date.now();
      resolve(run);
    });
    run.goAt = Date.now();
    const go: ParentMessage = { type: 'go', task: input.task };
    child.send(go);
  });
}
