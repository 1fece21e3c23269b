#!/usr/bin/env node
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { CrashMode } from './crash/protocol.js';
import { PROFILES } from './profile.js';
import { writeReport } from './report.js';
import { allFailures, mergeResults } from './results.js';
import { PARTS, type Part, runReliability } from './run.js';
import { RUNNERS } from './runners.js';
import { STORES, storeSpec } from './stores.js';

const HELP = `pnpm reliability [options]

Crash (SIGKILL) rounds, decode fuzzing, a full disk and a hostile environment against every
sessile store. Writes reliability/.tmp/results/<date>.json and the figures in docs/reliability.md.

  --full             1,000 kills per store and 2,000 fuzz cases per format (default: small)
  --stores a,b       only these stores (${STORES.map((s) => s.name).join(', ')})
  --parts a,b        only these parts (${PARTS.join(', ')})
  --kills n          crash rounds per store (85% writes, 5% each sweep, clear and lock)
  --modes a,b        only these crash rounds (writes, sweep, clear, lock); --kills split evenly
  --fuzz-runs n      fast-check runs per decode property
  --seed n           the seed of every random choice (default: random, printed)
  --no-docs          leave docs/reliability.md alone
  --merge a,b        write docs/reliability.md from these results files (runs split across
                     processes) instead of running anything
  --help`;

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function positiveInteger(option: string, text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) {
    throw new TypeError(`${option} must be a positive integer, got ${text}`);
  }
  return value;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      full: { type: 'boolean', default: false },
      stores: { type: 'string' },
      parts: { type: 'string' },
      seed: { type: 'string' },
      kills: { type: 'string' },
      'fuzz-runs': { type: 'string' },
      modes: { type: 'string' },
      'no-docs': { type: 'boolean', default: false },
      merge: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  if (values.merge !== undefined) {
    const merged = mergeResults(
      await Promise.all(
        values.merge.split(',').map(async (file) => JSON.parse(await readFile(file, 'utf8'))),
      ),
    );
    await writeReport(merged, join(root, 'docs', 'reliability.md'));
    console.log(`docs/reliability.md written from ${values.merge}`);
    return;
  }
  const stores = values.stores === undefined ? STORES : values.stores.split(',').map(storeSpec);
  const parts = (values.parts?.split(',') ?? PARTS) as Part[];
  for (const part of parts) {
    if (!PARTS.includes(part)) throw new TypeError(`unknown part ${JSON.stringify(part)}`);
  }
  const seed =
    values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
  if (!Number.isInteger(seed)) throw new TypeError(`--seed must be an integer, got ${values.seed}`);
  let profile = values.full ? PROFILES.full : PROFILES.small;
  if (values.kills !== undefined) {
    const kills = positiveInteger('--kills', values.kills);
    const each = Math.max(1, Math.round(kills * 0.05));
    profile = {
      ...profile,
      crashes: { writes: Math.max(1, kills - 3 * each), sweep: each, clear: each, lock: each },
    };
  }
  if (values.modes !== undefined) {
    const modes = values.modes.split(',') as CrashMode[];
    const crashes: Record<CrashMode, number> = { writes: 0, sweep: 0, clear: 0, lock: 0 };
    const total = Object.values(profile.crashes).reduce((sum, n) => sum + n, 0);
    for (const [n, mode] of modes.entries()) {
      if (!(mode in crashes)) throw new TypeError(`unknown crash mode ${JSON.stringify(mode)}`);
      crashes[mode] = Math.floor(total / modes.length) + (n < total % modes.length ? 1 : 0);
    }
    profile = { ...profile, crashes };
  }
  if (values['fuzz-runs'] !== undefined) {
    profile = { ...profile, fuzzRuns: positiveInteger('--fuzz-runs', values['fuzz-runs']) };
  }
  console.log(`profile ${profile.name}, seed ${seed}`);
  const results = await runReliability(
    { profile, seed, stores, parts, log: (line) => console.log(line) },
    RUNNERS,
  );
  const resultsDir = join(root, 'reliability', '.tmp', 'results');
  await mkdir(resultsDir, { recursive: true });
  const file = join(resultsDir, `${results.environment.date.replaceAll(':', '-')}.json`);
  await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`results: ${file}`);
  if (!values['no-docs']) {
    await writeReport(results, join(root, 'docs', 'reliability.md'));
    console.log('docs/reliability.md updated');
  }
  const failures = allFailures(results);
  for (const failure of failures.slice(0, 50)) console.log(`FAIL ${failure}`);
  console.log(`${failures.length} failures`);
  process.exitCode = failures.length > 0 ? 1 : 0;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 2;
});
