/** Sizes and time limits of one run. `quick` is the default, `full` is `--full`, `tiny` is for tests. */
export interface Profile {
  name: 'quick' | 'full' | 'tiny';
  /** Operations in flight for the throughput workloads. */
  concurrency: number;
  /** How long each throughput workload (create, read, mixed) measures. */
  opsDurationMs: number;
  /** Most creates one create workload measures, so "empty" stays nearly empty. */
  maxCreateOps: number;
  /** Sessions in the store before create-preloaded, read and mixed. */
  preloadSessions: number;
  /** Store sizes at which growth measures insert latency. */
  growthSizes: number[];
  /** Inserts measured at each growth size. */
  growthSampleOps: number;
  /** Read-modify-write cycles racing on one session. */
  contentionCycles: number;
  lockFlood: {
    /** Locked cycles (and HTTP requests) started at once on one session. */
    cycles: number;
    /** How long the uncontended cycle loop runs to time one cycle. */
    uncontendedMs: number;
  };
  cleanup: {
    liveSessions: number;
    expiredSessions: number;
    /** Steady arrivals per second during the cleanup scenario. */
    requestsPerSec: number;
    /** Every this many requests triggers a cleanup (mod_python's 1 in 1000). */
    triggerEveryRequests: number;
    /** How long the load keeps running after the first cleanup finished. */
    afterMs: number;
    /** Width of one point of the latency-over-time chart. */
    bucketMs: number;
  };
  /**
   * The HTTP workload: each app's load for `durationSec`, or, where a sessile store's apps are
   * compared, `rounds` turns of `roundSec` each, the apps taking turns, after a turn each of
   * `durationSec` that warms them up.
   */
  http: {
    durationSec: number;
    connections: number;
    workers: number;
    rounds: number;
    roundSec: number;
  };
  /** Sessions, and the owners they belong to, for the sessions-by-user workload. */
  owners: { sessions: number; owners: number };
  /** Live sessions `sessile copy` moves from a FileStore into each target. */
  copySessions: number;
  /** Time limits per workload; past it a target is reported as timed out. */
  limitsMs: {
    ops: number;
    growth: number;
    contention: number;
    lockFlood: number;
    cleanup: number;
    http: number;
    copy: number;
    owners: number;
  };
}

export const PROFILES: Record<Profile['name'], Profile> = {
  quick: {
    name: 'quick',
    concurrency: 64,
    opsDurationMs: 1500,
    maxCreateOps: 100_000,
    preloadSessions: 5000,
    growthSizes: [1000, 10_000, 100_000],
    growthSampleOps: 500,
    contentionCycles: 200,
    lockFlood: { cycles: 2000, uncontendedMs: 1000 },
    cleanup: {
      liveSessions: 5000,
      expiredSessions: 5000,
      requestsPerSec: 500,
      triggerEveryRequests: 1000,
      afterMs: 2000,
      bucketMs: 100,
    },
    http: { durationSec: 3, connections: 64, workers: 2, rounds: 8, roundSec: 1 },
    owners: { sessions: 100_000, owners: 10_000 },
    copySessions: 100_000,
    limitsMs: {
      ops: 40_000,
      growth: 20_000,
      contention: 30_000,
      lockFlood: 60_000,
      cleanup: 45_000,
      http: 30_000,
      copy: 240_000,
      owners: 120_000,
    },
  },
  full: {
    name: 'full',
    concurrency: 64,
    opsDurationMs: 5000,
    maxCreateOps: 100_000,
    preloadSessions: 50_000,
    growthSizes: [1000, 10_000, 100_000, 1_000_000],
    growthSampleOps: 2000,
    contentionCycles: 200,
    lockFlood: { cycles: 2000, uncontendedMs: 3000 },
    cleanup: {
      liveSessions: 25_000,
      expiredSessions: 25_000,
      requestsPerSec: 1000,
      triggerEveryRequests: 1000,
      afterMs: 3000,
      bucketMs: 100,
    },
    http: { durationSec: 10, connections: 64, workers: 2, rounds: 8, roundSec: 3 },
    owners: { sessions: 100_000, owners: 10_000 },
    copySessions: 100_000,
    limitsMs: {
      ops: 180_000,
      growth: 600_000,
      contention: 60_000,
      lockFlood: 60_000,
      cleanup: 240_000,
      http: 60_000,
      copy: 600_000,
      owners: 600_000,
    },
  },
  tiny: {
    name: 'tiny',
    concurrency: 8,
    opsDurationMs: 80,
    maxCreateOps: 200,
    preloadSessions: 100,
    growthSizes: [50, 150],
    growthSampleOps: 20,
    contentionCycles: 30,
    lockFlood: { cycles: 40, uncontendedMs: 50 },
    cleanup: {
      liveSessions: 60,
      expiredSessions: 60,
      requestsPerSec: 300,
      triggerEveryRequests: 40,
      afterMs: 150,
      bucketMs: 50,
    },
    http: { durationSec: 1, connections: 4, workers: 2, rounds: 2, roundSec: 1 },
    owners: { sessions: 300, owners: 30 },
    copySessions: 200,
    limitsMs: {
      ops: 20_000,
      growth: 20_000,
      contention: 20_000,
      lockFlood: 20_000,
      cleanup: 20_000,
      http: 30_000,
      copy: 30_000,
      owners: 30_000,
    },
  },
};
