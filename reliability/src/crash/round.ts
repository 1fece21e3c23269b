import type { SessionRecord, SessionStore } from '@sessile/core';
import { isSessionError } from '@sessile/core';
import { openForRole, type StoreSpec } from '../stores.js';
import { type ChildRun, type PreparedChild, runChild } from './parent.js';
import type { CrashMode } from './protocol.js';
import { CHECK_CONCURRENCY, describeRecord, forEachLimited, verifySurvivors } from './survivors.js';
import { operation, type RoundPlan, sameRecord, sessionId } from './workload.js';

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
  /** Whether the records of earlier rounds were read back (see `RoundInput.checkSurvivors`). */
  survivorsRead: boolean;
  /** Where the round's wall time went, in ms, by phase (see `PHASES`). */
  phaseMs: Record<Phase, number>;
}

/**
 * A round's phases: waiting for the prepared child to load (when the previous round's checks
 * did not cover it), its store's open, its run up to the trigger (writes of a clear round,
 * expiring records of a sweep round), the random wait before the kill, the kill until the exit
 * is seen, the reopen, and each check.
 */
export const PHASES = [
  'load',
  'start',
  'toTrigger',
  'toKill',
  'exit',
  'reopen',
  'lock',
  'sessions',
  'survivors',
  'list',
  'sweep',
  'fenced',
  'close',
] as const;
export type Phase = (typeof PHASES)[number];

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
  /**
   * Whether to read every earlier round's record back. When false, ids() must still list each
   * one (so none may vanish), and the next round that reads them back compares their bytes.
   */
  checkSurvivors: boolean;
  /** The child that writes this round, forked and loaded ahead of it. */
  child: PreparedChild;
  /**
   * Called once, as soon as the child has opened the store (or, when it never did, once it is
   * dead): the time to fork the next round's child, which loads while this round runs.
   */
  prepareNext?(): void;
}

/** A sweep that scans no entry for this long after reopening has stalled. */
const SWEEP_STALL_MS = 15_000;
/** A sweep pass after reopening that takes longer than this fails even while it progresses. */
const SWEEP_LIMIT_MS = 120_000;
/** Waits between sweep calls that scanned nothing (another sweeper's lease): from 5 to 100 ms. */
const SWEEP_IDLE_MS = [5, 100] as const;

async function readAll(store: SessionStore): Promise<string[]> {
  const ids: string[] = [];
  for await (const id of store.ids()) ids.push(id);
  return ids;
}

/** Runs one round: fork, kill, reopen, check. Updates `input.survivors` with what it found. */
export async function crashRound(input: RoundInput): Promise<RoundOutcome> {
  let prepared = false;
  const prepareNext = () => {
    if (prepared) return;
    prepared = true;
    input.prepareNext?.();
  };
  const run = await runChild(input.child, {
    task: {
      store: input.spec.name,
      dir: input.dir,
      mode: input.mode,
      plan: input.plan,
      sessions: input.sessions,
      lanes: input.lanes,
      expiring: input.expiring,
      lockLeaseMs: input.spec.lockLeaseMs,
    },
    plan: input.plan,
    killAfterMs: input.killAfterMs,
    onReady: prepareNext,
  });
  prepareNext();
  const phaseMs = Object.fromEntries(PHASES.map((phase) => [phase, 0])) as Record<Phase, number>;
  const readyAt = run.readyAt || run.killedAt;
  const triggeredAt = run.triggeredAt || run.killedAt;
  phaseMs.load = run.goAt - run.waitedAt;
  phaseMs.start = readyAt - run.goAt;
  phaseMs.toTrigger = triggeredAt - readyAt;
  phaseMs.toKill = run.killedAt - triggeredAt;
  phaseMs.exit = run.exitedAt - run.killedAt;
  const outcome: RoundOutcome = {
    mode: input.mode,
    acknowledged: run.acknowledged,
    checked: 0,
    lost: 0,
    corrupt: 0,
    failures: [...run.faults],
    recoveryMs: 0,
    survivorsRead: false,
    phaseMs,
  };
  const mark = phaseClock(phaseMs);
  let store: SessionStore;
  try {
    store = await openForRole(input.spec.name, input.dir, 'checker');
  } catch (error) {
    outcome.failures.push(`reopening after the kill failed: ${String(error)}`);
    return outcome;
  } finally {
    mark('reopen');
  }
  try {
    await check(store, input, run, outcome, mark);
  } catch (error) {
    outcome.failures.push(`checking failed: ${String(error)}`);
  } finally {
    mark('fenced');
    await store.close().catch((error) => outcome.failures.push(`close failed: ${String(error)}`));
    mark('close');
  }
  return outcome;
}

