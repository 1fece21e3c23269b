import type { Target } from './adapter.js';
import { describeEnvironment } from './environment.js';
import { describeError, median, TimeoutError, withTimeLimit } from './measure.js';
import type { Profile } from './profile.js';
import type {
  BenchResults,
  NotMeasured,
  Outcome,
  ResultsByWorkload,
  Spread,
  WorkloadName,
  WorkloadRegistry,
  WorkloadResults,
} from './results.js';
import { TARGETS } from './targets/index.js';
import { cleanupUnderLoad } from './workloads/cleanup.js';
import {
  type NumericField,
  SharedStore,
  TempDirs,
  type Workload,
  type WorkloadContext,
} from './workloads/context.js';
import { copyWorkload } from './workloads/copy.js';
import { httpEndToEnd } from './workloads/http.js';
import { httpFrameworks } from './workloads/http-frameworks.js';
import { lockFlood } from './workloads/lock-flood.js';
import { lockFloodHttp } from './workloads/lock-flood-http.js';
import {
  contention,
  createAfterDeletes,
  createEmpty,
  createPreloaded,
  growth,
  mixed,
  read,
  readMissing,
} from './workloads/ops.js';
import { ownersWorkload } from './workloads/owners.js';

/**
 * Every workload, in run order; read, read-missing and mixed share one opened store per target,
 * holding the preload (the create workloads throw theirs away).
 */
const REGISTRY: WorkloadRegistry = {
  create: createEmpty,
  'create-preloaded': createPreloaded,
  read,
  'read-missing': readMissing,
  mixed,
  'create-after-deletes': createAfterDeletes,
  growth,
  contention,
  'lock-flood': lockFlood,
  'lock-flood-http': lockFloodHttp,
  cleanup: cleanupUnderLoad,
  http: httpEndToEnd,
  'http-frameworks': httpFrameworks,
  copy: copyWorkload,
  owners: ownersWorkload,
};

export const WORKLOADS: readonly WorkloadRegistry[WorkloadName][] = Object.values(REGISTRY);

/** Workloads that work on the one store per target that `SharedStore` keeps open between them. */
const SHARED_STORE_WORKLOADS = new Set<WorkloadName>([
  'create',
  'create-preloaded',
  'read',
  'read-missing',
  'mixed',
  'create-after-deletes',
]);

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

type AnyWorkload = WorkloadRegistry[WorkloadName];

function skipReason(workload: AnyWorkload, target: Target): string | undefined {
  const only = target.onlyWorkloads;
  if (only !== undefined && !only.names.includes(workload.name)) return only.reason;
  return workload.skipReason?.(target);
}

