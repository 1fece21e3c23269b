import { monitorEventLoopDelay } from 'node:perf_hooks';
import { makeSessionBody } from '../body.js';
import { describeError, fill, percentile, round } from '../measure.js';
import { threadOnCpuMs } from '../thread-cpu.js';
import { LIVE_FOR_MS, type Workload, withFreshTarget } from './context.js';

/** One point of the latency-over-time chart. */
export interface TimelineBucket {
  /** Start of the bucket, ms since the load started. */
  atMs: number;
  requests: number;
  p99Ms: number;
  maxMs: number;
  /** The longest event-loop stall seen in this bucket. */
  stallMs: number;
}

export interface CleanupResult {
  liveSessions: number;
  expiredSessions: number;
  requestsPerSec: number;
  requests: number;
  requestErrors: number;
  /** How long the first cleanup took, from trigger to finish. */
  cleanupMs: number;
  /** The longest single hold of the store-wide lock in the first cleanup, where the store reports it. */
  longestLockHoldMs?: number;
  /** How many cleanups the 1-in-N trigger started. */
  cleanups: number;
  cleanupError?: string;
  /** Expired sessions still stored after the cleanup finished. */
  expiredLeft: number | null;
  /** The longest event-loop stall while a cleanup ran, and outside. */
  stallDuringMs: number;
  stallOutsideMs: number;
  /**
   * The same stalls counting only the time this thread ran on a CPU (Linux): the part the
   * process caused itself, without the time a loaded machine gave to other processes.
   */
  onCpuStallDuringMs?: number;
  onCpuStallOutsideMs?: number;
  /** Longest stall over the whole run, from perf_hooks' event-loop delay histogram. */
  eventLoopDelayMaxMs: number;
  p99DuringMs: number;
  maxDuringMs: number;
  p99OutsideMs: number;
  maxOutsideMs: number;
  /** p99 during cleanup divided by p99 outside it. */
  p99Ratio: number;
  /** How this target cleans, in words. */
  method: string;
  /** Cleanup windows, ms since the load started. */
  windows: [number, number][];
  timeline: TimelineBucket[];
}

const PROBE_INTERVAL_MS = 1;

/**
 * The seed scenario: a steady open-loop request load (arrivals on a fixed schedule, so a stall
 * shows up as queueing, not as fewer requests) while every Nth request triggers the target's own
 * cleanup of many expired sessions. Latency is measured from each request's scheduled arrival.
 */
