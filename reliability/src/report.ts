import { readFile, writeFile } from 'node:fs/promises';
import type { StoreCrashSummary } from './crash/run.js';
import type { CheckOutcome, ReliabilityResults } from './results.js';

export const START_MARKER = '<!-- reliability:start -->';
export const END_MARKER = '<!-- reliability:end -->';

function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

function ms(value: number | undefined): string {
  return value === undefined ? '–' : `${Math.round(value)} ms`;
}

function worst(values: number[]): number | undefined {
  return values.length === 0 ? undefined : Math.max(...values);
}

function crashRow(store: StoreCrashSummary): string {
  if (store.skipped !== undefined) {
    return `| ${store.store} | skipped: ${store.skipped} | | | | | | | | |`;
  }
  const rounds = Object.values(store.rounds).reduce((sum, n) => sum + n, 0);
  const kinds = `${store.rounds.writes} / ${store.rounds.sweep} / ${store.rounds.clear} / ${store.rounds.lock}`;
  return [
    store.store,
    `${rounds} (${kinds})`,
    store.acknowledged.toLocaleString('en-US'),
    store.checked.toLocaleString('en-US'),
    store.lost,
    store.corrupt,
    store.failures.length,
    `${ms(median(store.recoveryMs))} / ${ms(worst(store.recoveryMs))}`,
    store.lockFreedMs.length === 0
      ? '–'
      : `${ms(median(store.lockFreedMs))} / ${ms(worst(store.lockFreedMs))} (lease ${store.lockLeaseMs} ms)`,
    store.durationMs === undefined
      ? '–'
      : `${Math.round(((store.durationMs / (store.timedRounds ?? rounds)) * 100) / 1000)} s`,
  ]
    .join(' | ')
    .replace(/^/, '| ')
    .replace(/$/, ' |');
}

function checkRows(checks: CheckOutcome[]): string[] {
  return checks.map((check) => {
    const result =
      check.skipped !== undefined
        ? `not run: ${check.skipped}`
        : check.failures.length === 0
          ? 'held'
          : `**${check.failures.length} failed**: ${check.failures.slice(0, 3).join('; ')}`;
    const notes = (check.notes ?? []).join('; ');
    return `| ${check.name} | ${check.cases} | ${result.replaceAll('|', '\\|')} | ${notes.replaceAll('|', '\\|')} |`;
  });
}

/** The generated part of docs/reliability.md. */
export function renderReport(results: ReliabilityResults): string {
  const env = results.environment;
  const lines = [
    `Run of ${env.date} with the \`${results.profile}\` profile (seed ${results.seed}), Node ${env.node} on ${env.platform}, ${env.cores} cores, load average ${env.loadAverage.map((n) => n.toFixed(1)).join(' ')} at the start; ${Math.round(results.durationMs / 1000)} s in all.`,
    '',
    '### Crashes (SIGKILL)',
    '',
    'Rounds: writes / sweep / clear / lock. Recovery is from the kill to the reopened store’s first',
    'resolved write (median / worst); the lock column is from the kill until another holder got the',
    'killed holder’s lock. Time per 100 kills is the wall time of the store’s rounds, checks',
    'included (over the runs that timed them), at the load above: compare stores by it only within one run.',
    '',
    '| store | rounds | acknowledged ops | sessions checked | lost | corrupt | failed checks | recovery | killed lock freed | time per 100 kills |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...results.crash.map(crashRow),
  ];
  const carried = results.crash.reduce((sum, store) => sum + (store.carriedRounds ?? 0), 0);
  if (carried > 0) {
    lines.push(
      '',
      `${carried.toLocaleString('en-US')} of these rounds come from a results file that carries an earlier report's totals (its runs' own results files are not kept): they count in the rounds, operations, sessions, lost, corrupt and failed columns, not in the recovery, lock and time columns.`,
    );
  }
  const failed = results.crash.flatMap((store) =>
    store.failures.map((f) => `${store.store}, ${f}`),
  );
  if (failed.length > 0) {
    lines.push('', 'Failed checks:', '', ...failed.slice(0, 10).map((failure) => `- ${failure}`));
  }
  for (const [title, checks] of [
    ['Decode fuzzing', results.fuzz],
    ['Full disk', results.disk],
    ['Hostile environment', results.hostile],
    ['Servers', results.servers ?? []],
    ['HTTP', results.http ?? []],
  ] as const) {
    if (checks.length === 0) continue;
    lines.push(
      '',
      `### ${title}`,
      '',
      '| check | cases | result | notes |',
      '| --- | --- | --- | --- |',
    );
    lines.push(...checkRows(checks));
  }
  return lines.join('\n');
}

const DEFAULT_DOC = `# Reliability\n\n${START_MARKER}\n${END_MARKER}\n`;

/** Replaces what lies between the markers in `docPath`, creating the page when missing. */
export async function writeReport(results: ReliabilityResults, docPath: string): Promise<void> {
  const existing = await readFile(docPath, 'utf8').catch(() => DEFAULT_DOC);
  const start = existing.indexOf(START_MARKER);
  const end = existing.indexOf(END_MARKER);
  if (start === -1 || end < start) {
    throw new Error(`${docPath} lacks the markers ${START_MARKER} … ${END_MARKER}`);
  }
  const next = `${existing.slice(0, start + START_MARKER.length)}\n${renderReport(results)}\n${existing.slice(end)}`;
  await writeFile(docPath, next);
}