/** A rough guess of each workload's wall time, for the progress display's estimate. */
function estimateMs(workload: AnyWorkload, profile: Profile): number {
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
    case 'http-frameworks':
      return profile.http.durationSec * 5000 + 6000;
    case 'contention':
      return 1000;
    case 'lock-flood':
      return profile.lockFlood.uncontendedMs + profile.lockFlood.cycles * 2 + 1000;
    case 'lock-flood-http':
      return profile.lockFlood.cycles * 5 + 3000;
    case 'owners':
      return profile.owners.sessions / 10 + profile.opsDurationMs * 7.5;
    case 'copy':
      return profile.copySessions / 5 + 3000;
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

/** Field-wise medians of the numeric top-level fields; everything else from the median run. */
export function summarizeRuns<R extends object>(
  runs: readonly R[],
  primaryField: NumericField<R>,
): { result: R; spread: Spread } {
  const primaryOf = (run: R): number => {
    const value: unknown = run[primaryField];
    return typeof value === 'number' ? value : 0;
  };
  const byPrimary = [...runs].sort((a, b) => primaryOf(a) - primaryOf(b));
  const medianRun = byPrimary[Math.floor((byPrimary.length - 1) / 2)];
  if (medianRun === undefined) throw new RangeError('no runs to summarize');
  const medians: Record<string, number> = {};
  const spread: Record<string, [number, number]> = {};
  for (const [key, value] of Object.entries(medianRun)) {
    if (typeof value !== 'number') continue;
    const values = runs
      .map((run) => (run as Record<string, unknown>)[key])
      .filter((v): v is number => typeof v === 'number');
    medians[key] = Math.round(median(values) * 1000) / 1000;
    spread[key] = [Math.min(...values), Math.max(...values)];
  }
  return { result: { ...medianRun, ...medians }, spread };
}

/** Each workload's results so far, one list of runs per target. */
type RunsByWorkload = { [W in WorkloadName]?: Record<string, WorkloadResults[W][]> };

/** Runs workload `name` once on the context's target and files its result with the others. */
async function measure<W extends WorkloadName>(
  name: W,
  context: Omit<WorkloadContext, 'signal'>,
  runs: RunsByWorkload,
): Promise<void> {
  const workload: Workload<WorkloadResults[W], W> = REGISTRY[name];
  const result = await withTimeLimit(workload.limitMs(context.profile), (signal) =>
    workload.run({ ...context, signal }),
  );
  // Seen through `W` alone, the compiler can match each workload's runs with its name.
  const own: { [N in W]?: Record<string, WorkloadResults[N][]> } = runs;
  const byTarget = own[name] ?? {};
  byTarget[context.target.name] = [...(byTarget[context.target.name] ?? []), result];
  own[name] = byTarget;
}

/** Sums up workload `name` for every target: the median of its runs, or why there are none. */
function fileOutcomes<W extends WorkloadName>(
  name: W,
  targets: readonly Target[],
  runs: RunsByWorkload,
  failures: ReadonlyMap<string, NotMeasured>,
  unavailable: ReadonlyMap<string, string>,
  results: ResultsByWorkload,
): void {
  const workload: Workload<WorkloadResults[W], W> = REGISTRY[name];
  const table: Record<string, Outcome<WorkloadResults[W]>> = {};
  for (const target of targets) {
    const done = runs[name]?.[target.name];
    const failure = failures.get(stepKey(name, target.name));
    if (done !== undefined && done.length > 0) {
      table[target.name] = {
        status: 'ok',
        ...summarizeRuns(done, workload.primary.field),
        runs: done,
      };
    } else if (failure !== undefined) {
      table[target.name] = failure;
    } else {
      table[target.name] = {
        status: 'unavailable',
        reason: unavailable.get(target.name) ?? 'did not run',
      };
    }
  }
  const own: { [N in W]?: Record<string, Outcome<WorkloadResults[N]>> } = results;
  own[name] = table;
}

/**
 * The targets in the order a round runs them: each sessile store followed at once by what its
 * ratios compare it with (the same store behind `toExpressStore`, its raw engine, its peers),
 * then the next store. Both sides of a ratio are then measured seconds apart, not minutes, so a
 * burst of load on the machine moves both alike. Targets no store names keep their listed order.
 */
export function comparisonOrder(targets: readonly Target[]): Target[] {
  const byName = new Map(targets.map((target) => [target.name, target]));
  const order = new Set<Target>();
  const place = (name: string | undefined) => {
    const target = name === undefined ? undefined : byName.get(name);
    if (target !== undefined) order.add(target);
  };
  for (const target of targets) {
    if (order.has(target)) continue;
    order.add(target);
    for (const variant of targets) if (variant.viaExpressOf === target.name) order.add(variant);
    place(target.engine);
    for (const peer of target.peers ?? []) place(peer);
  }
  return [...order];
}

/**
 * The targets in the order a round runs them: as given in even rounds, reversed in odd ones. The
 * first target of a workload meets the process before the others have warmed up its shared code
 * (the JIT, the express-session bridge, the client libraries) and the store's directory cold, so
 * with several rounds each side of a comparison goes first in some of them.
 */
function roundOrder(targets: readonly Target[], round: number): readonly Target[] {
  return round % 2 === 0 ? targets : [...targets].reverse();
}

function stepKey(workload: WorkloadName, target: string): string {
  return `${workload}\u0000${target}`;
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
  const runOrder = comparisonOrder(targets);
  const workloads = select(WORKLOADS, options.workloads, 'workload');
  const started = new Date();
  const environment = describeEnvironment();
  const dirs = new TempDirs();
  environment.spreadTempDirs = (await dirs.root()).spread;
  const unavailable = new Map<string, string>();

  // Workload by workload, every target in turn, each store beside what it is compared with.
  const steps = [];
  for (let round = 0; round < repeat; round++) {
    for (const workload of workloads) {
      for (const target of roundOrder(runOrder, round)) {
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

  const runs: RunsByWorkload = {};
  const failures = new Map<string, NotMeasured>();
  const lastSharedWorkload = workloads
    .filter((workload) => SHARED_STORE_WORKLOADS.has(workload.name))
    .pop();
  try {
    for (let round = 0; round < repeat; round++) {
      const sharedStores = new Map(
        targets.map((target) => [target.name, new SharedStore(target, dirs)]),
      );
      for (const workload of workloads) {
        for (const target of roundOrder(runOrder, round)) {
          const shared = sharedStores.get(target.name) as SharedStore;
          const key = stepKey(workload.name, target.name);
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
            await measure(workload.name, { target, profile, dirs, shared }, runs);
            outcome = 'ok';
          } catch (error) {
            if ((error as Error).name === 'Unavailable' && workload.unavailableHereOnly) {
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

  const results: ResultsByWorkload = {};
  for (const workload of workloads)
    fileOutcomes(workload.name, targets, runs, failures, unavailable, results);

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
      const cleanup = results.cleanup?.[target.name];
      return {
        name: target.name,
        kind: target.kind,
        description: target.description,
        durability: target.durability,
        ...(target.engine === undefined ? {} : { engine: target.engine }),
        ...(target.peers === undefined ? {} : { peers: target.peers }),
        ...(target.viaExpressOf === undefined ? {} : { viaExpressOf: target.viaExpressOf }),
        ...(cleanup?.status === 'ok' ? { cleanup: cleanup.result.method } : {}),
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