export const cleanupUnderLoad: Workload<CleanupResult, 'cleanup'> = {
  name: 'cleanup',
  title: 'Cleanup under load',
  description: 'request latency and event-loop stalls while expired sessions are cleaned',
  primary: {
    field: 'maxDuringMs',
    label: 'worst request latency during cleanup (ms)',
    higherIsBetter: false,
  },
  limitMs: (profile) => profile.limitsMs.cleanup,
  async run(context) {
    const settings = context.profile.cleanup;
    return withFreshTarget(context, async (target) => {
      const pool = context.shared.idPool;
      const liveIds = pool.take(settings.liveSessions);
      const expiredIds = pool.take(settings.expiredSessions);
      const liveUntil = Date.now() + LIVE_FOR_MS;
      const expiredAt = Date.now() - 60_000;
      const concurrency = context.profile.concurrency;
      await fill(
        expiredIds.length,
        concurrency,
        (i) => target.create(expiredIds[i] as string, makeSessionBody(i), expiredAt),
        context.signal,
      );
      await fill(
        liveIds.length,
        concurrency,
        (i) => target.create(liveIds[i] as string, makeSessionBody(i), liveUntil),
        context.signal,
      );

      const cleanup = target.cleanup?.bind(target);
      const method = target.cleanupNote ?? 'none';
      const windows: [number, number][] = [];
      const latencies: { scheduledAt: number; endedAt: number }[] = [];
      const stalls: { at: number; stallMs: number; onCpuMs: number | undefined }[] = [];
      let requestErrors = 0;
      let cleanups = 0;
      let cleanupMs = 0;
      let cleanupError: string | undefined;
      let longestLockHoldMs: number | undefined;
      let running: Promise<void> | undefined;
      let firstDoneAt: number | undefined;
      const started = performance.now();
      const delay = monitorEventLoopDelay({ resolution: 1 });
      delay.enable();

      const startCleanup = () => {
        if (running !== undefined || cleanup === undefined) return;
        cleanups++;
        const from = performance.now() - started;
        const window: [number, number] = [from, Number.POSITIVE_INFINITY];
        windows.push(window);
        const first = cleanups === 1;
        running = cleanup(context.signal)
          .then(
            (outcome) => {
              if (first && outcome.longestLockHoldMs !== undefined)
                longestLockHoldMs = outcome.longestLockHoldMs;
            },
            (error: unknown) => {
              cleanupError ??= describeError(error);
            },
          )
          .finally(() => {
            window[1] = performance.now() - started;
            if (firstDoneAt === undefined) {
              firstDoneAt = performance.now();
              cleanupMs = window[1] - window[0];
            }
            running = undefined;
          });
      };

      const body = { ...makeSessionBody(5), counter: 1 };
      let arrivals = 0;
      const inflight = new Set<Promise<void>>();
      const request = (scheduledAt: number) => {
        const index = arrivals++;
        if (index > 0 && index % settings.triggerEveryRequests === 0) startCleanup();
        const id = liveIds[Math.floor(Math.random() * liveIds.length)] as string;
        const work = (async () => {
          try {
            await target.read(id);
            // One request in ten changes its session and saves it.
            if (index % 10 === 0) await target.update(id, body, Date.now() + LIVE_FOR_MS);
            latencies.push({
              scheduledAt: scheduledAt - started,
              endedAt: performance.now() - started,
            });
          } catch {
            requestErrors++;
          }
        })();
        inflight.add(work);
        void work.finally(() => inflight.delete(work));
      };

      // A cleanup that never triggers (no cleanup at all) still gets a fair window of load.
      const noCleanupRunMs =
        (settings.triggerEveryRequests / settings.requestsPerSec) * 1000 + settings.afterMs;
      await new Promise<void>((resolve) => {
        let lastTick = performance.now();
        let lastOnCpu = threadOnCpuMs();
        const tick = () => {
          const now = performance.now();
          const onCpu = threadOnCpuMs();
          const stallMs = Math.max(0, now - lastTick - PROBE_INTERVAL_MS);
          stalls.push({
            at: now - started,
            stallMs,
            onCpuMs:
              onCpu === undefined || lastOnCpu === undefined
                ? undefined
                : Math.min(stallMs, onCpu - lastOnCpu),
          });
          lastTick = now;
          lastOnCpu = onCpu;
          const due = Math.floor(((now - started) * settings.requestsPerSec) / 1000);
          while (arrivals < due) request(started + (arrivals * 1000) / settings.requestsPerSec);
          const finished =
            context.signal.aborted ||
            (firstDoneAt !== undefined && now - firstDoneAt >= settings.afterMs) ||
            (cleanup === undefined && now - started >= noCleanupRunMs);
          if (finished) resolve();
          else setTimeout(tick, PROBE_INTERVAL_MS);
        };
        setTimeout(tick, PROBE_INTERVAL_MS);
      });
      delay.disable();
      await Promise.all(inflight);
      await running;

      const overlaps = (from: number, to: number) =>
        windows.some(([start, end]) => from < end && to > start);
      const during: number[] = [];
      const outside: number[] = [];
      for (const { scheduledAt, endedAt } of latencies) {
        (overlaps(scheduledAt, endedAt) ? during : outside).push(endedAt - scheduledAt);
      }
      during.sort((a, b) => a - b);
      outside.sort((a, b) => a - b);
      let stallDuringMs = 0;
      let stallOutsideMs = 0;
      let onCpuStallDuringMs: number | undefined;
      let onCpuStallOutsideMs: number | undefined;
      for (const { at, stallMs, onCpuMs } of stalls) {
        if (overlaps(at - stallMs, at)) {
          stallDuringMs = Math.max(stallDuringMs, stallMs);
          if (onCpuMs !== undefined)
            onCpuStallDuringMs = Math.max(onCpuStallDuringMs ?? 0, onCpuMs);
        } else {
          stallOutsideMs = Math.max(stallOutsideMs, stallMs);
          if (onCpuMs !== undefined)
            onCpuStallOutsideMs = Math.max(onCpuStallOutsideMs ?? 0, onCpuMs);
        }
      }
      const p99During = percentile(during, 0.99);
      const p99Outside = percentile(outside, 0.99);
      const expiredLeft = target.expiredLeft
        ? await target.expiredLeft(expiredIds, liveIds.length)
        : null;
      return {
        liveSessions: liveIds.length,
        expiredSessions: expiredIds.length,
        requestsPerSec: settings.requestsPerSec,
        requests: latencies.length,
        requestErrors,
        cleanupMs: round(cleanupMs),
        cleanups,
        ...(cleanupError === undefined ? {} : { cleanupError }),
        ...(longestLockHoldMs === undefined ? {} : { longestLockHoldMs: round(longestLockHoldMs) }),
        expiredLeft,
        stallDuringMs: round(stallDuringMs),
        stallOutsideMs: round(stallOutsideMs),
        ...(onCpuStallDuringMs === undefined
          ? {}
          : { onCpuStallDuringMs: round(onCpuStallDuringMs) }),
        ...(onCpuStallOutsideMs === undefined
          ? {}
          : { onCpuStallOutsideMs: round(onCpuStallOutsideMs) }),
        eventLoopDelayMaxMs: round(delay.max / 1e6),
        p99DuringMs: round(p99During),
        maxDuringMs: round(during[during.length - 1] ?? 0),
        p99OutsideMs: round(p99Outside),
        maxOutsideMs: round(outside[outside.length - 1] ?? 0),
        p99Ratio: p99Outside > 0 && during.length > 0 ? round(p99During / p99Outside) : 0,
        method,
        windows: windows.map(([from, to]) => [
          round(from),
          round(Number.isFinite(to) ? to : performance.now() - started),
        ]),
        timeline: buildTimeline(latencies, stalls, settings.bucketMs),
      };
    });
  },
};

