import type { Phase } from './crash/round.js';
import type { StoreCrashSummary } from './crash/run.js';

/** One check of a non-crash run (fuzzing, full disk, hostile environment): what held, what not. */
export interface CheckOutcome {
  /** What was run, e.g. `file: record bytes`. */
  name: string;
  /** Cases tried (fuzz runs, writes). */
  cases: number;
  failures: string[];
  /** Why the check did not run, when it did not. */
  skipped?: string;
  notes?: string[];
}

export interface ReliabilityResults {
  schema: 1;
  environment: {
    date: string;
    node: string;
    platform: string;
    cores: number;
    loadAverage: number[];
  };
  profile: string;
  seed: number;
  durationMs: number;
  crash: StoreCrashSummary[];
  fuzz: CheckOutcome[];
  disk: CheckOutcome[];
  hostile: CheckOutcome[];
  servers: CheckOutcome[];
  http: CheckOutcome[];
}

/** Every failure of a run, each prefixed with where it came from. */
export function allFailures(results: ReliabilityResults): string[] {
  return [
    ...results.crash.flatMap((store) => store.failures.map((f) => `crash ${store.store}: ${f}`)),
    ...[
      ...results.fuzz,
      ...results.disk,
      ...results.hostile,
      ...results.servers,
      ...results.http,
    ].flatMap((check) => check.failures.map((f) => `${check.name}: ${f}`)),
  ];
}

export function roundsOf(summary: StoreCrashSummary): number {
  return Object.values(summary.rounds).reduce((sum, n) => sum + n, 0);
}

/** One summary per store: the rounds of several runs on it add up, and the times of those timed. */
function mergeCrashes(summaries: StoreCrashSummary[]): StoreCrashSummary[] {
  const byStore = new Map<string, StoreCrashSummary>();
  for (const summary of summaries) {
    const seen = byStore.get(summary.store);
    if (seen === undefined) {
      byStore.set(summary.store, {
        ...summary,
        rounds: { ...summary.rounds },
        phaseMs: { ...summary.phaseMs },
      });
      continue;
    }
    for (const [phase, spent] of Object.entries(summary.phaseMs ?? {}) as [Phase, number][]) {
      seen.phaseMs = { ...seen.phaseMs, [phase]: (seen.phaseMs?.[phase] ?? 0) + spent };
    }
    if (summary.resetMs !== undefined) seen.resetMs = (seen.resetMs ?? 0) + summary.resetMs;
    for (const mode of Object.keys(seen.rounds) as (keyof typeof seen.rounds)[]) {
      seen.rounds[mode] += summary.rounds[mode];
    }
    seen.acknowledged += summary.acknowledged;
    seen.checked += summary.checked;
    seen.lost += summary.lost;
    seen.corrupt += summary.corrupt;
    seen.failures = [...seen.failures, ...summary.failures];
    seen.recoveryMs = [...seen.recoveryMs, ...summary.recoveryMs];
    seen.lockFreedMs = [...seen.lockFreedMs, ...summary.lockFreedMs];
    if (summary.carriedRounds !== undefined)
      seen.carriedRounds = (seen.carriedRounds ?? 0) + summary.carriedRounds;
  }
  for (const merged of byStore.values()) {
    const timed = summaries.filter(
      (summary) => summary.store === merged.store && summary.durationMs !== undefined,
    );
    merged.durationMs =
      timed.length === 0 ? undefined : timed.reduce((sum, s) => sum + (s.durationMs ?? 0), 0);
    merged.timedRounds = timed.reduce((sum, s) => sum + (s.timedRounds ?? roundsOf(s)), 0);
  }
  return [...byStore.values()];
}

/**
 * A run's crash summaries. Results written before summaries carried their time still give it
 * when the run did nothing but one store's crash rounds: then the run's time is theirs.
 */
function crashesTimed(run: ReliabilityResults): StoreCrashSummary[] {
  const [only, ...others] = run.crash;
  const otherParts = [run.fuzz, run.disk, run.hostile, run.servers ?? [], run.http ?? []];
  if (only === undefined || others.length > 0 || only.durationMs !== undefined) return run.crash;
  if (only.carriedRounds !== undefined) return run.crash;
  if (otherParts.some((checks) => checks.length > 0)) return run.crash;
  return [{ ...only, durationMs: run.durationMs }];
}

/** One report from runs split across processes: the first run's environment, every figure. */
export function mergeResults(runs: ReliabilityResults[]): ReliabilityResults {
  const [first] = runs;
  if (first === undefined) throw new TypeError('nothing to merge');
  const profiles = [...new Set(runs.map((run) => run.profile))];
  return {
    ...first,
    profile: profiles.join('; '),
    seed: first.seed,
    durationMs: Math.max(...runs.map((run) => run.durationMs)),
    crash: mergeCrashes(runs.flatMap(crashesTimed)),
    fuzz: runs.flatMap((run) => run.fuzz),
    disk: runs.flatMap((run) => run.disk),
    hostile: runs.flatMap((run) => run.hostile),
    servers: runs.flatMap((run) => run.servers ?? []),
    http: runs.flatMap((run) => run.http ?? []),
  };
}
