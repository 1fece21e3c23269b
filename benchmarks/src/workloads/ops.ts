import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { OpenTarget, Target } from '../adapter.js';
import { makeSessionBody } from '../body.js';
import { fill, type LatencySummary, runLoad } from '../measure.js';
import { LIVE_FOR_MS, type Workload, type WorkloadContext, withFreshTarget } from './context.js';

function pick<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)] as T;
}

/** What a throughput workload reports: latencies, plus the sessions the store held. */
export interface OpsResult extends LatencySummary {
  /** Sessions in the store when the measurement started (below the planned preload if filling hit its time cap). */
  storeSessions: number;
}

const OPS_PRIMARY: Workload<OpsResult>['primary'] = {
  field: 'opsPerSec',
  label: 'ops/s',
  higherIsBetter: true,
};

/** The preload may take this share of the workload's time limit; slow targets get fewer sessions. */
export const PRELOAD_SHARE_OF_LIMIT = 0.4;

function preload(context: WorkloadContext) {
  const { profile, shared, signal } = context;
  return shared.ensure(
    profile.preloadSessions,
    profile.concurrency,
    signal,
    profile.limitsMs.ops * PRELOAD_SHARE_OF_LIMIT,
  );
}

async function measureCreates(context: WorkloadContext): Promise<OpsResult> {
  const { profile, shared, signal } = context;
  const target = await shared.get();
  const storeSessions = shared.ids.length;
  const ids = shared.idPool.take(profile.maxCreateOps);
  const body = makeSessionBody(1);
  const expiresAt = Date.now() + LIVE_FOR_MS;
  const summary = await runLoad(
    {
      concurrency: profile.concurrency,
      durationMs: profile.opsDurationMs,
      maxOps: ids.length,
      signal,
    },
    (i) => target.create(ids[i] as string, body, expiresAt),
  );
  // The store is thrown away with its new sessions, so the reads and mixed work that follow meet
  // the preload alone: a fast target's creates would otherwise leave it a store many times the
  // size of a slow peer's, and the peers' reads would run on smaller stores than sessile's.
  await shared.discard();
  return { ...summary, storeSessions };
}

/** The share of a measured run's length that the warm-up before an empty-store create may take. */
const WARM_UP_SHARE = 0.5;

/**
 * Creates into a store that is then thrown away, so the measured creates run on warm code (the
 * JIT, the target's library, its client) in a fresh empty store: a short cold run would otherwise
 * measure how fast each library warms up. Every target gets the same warm-up, except those that
 * keep a file per session, whose deleted warm-up files would turn the run into
 * `create-after-deletes` (which measures that case).
 */
async function warmUpCreates(context: WorkloadContext): Promise<void> {
  const { profile, shared, signal } = context;
  if (FILE_PER_SESSION.has(context.target.name)) return;
  const target = await shared.get();
  const ids = shared.idPool.take(profile.maxCreateOps);
  const body = makeSessionBody(1);
  const expiresAt = Date.now() + LIVE_FOR_MS;
  await runLoad(
    {
      concurrency: profile.concurrency,
      durationMs: profile.opsDurationMs * WARM_UP_SHARE,
      maxOps: ids.length,
      signal,
    },
    (i) => target.create(ids[i] as string, body, expiresAt),
  );
  await shared.discard();
}

export const createEmpty: Workload<OpsResult, 'create'> = {
  name: 'create',
  title: 'Create, empty store',
  description:
    'new sessions written into an empty store, after a warm-up of creates (up to as many, for at most half the measured time) into a store that is then thrown away; not for stores that keep a file per session, whose deleted warm-up files would change the case',
  primary: OPS_PRIMARY,
  limitMs: (profile) => profile.limitsMs.ops,
  async run(context) {
    await context.shared.discard();
    await warmUpCreates(context);
    return measureCreates(context);
  },
};

export const createPreloaded: Workload<OpsResult, 'create-preloaded'> = {
  name: 'create-preloaded',
  title: 'Create, preloaded store',
  description:
    'new sessions written into a store that already holds the preload; the store is then thrown away, so the reads that follow meet the preload alone',
  primary: OPS_PRIMARY,
  limitMs: (profile) => profile.limitsMs.ops,
  async run(context) {
    await preload(context);
    return measureCreates(context);
  },
};

/** Targets that keep a file per session, whose creates depend on the filesystem's recent deletions. */
const FILE_PER_SESSION = new Set(['file', 'file-express', 'session-file-store', 'raw-fs']);

/**
 * Creates and deletes `count` files of a session's size in `dir`, as a disk that serves
 * anything else sees all the time (and as a store's own sweep leaves it).
 */
