import type { Target } from './adapter.js';
import { describeEnvironment, type Environment } from './environment.js';
import { describeError, TimeoutError, withTimeLimit } from './measure.js';
import type { Profile } from './profile.js';
import { TARGETS } from './targets/index.js';
import { cleanupUnderLoad } from './workloads/cleanup.js';
import { SharedStore, TempDirs, type Workload } from './workloads/context.js';
import { httpEndToEnd } from './workloads/http.js';
import {
  contention,
  createEmpty,
  createPreloaded,
  growth,
  mixed,
  read,
  readMissing,
} from './workloads/ops.js';

/** Workloads that work on the one store per target that `SharedStore` keeps open between them. */
const SHARED_STORE_WORKLOADS = new Set([
  'create',
  'create-preloaded',
  'read',
  'read-missing',
  'mixed',
]);

/** Every workload, in run order; create, read and mixed share one opened store per target. */
export const WORKLOADS: readonly Workload[] = [
  createEmpty,
  createPreloaded,
  read,
  readMissing,
  mixed,
  growth,
  contention,
  cleanupUnderLoad,
  httpEndToEnd,
];

export type Outcome =
  | {
      status: 'ok';
      /** Field-wise median over the repeats (nested series from the median run). */
      result: Record<string, unknown>;
      /** [min, max] of each numeric field over the repeats. */
      spread: Record<string, [number, number]>;
      runs: Record<string, unknown>[];
    }
  | { status: 'unavailable' | 'timed out' | 'failed' | 'skipped'; reason: string };

export interface TargetInfo {
  name: string;
  kind: Target['kind'];
  description: string;
  durability: string;
  engine?: string;
  peers?: string[];
  cleanup?: string;
  status: 'ok' | 'unavailable';
  reason?: string;
}

export interface BenchResults {
  schema: 1;
  profile: Profile;
  repeat: number;
  environment: Environment;
  startedAt: string;
  finishedAt: string;
  durationSec: number;
  targets: TargetInfo[];
  workloads: { name: string; title: string; description: string; primary: Workload['primary'] }[];
  /** results[workload][target] */
  results: Record<string, Record<string, Outcome>>;
}

export interface ProgressSink {
  plan(steps: { target: string; workload: string; estimateMs: number }[]): void;
  start(target: string, workload: string, round: number): void;
  finish(target: string, workload: string, outcome: string): void;
  end(): void;
}

export interface RunOptions {
  profile: Profile;
  stores?: readonly string[];
  workloads?: readonly string[];
  repeat?: number;
  progress?: ProgressSink;
}

function skipReason(workload: Workload, target: Target): string | undefined {
  const only = target.onlyWorkloads;
  if (only !== undefined && !only.names.includes(workload.name)) return only.reason;
  return workload.skipReason?.(target);
}

/** A rough guess of each workload's wall time, for the progress display's estimate. */
function estimateMs(workload: Workload, profile: Profile): number {
  switch (workload.name) {
    case 'growth':
      return profile.limitsMs.growth * 0.5;
    case 'cleanup':
      return (
        (profile.cleanup.triggerEveryRequests / profile.cleanup.requestsPerSec) * 1000 +
        profile.cleanup.afterMs +
        4000
      );
    case 'http':
      return profile.http.durationSec * 2000 + 3000;
    case 'contention':
      return 1000;
    default:
      return profile.opsDurationMs + 1500;
  }
}

