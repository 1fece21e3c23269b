#!/usr/bin/env node
/**
 * `pnpm bench`: runs the benchmarks, writes the results JSON to benchmarks/results/ and
 * regenerates docs/benchmarks.md (between its marker comments) and the charts in docs/benchmarks/.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PROFILES } from './profile.js';
import { ConsoleProgress } from './progress.js';
import { writeReport } from './report/markdown.js';
import { writeStoreReadmes } from './report/readmes.js';
import type { BenchResults } from './results.js';
import { runBenchmarks, WORKLOADS } from './run.js';
import { TARGETS } from './targets/index.js';

const BENCHMARKS_DIR = fileURLToPath(new URL('../', import.meta.url));
const REPO_DIR = resolve(BENCHMARKS_DIR, '..');

const USAGE = `Usage: pnpm bench [options]

  --full              large sizes (1M-record growth, 50k-session cleanup); takes much longer
  --tiny              smoke-test sizes: checks the harness in seconds, figures mean nothing
  --stores a,b        only these targets (default: all)
  --workloads x,y     only these workloads (default: all)
  --repeat N          run everything N times; report the median and the spread
  --out FILE          results JSON path (default: benchmarks/results/<date>.json)
  --docs FILE         markdown to update between its markers (default: docs/benchmarks.md)
  --no-docs           leave docs/benchmarks.md and its charts alone
  --no-readmes        leave the figures between <!-- bench:STORE:start/end --> in packages/*/README.md alone
  --from FILE         run nothing: regenerate the report from an earlier results JSON
  --help

Targets:   ${TARGETS.map((target) => target.name).join(', ')}
Workloads: ${WORKLOADS.map((workload) => workload.name).join(', ')}
`;

function list(value: string | undefined): string[] | undefined {
  return value === undefined
    ? undefined
    : value
        .split(',')
        .map((item) => item.trim())
        .filter(Boolean);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      full: { type: 'boolean', default: false },
      tiny: { type: 'boolean', default: false },
      stores: { type: 'string' },
      workloads: { type: 'string' },
      repeat: { type: 'string', default: '1' },
      out: { type: 'string' },
      docs: { type: 'string' },
      'no-docs': { type: 'boolean', default: false },
      'no-readmes': { type: 'boolean', default: false },
      from: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const docs = resolve(values.docs ?? join(REPO_DIR, 'docs', 'benchmarks.md'));
  const charts = join(dirname(docs), 'benchmarks');
  if (values.from !== undefined) {
    const earlier = JSON.parse(await readFile(values.from, 'utf8')) as BenchResults;
    if (!values['no-docs']) {
      await writeReport(earlier, docs, charts);
      process.stderr.write(`report: ${docs} (charts in ${charts})\n`);
    }
    if (!values['no-readmes']) await readmes(earlier);
    return 0;
  }
  const repeat = Number(values.repeat);
  if (!Number.isInteger(repeat) || repeat < 1)
    throw new TypeError('--repeat must be a positive integer');

  const results = await runBenchmarks({
    profile: values.full ? PROFILES.full : values.tiny ? PROFILES.tiny : PROFILES.quick,
    stores: list(values.stores),
    workloads: list(values.workloads),
    repeat,
    progress: new ConsoleProgress(),
  });

  const stamp = results.startedAt.replace(/[:.]/g, '-');
  const out = resolve(values.out ?? join(BENCHMARKS_DIR, 'results', `${stamp}.json`));
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);
  process.stderr.write(`results: ${out}\n`);
  if (!values['no-docs']) {
    await writeReport(results, docs, charts);
    process.stderr.write(`report: ${docs} (charts in ${charts})\n`);
  }
  if (!values['no-readmes']) await readmes(results);
  return 0;
}

/** Refreshes the store READMEs' marked figures from the stores this run measured. */
async function readmes(results: BenchResults): Promise<void> {
  for (const path of await writeStoreReadmes(results, join(REPO_DIR, 'packages')))
    process.stderr.write(`figures: ${path}\n`);
}

main().then(
  (code) => {
    // Some peers keep timers or sockets open; the run is over, so do not wait for them.
    process.exit(code);
  },
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    process.exit(1);
  },
);
