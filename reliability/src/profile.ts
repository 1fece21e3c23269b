import type { CrashMode } from './crash/protocol.js';

/** How much of each run to do. */
export interface Profile {
  name: 'small' | 'full';
  /** Crash rounds per store, by what the child was doing when killed. */
  crashes: Record<CrashMode, number>;
  /** Sessions one crash round writes. */
  sessions: number;
  lanes: number;
  /** Already-expired records a sweep round leaves for the killed sweeper. */
  expiring: number;
  /** The store is cleared once earlier rounds' records pass this many. */
  keepRecords: number;
  /**
   * Every how many rounds the earlier rounds' records are read back in full (and in the last
   * round, and before a clear). Between those rounds ids() must still list every one of them.
   */
  survivorCheckEvery: number;
  /** fast-check runs per decode property. */
  fuzzRuns: number;
  /** Parallel requests on one session over HTTP. */
  httpRequests: number;
}

export const PROFILES: Record<Profile['name'], Profile> = {
  small: {
    name: 'small',
    crashes: { writes: 1, sweep: 1, clear: 1, lock: 1 },
    sessions: 32,
    lanes: 8,
    expiring: 200,
    keepRecords: 500,
    survivorCheckEvery: 1,
    fuzzRuns: 60,
    httpRequests: 2000,
  },
  full: {
    name: 'full',
    crashes: { writes: 850, sweep: 50, clear: 50, lock: 50 },
    sessions: 64,
    lanes: 8,
    expiring: 400,
    keepRecords: 2000,
    survivorCheckEvery: 10,
    fuzzRuns: 2000,
    httpRequests: 2000,
  },
};