function select<T extends { name: string }>(
  all: readonly T[],
  names: readonly string[] | undefined,
  kind: string,
): T[] {
  if (names === undefined || names.length === 0) return [...all];
  const unknown = names.filter((name) => !all.some((item) => item.name === name));
  if (unknown.length > 0) {
    throw new TypeError(
      `unknown ${kind}: ${unknown.join(', ')} (known: ${all.map((item) => item.name).join(', ')})`,
    );
  }
  return all.filter((item) => names.includes(item.name));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** Field-wise medians of the numeric top-level fields; everything else from the median run. */
export function summarizeRuns(
  runs: Record<string, unknown>[],
  primaryField: string,
): { result: Record<string, unknown>; spread: Record<string, [number, number]> } {
  const primaryOf = (run: Record<string, unknown>) =>
    typeof run[primaryField] === 'number' ? (run[primaryField] as number) : 0;
  const byPrimary = [...runs].sort((a, b) => primaryOf(a) - primaryOf(b));
  const medianRun = byPrimary[Math.floor((byPrimary.length - 1) / 2)] ?? {};
  const result: Record<string, unknown> = { ...medianRun };
  const spread: Record<string, [number, number]> = {};
  for (const [key, value] of Object.entries(medianRun)) {
    if (typeof value !== 'number') continue;
    const values = runs.map((run) => run[key]).filter((v): v is number => typeof v === 'number');
    result[key] = Math.round(median(values) * 1000) / 1000;
    spread[key] = [Math.min(...values), Math.max(...values)];
  }
  return { result, spread };
}

/**
 * Runs every selected workload against every selected target, side by side in one process, and
 * returns the results. A target that cannot run, times out or fails is recorded as such and the
 * run goes on.
 */
export async function runBenchmarks(options: RunOptions): Promise<BenchResults> {
  const { profile } = options;
  const repeat = Math.max(1, options.repeat ?? 1);
  const targets = select(TARGETS, options.stores, 'store');
  const workloads = select(WORKLOADS, options.workloads, 'workload');
  const started = new Date();
  const environment = describeEnvironment();
  const dirs = new TempDirs();
  environment.spreadTempDirs = (await dirs.root()).spread;
  const results: Record<string, Record<string, Outcome>> = {};
  for (const workload of workloads) results[workload.name] = {};
  const unavailable = new Map<string, string>();
  const cleanupNotes = new Map<string, string>();

  // Workload by workload, every target in turn: the targets a ratio compares are measured
  // minutes apart at most, so a burst of load on the machine skews fewer of them.
  const steps = [];
  for (let round = 0; round < repeat; round++) {
    for (const workload of workloads) {
      for (const target of targets) {
        if (skipReason(workload, target) === undefined) {
          steps.push({
            target: target.name,
            workload: workload.name,
            estimateMs: estimateMs(workload, profile),
          });
        }
      }
    }
  }
  options.progress?.plan(steps);

  const runs = new Map<string, Record<string, unknown>[]>();
  const failures = new Map<string, Outcome>();
  const lastSharedWorkload = workloads
    .filter((workload) => SHARED_STORE_WORKLOADS.has(workload.name))
    .pop();
  try {
    for (let round = 0; round < repeat; round++) {
      const sharedStores = new Map(
        targets.map((target) => [target.name, new SharedStore(target, dirs)]),
      );
      for (const workload of workloads) {
        for (const target of targets) {
          const shared = sharedStores.get(target.name) as SharedStore;
          const key = `${workload.name}\u0000${target.name}`;
          const skip = skipReason(workload, target);
          if (skip !== undefined) {
            failures.set(key, { status: 'skipped', reason: skip });
            continue;
          }
          const gone = unavailable.get(target.name);
          if (gone !== undefined || failures.get(key)?.status === 'timed out') {
            options.progress?.finish(
              target.name,
              workload.name,
              gone === undefined ? 'timed out before' : 'unavailable',
            );
            continue;
          }
          options.progress?.start(target.name, workload.name, round);
          let outcome: string;
          try {
            const result = await withTimeLimit(workload.limitMs(profile), (signal) =>
              workload.run({ target, profile, signal, dirs, shared }),
            );
            const list = runs.get(key) ?? [];
            list.push(result as Record<string, unknown>);
            runs.set(key, list);
            if (workload.name === 'cleanup')
              cleanupNotes.set(target.name, String((result as { method: string }).method));
            outcome = 'ok';
          } catch (error) {
            if ((error as Error).name === 'Unavailable' && workload.name === 'http') {
              // Missing middleware makes only this workload unavailable, not the store.
              failures.set(key, { status: 'unavailable', reason: (error as Error).message });
              outcome = `unavailable: ${(error as Error).message}`;
            } else if ((error as Error).name === 'Unavailable') {
              unavailable.set(target.name, (error as Error).message);
              outcome = `unavailable: ${(error as Error).message}`;
            } else if (error instanceof TimeoutError) {
              failures.set(key, { status: 'timed out', reason: error.message });
              await shared.discard(false);
              outcome = error.message;
            } else {
              failures.set(key, { status: 'failed', reason: describeError(error) });
              await shared.discard(false);
              outcome = `failed: ${describeError(error)}`;
            }
          }
          options.progress?.finish(target.name, workload.name, outcome);
          // Close each shared store once its last workload is done, so it does no background work while others are measured.
          if (workload === lastSharedWorkload) await shared.discard();
        }
      }
      for (const shared of sharedStores.values()) await shared.discard();
    }
  } finally {
    options.progress?.end();
    await dirs.removeAll();
  }

  for (const workload of workloads) {
    const table = results[workload.name] as Record<string, Outcome>;
    for (const target of targets) {
      const key = `${workload.name}\u0000${target.name}`;
      const done = runs.get(key);
      const gone = unavailable.get(target.name);
      if (done !== undefined && done.length > 0) {
        table[target.name] = {
          status: 'ok',
          ...summarizeRuns(done, workload.primary.field),
          runs: done,
        };
      } else if (failures.has(key)) {
        table[target.name] = failures.get(key) as Outcome;
      } else {
        table[target.name] = { status: 'unavailable', reason: gone ?? 'did not run' };
      }
    }
  }

  const finished = new Date();
  return {
    schema: 1,
    profile,
    repeat,
    environment,
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationSec: Math.round((finished.getTime() - started.getTime()) / 1000),
    targets: targets.map((target) => {
      const reason = unavailable.get(target.name);
      const cleanup = cleanupNotes.get(target.name);
      return {
        name: target.name,
        kind: target.kind,
        description: target.description,
        durability: target.durability,
        ...(target.engine === undefined ? {} : { engine: target.engine }),
        ...(target.peers === undefined ? {} : { peers: target.peers }),
        ...(cleanup === undefined ? {} : { cleanup }),
        status: reason === undefined ? 'ok' : 'unavailable',
        ...(reason === undefined ? {} : { reason }),
      };
    }),
    workloads: workloads.map(({ name, title, description, primary }) => ({
      name,
      title,
      description,
      primary,
    })),
    results,
  };
}