async function createAndDelete(dir: string, count: number, signal: AbortSignal): Promise<void> {
  const churn = join(dir, 'deleted-files');
  const shards = 64;
  for (let shard = 0; shard < shards; shard++)
    await mkdir(join(churn, String(shard)), { recursive: true });
  const content = JSON.stringify(makeSessionBody(0));
  await fill(
    count,
    64,
    (i) => writeFile(join(churn, String(i % shards), `deleted-${i}`), content),
    signal,
  );
  await rm(churn, { recursive: true, force: true });
}

export const createAfterDeletes: Workload<OpsResult, 'create-after-deletes'> = {
  name: 'create-after-deletes',
  title: 'Create, after deletions',
  description:
    "new sessions written into an empty store right after as many other files of a session's size were created and deleted in its directory: the run's `chattr +T` placement otherwise gives every target a block group no one deleted from",
  primary: OPS_PRIMARY,
  limitMs: (profile) => profile.limitsMs.ops * 2,
  skipReason: (target: Target) =>
    FILE_PER_SESSION.has(target.name) ? undefined : 'only stores that keep a file per session',
  async run(context) {
    await context.shared.discard();
    await context.shared.get();
    const dir = context.shared.dir as string;
    await createAndDelete(dir, context.profile.maxCreateOps, context.signal);
    return measureCreates(context);
  },
};

export const read: Workload<OpsResult, 'read'> = {
  name: 'read',
  title: 'Read',
  description: 'reads of random existing sessions',
  primary: OPS_PRIMARY,
  limitMs: (profile) => profile.limitsMs.ops,
  async run(context) {
    const { profile, shared, signal } = context;
    const target = await preload(context);
    const ids = shared.ids;
    const summary = await runLoad(
      { concurrency: profile.concurrency, durationMs: profile.opsDurationMs, signal },
      async () => {
        if ((await target.read(pick(ids))) === undefined)
          throw new Error('a stored session was not found');
      },
    );
    return { ...summary, storeSessions: ids.length };
  },
};

export const readMissing: Workload<OpsResult, 'read-missing'> = {
  name: 'read-missing',
  title: 'Read, unknown ids',
  description:
    'reads of ids the store never held (a forged, stale or mistyped cookie), in the preloaded store',
  primary: OPS_PRIMARY,
  limitMs: (profile) => profile.limitsMs.ops,
  async run(context) {
    const { profile, shared, signal } = context;
    const target = await preload(context);
    // Fresh ids from the pool, never handed to the store.
    const unknown = shared.idPool.take(1000);
    const summary = await runLoad(
      { concurrency: profile.concurrency, durationMs: profile.opsDurationMs, signal },
      async () => {
        if ((await target.read(pick(unknown))) !== undefined)
          throw new Error('an id that was never stored was found');
      },
    );
    return { ...summary, storeSessions: shared.ids.length };
  },
};

export const mixed: Workload<OpsResult, 'mixed'> = {
  name: 'mixed',
  title: 'Mixed (80% read, 15% update, 5% touch)',
  description: '80% reads, 15% updates and 5% touches of random existing sessions',
  primary: OPS_PRIMARY,
  limitMs: (profile) => profile.limitsMs.ops,
  async run(context) {
    const { profile, shared, signal } = context;
    const target = await preload(context);
    const ids = shared.ids;
    const body = { ...makeSessionBody(2), counter: 1 };
    const summary = await runLoad(
      { concurrency: profile.concurrency, durationMs: profile.opsDurationMs, signal },
      async () => {
        const roll = Math.random();
        const id = pick(ids);
        if (roll < 0.8) await target.read(id);
        else if (roll < 0.95) await target.update(id, body, Date.now() + LIVE_FOR_MS);
        else await target.touch(id, Date.now() + LIVE_FOR_MS, body);
      },
    );
    return { ...summary, storeSessions: ids.length };
  },
};

export interface GrowthPoint extends LatencySummary {
  records: number;
}

export interface GrowthResult {
  points: GrowthPoint[];
  /** The largest size reached; below the last planned size when the time limit cut it short. */
  reached: number;
  planned: number;
  /** Mean insert latency at the first and at the largest size reached, for the table. */
  p50FirstMs: number;
  p50LastMs: number;
  /** Insert throughput at the largest size reached. */
  opsPerSecLast: number;
}

