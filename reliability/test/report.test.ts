import { describe, expect, it } from 'vitest';
import type { StoreCrashSummary } from '../dist/crash/run.js';
import { renderReport } from '../dist/report.js';
import { mergeResults, type ReliabilityResults } from '../dist/results.js';

function run(crash: StoreCrashSummary): ReliabilityResults {
  return {
    schema: 1,
    environment: {
      date: '2026-12-04T00:00:00.000Z',
      node: 'v20',
      platform: 'linux',
      cores: 2,
      loadAverage: [1, 1, 1],
    },
    profile: 'full',
    seed: 1,
    durationMs: 1000,
    crash: [crash],
    fuzz: [],
    disk: [],
    hostile: [],
    servers: [],
    http: [],
  };
}

function summary(overrides: Partial<StoreCrashSummary>): StoreCrashSummary {
  return {
    store: 'file',
    promise: 'every resolved write survives a process crash',
    rounds: { writes: 17, sweep: 1, clear: 1, lock: 1 },
    acknowledged: 100,
    checked: 50,
    lost: 0,
    corrupt: 0,
    failures: [],
    recoveryMs: [],
    lockFreedMs: [],
    lockLeaseMs: 1000,
    seed: 1,
    ...overrides,
  };
}

describe('--merge: totals of runs whose results files are gone, carried beside new runs', () => {
  it('adds carried rounds to the totals and takes recovery, lock and time from timed runs only', () => {
    const carried = summary({ carriedRounds: 20, lost: 0, failures: ['round 5 (writes): x'] });
    const timed = summary({
      recoveryMs: [10, 30, 20],
      lockFreedMs: [900],
      durationMs: 40_000,
      failures: [],
    });
    const merged = mergeResults([run(carried), run(timed)]);
    const [file] = merged.crash;
    expect(file?.rounds).toEqual({ writes: 34, sweep: 2, clear: 2, lock: 2 });
    expect(file?.carriedRounds).toBe(20);
    expect(file?.failures).toHaveLength(1);
    const report = renderReport(merged);
    // 40 s over the 20 timed rounds: 200 s per 100 kills, not 100 s over all 40.
    expect(report).toContain(
      '| file | 40 (34 / 2 / 2 / 2) | 200 | 100 | 0 | 0 | 1 | 20 ms / 30 ms | 900 ms / 900 ms (lease 1000 ms) | 200 s |',
    );
    expect(report).toContain('20 of these rounds come from a results file that carries');
  });

  it('shows a dash, not -Infinity, where only carried rounds give a column', () => {
    const report = renderReport(mergeResults([run(summary({ carriedRounds: 20 }))]));
    expect(report).toContain('| 0 | 0 | 0 | – / – | – | – |');
  });
});
