import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SessionRecord } from '@sessile/core';
import type { Profile } from '../profile.js';
import { between, seededRandom } from '../random.js';
import { openForRole, type StoreSpec } from '../stores.js';
import type { CrashMode } from './protocol.js';
import { crashRound, type RoundOutcome } from './round.js';

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
  try {
    for (const [round, mode] of modes.entries()) {
      // After a failed round the records it left are not known exactly: start clean, so one
      // failure is reported once and not again by every later round.
      if (survivors.size > profile.keepRecords || failedBefore) {
        const store = await openForRole(spec.name, dir, 'checker');
        await store.clear();
        await store.close();
        survivors.clear();
      }
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
      });
      failedBefore = outcome.failures.length > 0;
      summary.rounds[mode]++;
      summary.acknowledged += outcome.acknowledged;
      summary.checked += outcome.checked;
      summary.lost += outcome.lost;
      summary.corrupt += outcome.corrupt;
      summary.recoveryMs.push(outcome.recoveryMs);
      if (outcome.lockFreedMs !== undefined) summary.lockFreedMs.push(outcome.lockFreedMs);
      for (const failure of outcome.failures)
        summary.failures.push(`round ${round} (${mode}): ${failure}`);
      options.onRound?.(spec.name, round + 1, modes.length, outcome);
    }
  } finally {
    await spec.cleanup?.(dir).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
  summary.durationMs = Date.now() - started;
  return summary;
}
