import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { SessionRecord, SessionStore } from '@sessile/core';
import { isSessionError } from '@sessile/core';
import { openForRole, type StoreSpec } from '../stores.js';
import type { ChildMessage, ChildTask, CrashMode } from './protocol.js';
import { operation, type RoundPlan, sameRecord, sessionId } from './workload.js';

const CHILD = fileURLToPath(new URL('./child.js', import.meta.url));

/** What one crash round found. `failures` empty means every check held. */
export interface RoundOutcome {
  mode: CrashMode;
  /** Operations the child acknowledged before it died. */
  acknowledged: number;
  /** Sessions whose state was compared with the acknowledged operations. */
  checked: number;
  /** Sessions missing an acknowledged operation (an older state, or absent). */
  lost: number;
  /** Reads that rejected with ERR_CORRUPT_RECORD. */
  corrupt: number;
  failures: string[];
  /** From the kill to the reopened store's first successful write. */
  recoveryMs: number;
  /** From the kill until another holder got the killed holder's lock (lock rounds). */
  lockFreedMs?: number;
  lockLeaseMs?: number;
}

export interface RoundInput {
  spec: StoreSpec;
  dir: string;
  mode: CrashMode;
  plan: RoundPlan;
  sessions: number;
  lanes: number;
  expiring: number;
  /** Milliseconds after the trigger message (ready, sweeping, clearing, locked) to kill. */
  killAfterMs: number;
  /** Records earlier rounds left in the store, which must still be there exactly. */
  survivors: Map<string, SessionRecord>;
}

const TRIGGER: Record<CrashMode, ChildMessage['type']> = {
  writes: 'ack',
  sweep: 'sweeping',
  clear: 'clearing',
  lock: 'locked',
};

/** A sweep that scans no entry for this long after reopening has stalled. */
const SWEEP_STALL_MS = 15_000;
/** A sweep pass after reopening that takes longer than this fails even while it progresses. */
const SWEEP_LIMIT_MS = 120_000;

/** How long the child may take to reach its trigger before the round fails. */
const TRIGGER_TIMEOUT_MS = 60_000;

interface ChildRun {
  acknowledged: number;
  /** Per session: the record after its last acknowledged step, and that step. */
  states: Map<number, { record: SessionRecord | undefined; step: number }>;
  events: Set<ChildMessage['type']>;
  faults: string[];
  lock?: { id: string; expiresAt: number };
  killedAt: number;
}

function runChild(input: RoundInput): Promise<ChildRun> {
  const task: ChildTask = {
    store: input.spec.name,
    dir: input.dir,
    mode: input.mode,
    plan: input.plan,
    sessions: input.sessions,
    lanes: input.lanes,
    expiring: input.expiring,
    lockLeaseMs: input.spec.lockLeaseMs,
  };
  const run: ChildRun = {
    acknowledged: 0,
    states: new Map(),
    events: new Set(),
    faults: [],
    killedAt: 0,
  };
  return new Promise((resolve, reject) => {
    const child = fork(CHILD, [JSON.stringify(task)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      execArgv: [],
    });
    const kill = () => {
      if (run.killedAt === 0) {
        run.killedAt = Date.now();
        child.kill('SIGKILL');
      }
    };
    const timeout = setTimeout(() => {
      run.faults.push(
        `the child never reached '${TRIGGER[input.mode]}' in ${TRIGGER_TIMEOUT_MS} ms`,
      );
      kill();
    }, TRIGGER_TIMEOUT_MS);
    child.on('message', (message: ChildMessage) => {
      run.events.add(message.type);
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
      if (message.type === TRIGGER[input.mode]) {
        clearTimeout(timeout);
        setTimeout(kill, input.killAfterMs);
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timeout);
      if (signal !== 'SIGKILL') run.faults.push(`the child exited by itself (code ${code})`);
      if (run.killedAt === 0) run.killedAt = Date.now();
      resolve(run);
    });
  });
}

function describe(record: SessionRecord | undefined): string {
  if (record === undefined) return 'absent';
  const header = new TextDecoder().decode(record.data.subarray(0, 24)).replace(/[^ -~]/g, '.');
  return `${header}… (${record.data.length} bytes, expiresAt ${record.expiresAt})`;
}

async function readAll(store: SessionStore): Promise<string[]> {
  const ids: string[] = [];
  for await (const id of store.ids()) ids.push(id);
  return ids;
}

/** Runs one round: fork, kill, reopen, check. Updates `input.survivors` with what it found. */
export async function crashRound(input: RoundInput): Promise<RoundOutcome> {
  const run = await runChild(input);
  const outcome: RoundOutcome = {
    mode: input.mode,
    acknowledged: run.acknowledged,
    checked: 0,
    lost: 0,
    corrupt: 0,
    failures: [...run.faults],
    recoveryMs: 0,
  };
  let store: SessionStore;
  try {
    store = await openForRole(input.spec.name, input.dir, 'checker');
  } catch (error) {
    outcome.failures.push(`reopening after the kill failed: ${String(error)}`);
    return outcome;
  }
  try {
    await check(store, input, run, outcome);
  } catch (error) {
    outcome.failures.push(`checking failed: ${String(error)}`);
  } finally {
    await store.close().catch((error) => outcome.failures.push(`close failed: ${String(error)}`));
  }
  return outcome;
}