/** Adds the time since the previous mark to `phase`. */
function phaseClock(phaseMs: Record<Phase, number>): (phase: Phase) => void {
  let last = Date.now();
  return (phase) => {
    const now = Date.now();
    phaseMs[phase] += now - last;
    last = now;
  };
}

async function check(
  store: SessionStore,
  input: RoundInput,
  run: ChildRun,
  outcome: RoundOutcome,
  mark: (phase: Phase) => void,
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

  mark('lock');

  // A write probe: the recovery time is how long until the store takes writes again.
  const probeId = `${plan.prefix}probe`;
  const probe = { data: new Uint8Array([1, 2, 3]), expiresAt: plan.baseTime + 86_400_000 };
  await store.set(probeId, probe);
  outcome.recoveryMs = Date.now() - run.killedAt;

  const present = new Map<string, SessionRecord>();
  await forEachLimited(
    Array.from({ length: input.sessions }, (_, index) => index),
    CHECK_CONCURRENCY,
    async (index) => {
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
        return;
      }
      if (acked !== undefined) outcome.checked++;
      if (actual !== undefined) present.set(id, actual);
      if (candidates.some((candidate) => sameRecord(actual, candidate))) return;
      outcome.lost++;
      outcome.failures.push(
        `${id}: found ${describeRecord(actual)}; acknowledged step ${acked?.step ?? 'none'} left ${describeRecord(acked?.record)}`,
      );
    },
  );

  mark('sessions');

  // Earlier rounds' records: read back in full when asked, after a clear, or once this round
  // has failed; otherwise ids() below must list each one, and a later round reads them.
  const unread = new Set<string>();
  if (input.checkSurvivors || clearing || outcome.failures.length > 0) {
    const found = await verifySurvivors(
      store,
      input.survivors,
      cleared ? 'gone' : clearing ? 'mayBeGone' : 'kept',
    );
    for (const [id, record] of found.present) present.set(id, record);
    outcome.survivorsRead = true;
    outcome.lost += found.lost;
    outcome.corrupt += found.corrupt;
    outcome.failures.push(...found.failures);
  } else {
    for (const [id, record] of input.survivors) {
      present.set(id, record);
      unread.add(id);
    }
  }

  mark('survivors');

  // Expired means absent; ids() lists exactly what get() returns, and count() agrees.
  const ids = await readAll(store);
  const count = await store.count();
  if (count !== ids.length)
    outcome.failures.push(`count() is ${count}, ids() listed ${ids.length}`);
  const listed = new Set(ids);
  if (listed.size !== ids.length) outcome.failures.push('ids() listed an id twice');
  present.set(probeId, probe);
  for (const id of present.keys()) {
    if (listed.has(id)) continue;
    if (unread.has(id)) {
      outcome.lost++;
      outcome.failures.push(`ids() does not list earlier round's ${id}`);
    } else outcome.failures.push(`ids() does not list ${id}, which get() returns`);
  }
  for (const id of listed) {
    if (!present.has(id)) outcome.failures.push(`ids() lists ${id}, which get() does not return`);
  }
  present.delete(probeId);

  mark('list');

  // Sweep still finishes, and never stalls: a killed sweeper's lease may hold it off for one
  // lease, and a starved process (niced, at load 20) scans only a few hundred entries a second.
  const sweepStarted = Date.now();
  let sweepProgressAt = sweepStarted;
  const sweeps = { calls: 0, idle: 0, scanned: 0, removed: 0 };
  let idleMs = SWEEP_IDLE_MS[0] / 2;
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
      idleMs = Math.min(SWEEP_IDLE_MS[1], idleMs * 2);
      await new Promise((resolve) => setTimeout(resolve, idleMs));
    } else idleMs = SWEEP_IDLE_MS[0] / 2;
  }
  const after = await store.count();
  if (after !== count)
    outcome.failures.push(`sweep removed live records: count ${count} → ${after}`);

  mark('sweep');

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