export const growth: Workload<GrowthResult, 'growth'> = {
  name: 'growth',
  title: 'Growth',
  description: 'insert latency measured as the store grows',
  primary: {
    field: 'opsPerSecLast',
    label: 'inserts/s at the largest size reached',
    higherIsBetter: true,
  },
  limitMs: (profile) => profile.limitsMs.growth,
  async run(context) {
    const { profile } = context;
    // Stop filling a little before the hard limit, so a slow target still reports the sizes it reached.
    const softSignal = AbortSignal.any([
      context.signal,
      AbortSignal.timeout(profile.limitsMs.growth * 0.7),
    ]);
    return withFreshTarget(context, async (target) => {
      const points: GrowthPoint[] = [];
      const pool = context.shared.idPool;
      let stored = 0;
      const expiresAt = Date.now() + LIVE_FOR_MS;
      try {
        for (const size of profile.growthSizes) {
          const sample = Math.min(profile.growthSampleOps, size);
          const fillCount = size - sample - stored;
          if (fillCount > 0) {
            const ids = pool.take(fillCount);
            await fill(
              fillCount,
              profile.concurrency,
              (i) => target.create(ids[i] as string, makeSessionBody(i), expiresAt),
              softSignal,
            );
            stored += fillCount;
          }
          const ids = pool.take(sample);
          const body = makeSessionBody(size);
          const summary = await runLoad(
            {
              concurrency: profile.concurrency,
              durationMs: Number.POSITIVE_INFINITY,
              maxOps: sample,
              signal: softSignal,
            },
            (i) => target.create(ids[i] as string, body, expiresAt),
          );
          stored += summary.ops + summary.errors;
          if (softSignal.aborted) break;
          points.push({ records: size, ...summary });
        }
      } catch (error) {
        if (!softSignal.aborted) throw error;
      }
      const first = points[0];
      const last = points[points.length - 1];
      return {
        points,
        reached: last?.records ?? 0,
        planned: profile.growthSizes[profile.growthSizes.length - 1] ?? 0,
        p50FirstMs: first?.p50Ms ?? 0,
        p50LastMs: last?.p50Ms ?? 0,
        opsPerSecLast: last?.opsPerSec ?? 0,
      };
    });
  },
};

/** One read-modify-write cycle: reads the session and writes it back with its counter one up. */
export async function incrementCounter(target: OpenTarget, id: string): Promise<void> {
  const body = await target.read(id);
  if (body === undefined) throw new Error('the contended session disappeared');
  await target.update(id, { ...body, counter: body.counter + 1 }, Date.now() + LIVE_FOR_MS);
}

export interface ContentionResult {
  cycles: number;
  /** Increments lost when every cycle runs without a lock. */
  lostUnlocked: number;
  cyclesPerSecUnlocked: number;
  /** Increments lost when every cycle holds the target's session lock; absent when it has none. */
  lostLocked?: number;
  cyclesPerSecLocked?: number;
  errors: number;
  firstError?: string;
}

async function race(
  cycles: number,
  cycle: () => Promise<void>,
): Promise<{ elapsedMs: number; errors: number; firstError?: string }> {
  const started = performance.now();
  const outcomes = await Promise.allSettled(Array.from({ length: cycles }, cycle));
  const failures = outcomes.filter(
    (outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected',
  );
  const first = failures[0]?.reason;
  return {
    elapsedMs: performance.now() - started,
    errors: failures.length,
    ...(first === undefined
      ? {}
      : { firstError: first instanceof Error ? first.message : String(first) }),
  };
}

export const contention: Workload<ContentionResult, 'contention'> = {
  name: 'contention',
  title: 'Contention',
  description: 'concurrent read-modify-write cycles (increment a counter) on one session',
  primary: { field: 'lostUnlocked', label: 'lost updates without locks', higherIsBetter: false },
  limitMs: (profile) => profile.limitsMs.contention,
  async run(context) {
    const cycles = context.profile.contentionCycles;
    return withFreshTarget(context, async (target) => {
      const counterOf = async (id: string) => (await target.read(id))?.counter ?? 0;
      const [unlockedId, lockedId] = context.shared.idPool.take(2) as [string, string];
      await target.create(unlockedId, makeSessionBody(3), Date.now() + LIVE_FOR_MS);
      const unlocked = await race(cycles, () => incrementCounter(target, unlockedId));
      const result: ContentionResult = {
        cycles,
        lostUnlocked: cycles - unlocked.errors - (await counterOf(unlockedId)),
        cyclesPerSecUnlocked: Math.round((cycles / unlocked.elapsedMs) * 1000),
        errors: unlocked.errors,
        ...(unlocked.firstError === undefined ? {} : { firstError: unlocked.firstError }),
      };
      const lock = target.lock?.bind(target);
      if (lock !== undefined) {
        await target.create(lockedId, makeSessionBody(4), Date.now() + LIVE_FOR_MS);
        const locked = await race(cycles, async () => {
          const held = await lock(lockedId);
          try {
            await incrementCounter(target, lockedId);
          } finally {
            await held.release();
          }
        });
        result.lostLocked = cycles - locked.errors - (await counterOf(lockedId));
        result.cyclesPerSecLocked = Math.round((cycles / locked.elapsedMs) * 1000);
        result.errors += locked.errors;
        if (result.firstError === undefined && locked.firstError !== undefined)
          result.firstError = locked.firstError;
      }
      return result;
    });
  },
};