async function check(
  store: SessionStore,
  input: RoundInput,
  run: ChildRun,
  outcome: RoundOutcome,
): Promise<void> {
  const { plan } = input;
  const cleared = run.events.has('cleared');
  const clearing = run.events.has('clearing');

  // The killed holder's lock frees within one lease; checked first, so the time counts only
  // the reopen and the wait.
  if (run.lock !== undefined) {
    outcome.lockLeaseMs = input.spec.lockLeaseMs;
    try {
      const lock = await store.locks.acquire(run.lock.id, {
        waitMs: input.spec.lockLeaseMs + 5_000,
        leaseMs: 5_000,
      });
      outcome.lockFreedMs = Date.now() - run.killedAt;
      await lock.release();
    } catch (error) {
      outcome.failures.push(
        `the killed holder's lock did not free within one lease: ${String(error)}`,
      );
    }
  }

  // A write probe: the recovery time is how long until the store takes writes again.
  const probeId = `${plan.prefix}probe`;
  const probe = { data: new Uint8Array([1, 2, 3]), expiresAt: plan.baseTime + 86_400_000 };
  await store.set(probeId, probe);
  outcome.recoveryMs = Date.now() - run.killedAt;

  const present = new Map<string, SessionRecord>();
  for (let index = 0; index < input.sessions; index++) {
    const id = sessionId(plan, index);
    const acked = run.states.get(index);
    const candidates: (SessionRecord | undefined)[] = [];
    if (cleared) {
      candidates.push(undefined);
    } else {
      candidates.push(acked?.record);
      // Clearing removes records one by one; any may be gone.
      if (clearing) candidates.push(undefined);
      // The one step in flight when the child died may or may not have landed.
      else
        candidates.push(
          operation(plan, index, acked === undefined ? 0 : acked.step + 1, acked?.record).after,
        );
    }
    let actual: SessionRecord | undefined;
    try {
      actual = await store.get(id);
    } catch (error) {
      if (isSessionError(error) && error.code === 'ERR_CORRUPT_RECORD') {
        outcome.corrupt++;
        outcome.failures.push(`${id} is corrupt: ${error.message}`);
      } else {
        outcome.failures.push(`get(${id}) rejected: ${String(error)}`);
      }
      continue;
    }
    if (acked !== undefined) outcome.checked++;
    if (actual !== undefined) present.set(id, actual);
    if (candidates.some((candidate) => sameRecord(actual, candidate))) continue;
    outcome.lost++;
    outcome.failures.push(
      `${id}: found ${describe(actual)}; acknowledged step ${acked?.step ?? 'none'} left ${describe(acked?.record)}`,
    );
  }

  for (const [id, expected] of input.survivors) {
    const candidates = cleared ? [undefined] : clearing ? [expected, undefined] : [expected];
    let actual: SessionRecord | undefined;
    try {
      actual = await store.get(id);
    } catch (error) {
      outcome.failures.push(`earlier round's ${id}: ${String(error)}`);
      continue;
    }
    if (actual !== undefined) present.set(id, actual);
    if (candidates.some((candidate) => sameRecord(actual, candidate))) continue;
    outcome.lost++;
    outcome.failures.push(
      `earlier round's ${id}: found ${describe(actual)}, expected ${describe(expected)}`,
    );
  }

  // Expired means absent; ids() lists exactly what get() returns, and count() agrees.
  const ids = await readAll(store);
  const count = await store.count();
  if (count !== ids.length)
    outcome.failures.push(`count() is ${count}, ids() listed ${ids.length}`);
  const listed = new Set(ids);
  if (listed.size !== ids.length) outcome.failures.push('ids() listed an id twice');
  present.set(probeId, probe);
  for (const id of present.keys()) {
    if (!listed.has(id)) outcome.failures.push(`ids() does not list ${id}, which get() returns`);
  }
  for (const id of listed) {
    if (!present.has(id)) outcome.failures.push(`ids() lists ${id}, which get() does not return`);
  }
  present.delete(probeId);

  // Sweep still finishes, and never stalls: a killed sweeper's lease may hold it off for one
  // lease, and a starved process (niced, at load 20) scans only a few hundred entries a second.
  const sweepStarted = Date.now();
  let sweepProgressAt = sweepStarted;
  const sweeps = { calls: 0, idle: 0, scanned: 0, removed: 0 };
  for (;;) {
    const result = await store.sweep({ limit: 500 });
    sweeps.calls++;
    sweeps.scanned += result.scanned;
    sweeps.removed += result.removed;
    if (result.done) break;
    if (result.scanned > 0) sweepProgressAt = Date.now();
    const stalled = Date.now() - sweepProgressAt > SWEEP_STALL_MS;
    if (stalled || Date.now() - sweepStarted > SWEEP_LIMIT_MS) {
      outcome.failures.push(
        `sweep() did not report done: ${stalled ? `no entry scanned for ${SWEEP_STALL_MS / 1000} s` : `not within ${SWEEP_LIMIT_MS / 1000} s`} ` +
          `(${sweeps.calls} calls, ${sweeps.idle} of them scanning nothing; ${sweeps.scanned} ` +
          `entries scanned, ${sweeps.removed} removed; ${(await readAll(store)).length} records listed)`,
      );
      break;
    }
    if (result.scanned === 0) {
      sweeps.idle++;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  const after = await store.count();
  if (after !== count)
    outcome.failures.push(`sweep removed live records: count ${count} → ${after}`);

  const lock = await store.locks.acquire(probeId, { waitMs: 5_000, leaseMs: 5_000 });
  const fenced = { data: new Uint8Array([4, 5, 6]), expiresAt: probe.expiresAt };
  await store.set(probeId, fenced, { lock });
  await lock.release();
  if (!sameRecord(await store.get(probeId), fenced)) {
    outcome.failures.push('a fenced write after reopening did not read back');
  }
  await store.delete(probeId);

  input.survivors.clear();
  for (const [id, record] of present) input.survivors.set(id, record);
}