function buildTimeline(
  latencies: readonly { scheduledAt: number; endedAt: number }[],
  stalls: readonly { at: number; stallMs: number }[],
  bucketMs: number,
): TimelineBucket[] {
  const buckets = new Map<number, { latencies: number[]; stallMs: number }>();
  const bucketOf = (at: number) => {
    const key = Math.floor(at / bucketMs);
    let bucket = buckets.get(key);
    if (bucket === undefined) {
      bucket = { latencies: [], stallMs: 0 };
      buckets.set(key, bucket);
    }
    return bucket;
  };
  for (const { scheduledAt, endedAt } of latencies)
    bucketOf(scheduledAt).latencies.push(endedAt - scheduledAt);
  for (const { at, stallMs } of stalls) {
    const bucket = bucketOf(at);
    bucket.stallMs = Math.max(bucket.stallMs, stallMs);
  }
  return [...buckets.entries()]
    .sort(([a], [b]) => a - b)
    .map(([key, bucket]) => {
      const sorted = bucket.latencies.sort((a, b) => a - b);
      return {
        atMs: key * bucketMs,
        requests: sorted.length,
        p99Ms: round(percentile(sorted, 0.99)),
        maxMs: round(sorted[sorted.length - 1] ?? 0),
        stallMs: round(bucket.stallMs),
      };
    });
}
