import { cpus, loadavg, platform, release } from 'node:os';
import { runCrashes } from './crash/run.js';
import type { Profile } from './profile.js';
import type { CheckOutcome, ReliabilityResults } from './results.js';
import type { StoreSpec } from './stores.js';

export const PARTS = ['crash', 'fuzz', 'disk', 'hostile', 'servers', 'http'] as const;
export type Part = (typeof PARTS)[number];

export interface RunOptions {
  profile: Profile;
  seed: number;
  stores: StoreSpec[];
  parts: readonly Part[];
  log?(line: string): void;
}

/** The runs of the parts other than crashes, registered by their modules. */
export type CheckRunner = (options: RunOptions) => Promise<CheckOutcome[]>;

function describeProfile(profile: Profile): string {
  const kills = Object.values(profile.crashes).reduce((sum, n) => sum + n, 0);
  return `${profile.name}: ${kills} kills per store, ${profile.fuzzRuns} fuzz runs per property`;
}

export async function runReliability(
  options: RunOptions,
  runners: Partial<Record<Exclude<Part, 'crash'>, CheckRunner>>,
): Promise<ReliabilityResults> {
  const started = Date.now();
  const log = options.log ?? (() => {});
  const results: ReliabilityResults = {
    schema: 1,
    environment: {
      date: new Date().toISOString(),
      node: process.version,
      platform: `${platform()} ${release()}`,
      cores: cpus().length,
      loadAverage: loadavg(),
    },
    profile: describeProfile(options.profile),
    seed: options.seed,
    durationMs: 0,
    crash: [],
    fuzz: [],
    disk: [],
    hostile: [],
    servers: [],
    http: [],
  };
  if (options.parts.includes('crash')) {
    for (const spec of options.stores) {
      const summary = await runCrashes(spec, {
        profile: options.profile,
        seed: options.seed,
        onRound(store, round, total, outcome) {
          log(
            `crash ${store} ${round}/${total} ${outcome.mode}: ${outcome.acknowledged} acked, ` +
              `${outcome.lost} lost, ${outcome.corrupt} corrupt, ${outcome.failures.length} failures`,
          );
        },
      });
      results.crash.push(summary);
    }
  }
  for (const part of ['fuzz', 'disk', 'hostile', 'servers', 'http'] as const) {
    const runner = runners[part];
    if (!options.parts.includes(part) || runner === undefined) continue;
    log(`${part}…`);
    results[part] = await runner(options);
  }
  results.durationMs = Date.now() - started;
  return results;
}
