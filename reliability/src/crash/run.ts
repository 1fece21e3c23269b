import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SessionRecord } from '@sessile/core';
import type { Profile } from '../profile.js';
import { between, seededRandom } from '../random.js';
import { openForRole, type StoreSpec } from '../stores.js';
import { discardChild, prepareChild } from './parent.js';
import type { CrashMode } from './protocol.js';
import { crashRound, PHASES, type Phase, type RoundOutcome } from './round.js';
import { verifySurvivors } from './survivors.js';

/** Kill delays after each mode's trigger, in ms: wide for writes, short for a quick clear(). */
const KILL_AFTER_MS: Record<CrashMode, [number, number]> = {
  writes: [10, 400],
  sweep: [0, 120],
  clear: [0, 40],
  lock: [0, 150],
};

export interface StoreCrashSummary {
  store: string;
  promise: string;
  skipped?: string;
  rounds: Record<CrashMode, number>;
  acknowledged: number;
  checked: number;
  lost: number;
  corrupt: number;
  /** Every failure of every round, prefixed with its round. */
  failures: string[];
  recoveryMs: number[];
  lockFreedMs: number[];
  lockLeaseMs: number;
  seed: number;
  /** Wall time of the store's crash rounds, checks included. */
  durationMs?: number;
  /** The rounds `durationMs` counts, when results merged from several runs did not all time theirs. */
  timedRounds?: number;
  /**
   * Rounds whose figures were carried over as totals (no per-round recovery or lock times),
   * from a report whose results files are not kept.
   */
  carriedRounds?: number;
  /** The rounds' wall time by phase, summed over the rounds. */
  phaseMs?: Partial<Record<Phase, number>>;
  /** Clearing the store between rounds (see `Profile.keepRecords`), summed. */
  resetMs?: number;
}

export interface CrashRunOptions {
  profile: Profile;
  seed: number;
  onRound?(store: string, round: number, total: number, outcome: RoundOutcome): void;
}

/** Runs the profile's crash rounds against one store, in one directory, rounds interleaved. */
export async function runCrashes(
  spec: StoreSpec,
  options: CrashRunOptions,
): Promise<StoreCrashSummary> {
  const { profile, seed } = options;
  const summary: StoreCrashSummary = {
    store: spec.name,
    promise: spec.promise,
    rounds: { writes: 0, sweep: 0, clear: 0, lock: 0 },
    acknowledged: 0,
    checked: 0,
    lost: 0,
    corrupt: 0,
    failures: [],
    recoveryMs: [],
    lockFreedMs: [],
    lockLeaseMs: spec.lockLeaseMs,
    seed,
    phaseMs: Object.fromEntries(PHASES.map((phase) => [phase, 0])),
    resetMs: 0,
  };
  if (spec.skip !== undefined) {
    summary.skipped = spec.skip;
    return summary;
  }
  const started = Date.now();
  const random = seededRandom(seed);
  const modes: CrashMode[] = [];
  for (const mode of Object.keys(profile.crashes) as CrashMode[]) {
    for (let n = 0; n < profile.crashes[mode]; n++) modes.push(mode);
  }
  // Interleave the modes so a sweep or clear crash lands on data earlier crashes left.
  for (let n = modes.length - 1; n > 0; n--) {
    const other = between(random, 0, n);
    [modes[n], modes[other]] = [modes[other] as CrashMode, modes[n] as CrashMode];
  }
  const dir = await mkdtemp(join(tmpdir(), `sessile-crash-${spec.name}-`));
  const survivors = new Map<string, SessionRecord>();
  let failedBefore = false;
  let survivorsRead = true;
  let next = prepareChild(spec.name);
  try {
    for (const [round, mode] of modes.entries()) {
      // After a failed round the records it left are not known exactly: start clean, so one
      // failure is reported once and not again by every later round.
      if (survivors.size > profile.keepRecords || failedBefore) {
        const resetStarted = Date.now();
        const store = await openForRole(spec.name, dir, 'checker');
        try {
          // Records no round has read back since they were last written are read before they go.
          if (!survivorsRead) {
            const found = await verifySurvivors(store, survivors, 'kept');
            summary.lost += found.lost;
            summary.corrupt += found.corrupt;
            for (const failure of found.failures)
              summary.failures.push(`before clearing at round ${round}: ${failure}`);
          }
          await store.clear();
        } finally {
          await store.close();
        }
        survivors.clear();
        summary.resetMs = (summary.resetMs ?? 0) + Date.now() - resetStarted;
      }
      const child = next;
      const [min, max] = KILL_AFTER_MS[mode];
      const outcome = await crashRound({
        spec,
        dir,
        mode,
        plan: {
          seed: between(random, 0, 2 ** 31),
          prefix: `r${String(round).padStart(4, '0')}-crash-session-`,
          baseTime: Date.now(),
        },
        sessions: profile.sessions,
        lanes: profile.lanes,
        expiring: profile.expiring,
        killAfterMs: between(random, min, max),
        survivors,
        checkSurvivors: round % profile.survivorCheckEvery === 0 || round === modes.length - 1,
        child,
        prepareNext() {
          if (round < modes.length - 1) next = prepareChild(spec.name);
        },
      });
      failedBefore = outcome.failures.length > 0;
      survivorsRead = outcome.survivorsRead;
      summary.rounds[mode]++;
      summary.acknowledged += outcome.acknowledged;
      summary.checked += outcome.checked;
      summary.lost += outcome.lost;
      summary.corrupt += outcome.corrupt;
      summary.recoveryMs.push(outcome.recoveryMs);
      for (const phase of PHASES) {
        const phases = summary.phaseMs as Partial<Record<Phase, number>>;
        phases[phase] = (phases[phase] ?? 0) + outcome.phaseMs[phase];
      }
      if (outcome.lockFreedMs !== undefined) summary.lockFreedMs.push(outcome.lockFreedMs);
      for (const failure of outcome.failures)
        summary.failures.push(`round ${round} (${mode}): ${failure}`);
      options.onRound?.(spec.name, round + 1, modes.length, outcome);
    }
  } finally {
    await discardChild(next);
    await spec.cleanup?.(dir).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
  summary.durationMs = Date.now() - started;
  return summary;
}
