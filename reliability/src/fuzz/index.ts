import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CheckOutcome } from '../results.js';
import type { RunOptions } from '../run.js';
import { fuzzCodecs } from './codecs.js';
import { fuzzDbm } from './dbm.js';
import { fuzzFileRecords } from './file.js';
import { fuzzLevelValues } from './level.js';
import { fuzzSqliteRows } from './sqlite.js';

type Fuzzer = (dir: string, runs: number, seed: number) => Promise<CheckOutcome | CheckOutcome[]>;

/** The on-disk formats, by the store whose format each is. */
export const FUZZERS: Record<string, Fuzzer> = {
  file: fuzzFileRecords,
  dbm: fuzzDbm,
  'sqlite-normal': fuzzSqliteRows,
  level: fuzzLevelValues,
};

/** One fuzzer in a fresh directory; a fuzzer that throws is a failure of its own. */
export async function runFuzzer(name: string, runs: number, seed: number): Promise<CheckOutcome[]> {
  const fuzzer = FUZZERS[name];
  if (fuzzer === undefined) throw new TypeError(`no fuzzer for ${name}`);
  const dir = await mkdtemp(join(tmpdir(), `sessile-fuzz-${name}-`));
  try {
    const outcome = await fuzzer(dir, runs, seed);
    return Array.isArray(outcome) ? outcome : [outcome];
  } catch (error) {
    return [{ name: `${name}: setup`, cases: 0, failures: [String(error)] }];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function runFuzz(options: RunOptions): Promise<CheckOutcome[]> {
  const outcomes: CheckOutcome[] = [];
  const runs = options.profile.fuzzRuns;
  for (const spec of options.stores) {
    if (FUZZERS[spec.name] === undefined) continue;
    options.log?.(`fuzz ${spec.name}`);
    outcomes.push(...(await runFuzzer(spec.name, runs, options.seed)));
  }
  outcomes.push(...(await fuzzCodecs(runs, options.seed)));
  return outcomes;
}
