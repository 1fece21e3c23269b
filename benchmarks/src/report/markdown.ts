import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import type { BenchResults, Outcome, TargetInfo } from '../run.js';
import type { CleanupResult } from '../workloads/cleanup.js';
import type { HttpModeResult, HttpResult } from '../workloads/http.js';
import type { ContentionResult, GrowthResult } from '../workloads/ops.js';
import {
  type Bar,
  barChart,
  formatNumber,
  lineChart,
  type SeriesKind,
  timelineChart,
} from './svg.js';

export const START_MARKER = '<!-- bench:start -->';
export const END_MARKER = '<!-- bench:end -->';

type Row = Record<string, unknown>;

function okResult(outcome: Outcome | undefined): Row | undefined {
  return outcome?.status === 'ok' ? outcome.result : undefined;
}

function num(row: Row | undefined, field: string): number | undefined {
  const value = row?.[field];
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function kindOf(target: TargetInfo): SeriesKind {
  return target.kind;
}

function ms(value: number | undefined): string {
  return value === undefined ? '–' : `${formatNumber(value)} ms`;
}

function ratio(value: number): string {
  if (!Number.isFinite(value) || value <= 0) return '–';
  return `${value >= 10 ? Math.round(value) : value.toFixed(2)}×`;
}

/** The figure, with its spread over repeats when there were several. */
function withSpread(
  outcome: Outcome | undefined,
  field: string,
  format: (v: number) => string,
): string {
  const row = okResult(outcome);
  const value = num(row, field);
  if (value === undefined) return statusText(outcome);
  if (outcome?.status === 'ok' && outcome.runs.length > 1) {
    const [low, high] = outcome.spread[field] ?? [value, value];
    return `${format(value)} <sub>(${format(low)}–${format(high)})</sub>`;
  }
  return format(value);
}

function statusText(outcome: Outcome | undefined): string {
  if (outcome === undefined) return '–';
  if (outcome.status === 'ok') return '–';
  return outcome.status === 'skipped' ? '–' : `_${outcome.status}_`;
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function width(text: string): number {
  return [...text].length;
}

/** A markdown table padded the way the repository's formatter (biome) lays tables out. */
function table(headers: string[], rows: string[][]): string {
  const cells = [headers, ...rows].map((row) => headers.map((_, index) => cell(row[index] ?? '')));
  const widths = headers.map((_, index) =>
    Math.max(3, ...cells.map((row) => width(row[index] ?? ''))),
  );
  // Figures align right; a column with any prose in it aligns left.
  const right = headers.map(
    (_, index) => index > 0 && rows.every((row) => /^([\d–_*]|$)/.test(row[index] ?? '')),
  );
  const line = (row: string[]) =>
    `| ${row
      .map((text, index) => {
        const pad = ' '.repeat((widths[index] ?? 3) - width(text));
        return right[index] ? pad + text : text + pad;
      })
      .join(' | ')} |`;
  const separator = `| ${widths.map((w, index) => (right[index] ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w))).join(' | ')} |`;
  const [head, ...body] = cells;
  return [line(head ?? []), separator, ...body.map(line)].join('\n');
}

/** "1.31× raw-sqlite" style: how many times the baseline's figure the target's is. */
function baselineRatios(
  results: BenchResults['results'][string] | undefined,
  target: TargetInfo,
  field: string,
  baselines: string[],
  invert: boolean,
): string {
  const own = num(okResult(results?.[target.name]), field);
  if (own === undefined || own === 0) return '–';
  const parts: string[] = [];
  for (const name of baselines) {
    const other = num(okResult(results?.[name]), field);
    if (other === undefined || other === 0) continue;
    parts.push(`${ratio(invert ? other / own : own / other)} ${name}`);
  }
  return parts.length > 0 ? parts.join(', ') : '–';
}

interface Charts {
  dir: string;
  /** Path of the charts dir as the markdown links to it. */
  link: string;
  files: Map<string, string>;
}

function addChart(charts: Charts, name: string, svg: string): string {
  charts.files.set(`${name}.svg`, svg);
  return `![${name}](${charts.link}/${name}.svg)`;
}

const OPS_WORKLOADS = ['create', 'create-preloaded', 'read', 'read-missing', 'mixed'];

function opsSection(results: BenchResults, workloadName: string, charts: Charts): string[] {
  const workload = results.workloads.find((w) => w.name === workloadName);
  const byTarget = results.results[workloadName];
  if (workload === undefined || byTarget === undefined) return [];
  const bars: Bar[] = results.targets.map((target) => {
    const outcome = byTarget[target.name];
    const value = num(okResult(outcome), 'opsPerSec') ?? 0;
    return {
      label: target.name,
      value,
      kind: kindOf(target),
      ...(value === 0 ? { note: outcome?.status ?? 'did not run' } : {}),
    };
  });
  const rows = results.targets.map((target) => {
    const outcome = byTarget[target.name];
    const row = okResult(outcome);
    const errors = num(row, 'errors') ?? 0;
    const storeSessions = num(row, 'storeSessions');
    const smallPreload =
      workloadName !== 'create' &&
      storeSessions !== undefined &&
      storeSessions < results.profile.preloadSessions
        ? ` (preload capped at ${formatNumber(storeSessions)})`
        : '';
    return [
      `\`${target.name}\``,
      withSpread(outcome, 'opsPerSec', formatNumber) +
        smallPreload +
        (errors > 0 ? ` (${errors} failed: ${String(row?.firstError ?? '')})` : ''),
      ms(num(row, 'p50Ms')),
      ms(num(row, 'p99Ms')),
      ms(num(row, 'maxMs')),
      target.engine ? baselineRatios(byTarget, target, 'opsPerSec', [target.engine], true) : '',
      target.peers ? baselineRatios(byTarget, target, 'opsPerSec', target.peers, false) : '',
    ];
  });
  return [
    `### ${workload.title}`,
    '',
    `${workload.description}, ${results.profile.concurrency} in flight${workloadName === 'create' ? '' : `; the preload is ${formatNumber(results.profile.preloadSessions)} sessions, or as many as the target wrote in ${Math.round((results.profile.limitsMs.ops * 0.4) / 1000)} s`}.`,
    '',
    addChart(
      charts,
      workloadName,
      barChart(`${workload.title}: ops/s (higher is better)`, 'operations per second', bars),
    ),
    '',
    table(['target', 'ops/s', 'p50', 'p99', 'max', 'cost vs raw engine', 'speed vs peer'], rows),
    '',
  ];
}

function growthSection(results: BenchResults, charts: Charts): string[] {
  const byTarget = results.results.growth;
  if (byTarget === undefined) return [];
  const sizes = results.profile.growthSizes;
  const series = results.targets
    .map((target) => {
      const row = okResult(byTarget[target.name]) as unknown as GrowthResult | undefined;
      return {
        label: target.name,
        dashed: target.kind !== 'sessile',
        points: (row?.points ?? []).map((point) => ({
          x: point.records,
          y: Math.max(point.p50Ms, 0.001),
        })),
      };
    })
    .filter((line) => line.points.length > 0);
  const rows = results.targets.map((target) => {
    const outcome = byTarget[target.name];
    const row = okResult(outcome) as unknown as GrowthResult | undefined;
    if (row === undefined)
      return [`\`${target.name}\``, ...sizes.map(() => statusText(outcome)), ''];
    return [
      `\`${target.name}\``,
      ...sizes.map((size) => {
        const point = row.points.find((p) => p.records === size);
        return point === undefined ? '*not reached*' : `${ms(point.p50Ms)} / ${ms(point.p99Ms)}`;
      }),
      row.reached < row.planned
        ? `stopped at the time limit after ${formatNumber(row.reached)}`
        : '',
    ];
  });
  return [
    '### Growth',
    '',
    `Insert latency (p50 / p99, ${results.profile.growthSampleOps} inserts measured at each size, ${results.profile.concurrency} in flight) as the store grows.`,
    '',
    addChart(
      charts,
      'growth',
      lineChart(
        'Growth: p50 insert latency as the store grows',
        'records in the store',
        'p50 insert latency (ms)',
        series,
      ),
    ),
    '',
    table(['target', ...sizes.map((size) => `at ${formatNumber(size)}`), 'note'], rows),
    '',
  ];
}

function contentionSection(results: BenchResults, charts: Charts): string[] {
  const byTarget = results.results.contention;
  if (byTarget === undefined) return [];
  const bars: Bar[] = results.targets.map((target) => {
    const row = okResult(byTarget[target.name]) as unknown as ContentionResult | undefined;
    const value = row?.cyclesPerSecLocked ?? row?.cyclesPerSecUnlocked ?? 0;
    return {
      label: target.name,
      value,
      kind: kindOf(target),
      note:
        row === undefined
          ? (byTarget[target.name]?.status ?? '')
          : row.lostLocked !== undefined
            ? `locked, lost ${row.lostLocked}`
            : `no lock, lost ${row.lostUnlocked}`,
    };
  });
  const rows = results.targets.map((target) => {
    const outcome = byTarget[target.name];
    const row = okResult(outcome) as unknown as ContentionResult | undefined;
    if (row === undefined) return [`\`${target.name}\``, statusText(outcome), '', '', '', ''];
    return [
      `\`${target.name}\``,
      `${row.lostUnlocked} of ${row.cycles}`,
      formatNumber(row.cyclesPerSecUnlocked),
      row.lostLocked === undefined ? 'no lock' : `**${row.lostLocked}** of ${row.cycles}`,
      row.cyclesPerSecLocked === undefined ? '–' : formatNumber(row.cyclesPerSecLocked),
      row.errors > 0 ? `${row.errors} errors (${row.firstError ?? ''})` : '',
    ];
  });
  return [
    '### Contention',
    '',
    `${results.profile.contentionCycles} read-increment-write cycles started at once on one session, first without any lock, then holding the target's own session lock where it has one. A lost update is an increment that a concurrent write overwrote.`,
    '',
    addChart(
      charts,
      'contention',
      barChart(
        'Contention: cycles/s (with the lock where there is one)',
        'read-modify-write cycles per second',
        bars,
      ),
    ),
    '',
    table(
      [
        'target',
        'lost, no lock',
        'cycles/s, no lock',
        'lost, with lock',
        'cycles/s, with lock',
        'errors',
      ],
      rows,
    ),
    '',
  ];
}

function cleanupSection(results: BenchResults, charts: Charts): string[] {
  const byTarget = results.results.cleanup;
  if (byTarget === undefined) return [];
  const settings = results.profile.cleanup;
  const bars: Bar[] = results.targets.map((target) => {
    const outcome = byTarget[target.name];
    const row = okResult(outcome) as unknown as CleanupResult | undefined;
    const value = row?.maxDuringMs ?? 0;
    return {
      label: target.name,
      value,
      kind: kindOf(target),
      ...(row === undefined
        ? { note: outcome?.status ?? '' }
        : row.cleanups === 0
          ? { note: 'no cleanup' }
          : {}),
    };
  });
  const rows = results.targets.map((target) => {
    const outcome = byTarget[target.name];
    const row = okResult(outcome) as unknown as CleanupResult | undefined;
    if (row === undefined)
      return [`\`${target.name}\``, statusText(outcome), '', '', '', '', '', '', '', ''];
    const peers = (target.peers ?? []).map((peer) => ({
      peer,
      other: okResult(byTarget[peer]) as unknown as CleanupResult | undefined,
    }));
    const versus = peers
      .filter(
        ({ other }) =>
          other !== undefined && other.cleanups > 0 && other.cleanupMs > 0 && row.cleanupMs > 0,
      )
      .map(
        ({ peer, other }) => `${ratio((other as CleanupResult).cleanupMs / row.cleanupMs)} ${peer}`,
      )
      .join(', ');
    return [
      `\`${target.name}\``,
      row.cleanups === 0
        ? 'no cleanup'
        : withSpread(outcome, 'cleanupMs', (v) => `${formatNumber(v)} ms`),
      row.expiredLeft === null ? '?' : String(row.expiredLeft),
      `${ms(row.stallDuringMs)} / ${ms(row.stallOutsideMs)}`,
      `${ms(row.p99DuringMs)} / ${ms(row.p99OutsideMs)}`,
      `${ms(row.maxDuringMs)} / ${ms(row.maxOutsideMs)}`,
      row.cleanups === 0 ? '–' : ratio(row.p99Ratio),
      row.longestLockHoldMs === undefined ? '–' : ms(row.longestLockHoldMs),
      versus || '–',
      row.requestErrors > 0 || row.cleanupError
        ? `${row.requestErrors} request errors${row.cleanupError ? `; cleanup: ${row.cleanupError}` : ''}`
        : '',
    ];
  });
  const panels = results.targets
    .map((target) => {
      const row = okResult(byTarget[target.name]) as unknown as CleanupResult | undefined;
      if (row === undefined) return undefined;
      return {
        label: target.name,
        summary:
          row.cleanups === 0
            ? 'no cleanup'
            : `cleanup ${formatNumber(row.cleanupMs)} ms · worst ${formatNumber(row.maxDuringMs)} ms · stall ${formatNumber(row.stallDuringMs)} ms`,
        points: row.timeline.filter((bucket) => bucket.requests > 0),
        windows: row.windows,
      };
    })
    .filter((panel) => panel !== undefined);
  const methods = results.targets
    .filter((target) => target.cleanup !== undefined)
    .map((target) => `- \`${target.name}\`: ${target.cleanup}`);
  return [
    '### Cleanup under load',
    '',
    `The seed scenario. ${formatNumber(settings.liveSessions)} live and ${formatNumber(settings.expiredSessions)} expired sessions; a steady ${settings.requestsPerSec} requests/s (each a read, one in ten also a write) arrive on a fixed schedule, and every ${settings.triggerEveryRequests}th request triggers the target's own cleanup, as mod_python did. Latency counts from each request's scheduled arrival, so a stall shows as queueing. "During" means the request overlapped a running cleanup.`,
    '',
    addChart(
      charts,
      'cleanup',
      barChart(
        'Cleanup under load: worst request latency during cleanup (lower is better)',
        'milliseconds',
        bars,
      ),
    ),
    '',
    addChart(
      charts,
      'cleanup-timeline',
      timelineChart('Request latency over time through a cleanup', panels),
    ),
    '',
    table(
      [
        'target',
        'cleanup took',
        'expired left',
        'event-loop stall during / outside',
        'p99 during / outside',
        'max during / outside',
        'p99 ratio',
        'longest global lock hold',
        'cleanup speed vs peer',
        'errors',
      ],
      rows,
    ),
    '',
    'How each target cleans:',
    '',
    ...methods,
    '',
  ];
}

function httpModeText(mode: HttpModeResult | undefined): [string, string] {
  if (mode === undefined) return ['–', '–'];
  if (mode.status !== 'ok') return [`_${mode.status}_`, ''];
  const errors = (mode.non2xx ?? 0) + (mode.errors ?? 0);
  return [
    `${formatNumber(mode.requestsPerSec ?? 0)}${errors > 0 ? ` (${formatNumber(errors)} failed)` : ''}`,
    ms(mode.p99Ms),
  ];
}

function httpSection(results: BenchResults, charts: Charts): string[] {
  const byTarget = results.results.http;
  if (byTarget === undefined) return [];
  const bars: Bar[] = [];
  const rows: string[][] = [];
  const notes: string[] = [];
  for (const target of results.targets) {
    const outcome = byTarget[target.name];
    if (outcome?.status === 'skipped') continue;
    const row = okResult(outcome) as unknown as HttpResult | undefined;
    if (row?.sessile?.status === 'ok') {
      bars.push({
        label: `${target.name} (sessile middleware)`,
        value: row.sessile.requestsPerSec ?? 0,
        kind: 'sessile',
      });
    }
    bars.push({
      label: `${target.name} (express-session)`,
      value: row?.expressSession.requestsPerSec ?? 0,
      kind: kindOf(target),
      ...(row?.expressSession.status === 'ok'
        ? {}
        : { note: row?.expressSession.status ?? outcome?.status ?? '' }),
    });
    const [esRate, esP99] = httpModeText(row?.expressSession);
    const [slRate, slP99] = httpModeText(row?.sessile);
    const workers = row?.expressSession.workers ?? row?.sessile?.workers;
    rows.push([
      `\`${target.name}\``,
      workers === undefined ? statusText(outcome) : String(workers),
      esRate,
      esP99,
      target.kind === 'sessile' ? slRate : '',
      target.kind === 'sessile' ? slP99 : '',
      target.peers ? baselineRatios(byTarget, target, 'requestsPerSec', target.peers, false) : '',
    ]);
    for (const [label, mode] of [
      ['express-session', row?.expressSession],
      ['sessile middleware', row?.sessile],
    ] as const) {
      if (mode !== undefined && mode.status !== 'ok')
        notes.push(`- \`${target.name}\` ${label}: ${mode.status}: ${mode.reason ?? ''}`);
    }
    if (outcome !== undefined && outcome.status !== 'ok')
      notes.push(`- \`${target.name}\`: ${outcome.status}: ${outcome.reason}`);
  }
  const http = results.profile.http;
  return [
    '### HTTP end to end',
    '',
    `An Express 5 app whose one route loads the session, bumps a counter and saves it, in ${http.workers} worker processes (one when the store lives in one process's memory or directory). autocannon on 127.0.0.1 with ${http.connections} connections for ${http.durationSec} s; each connection keeps its session cookie for 20 requests, then starts a new session.`,
    '',
    addChart(
      charts,
      'http',
      barChart('HTTP end to end: requests/s (higher is better)', 'requests per second', bars),
    ),
    '',
    table(
      [
        'target',
        'workers',
        'express-session req/s',
        'p99',
        'sessile middleware req/s',
        'p99',
        'speed vs peer (express-session)',
      ],
      rows,
    ),
    '',
    ...(notes.length > 0 ? ['Not measured:', '', ...notes, ''] : []),
  ];
}

function environmentSection(results: BenchResults): string[] {
  const env = results.environment;
  const versions = Object.entries(env.packages)
    .filter(([name]) => !name.startsWith('@sessile/'))
    .map(([name, version]) => `${name} ${version}`)
    .join(', ');
  return [
    `Generated by \`pnpm bench${results.profile.name === 'full' ? ' --full' : ''}\` on ${env.date.slice(0, 16).replace('T', ' ')} UTC in ${results.durationSec < 120 ? `${results.durationSec} s` : `${Math.round(results.durationSec / 60)} min`}${results.repeat > 1 ? `, ${results.repeat} repeats (median, spread in brackets)` : ', one run'}.`,
    `Node ${env.node} on ${env.cpuModel}, ${env.cores} cores, ${env.memoryGiB} GiB, ${env.platform}; load average ${env.loadAverage} at the start${env.gitCommit ? `; commit ${env.gitCommit}` : ''}.${spreadNote(env.spreadTempDirs)}`,
    `Peers and engines: ${versions}.`,
    '',
  ];
}

function targetsSection(results: BenchResults): string[] {
  const rows = results.targets.map((target) => [
    `\`${target.name}\``,
    target.kind === 'engine' ? 'raw engine' : target.kind,
    target.description,
    target.durability,
    target.status === 'ok' ? 'measured' : `unavailable: ${target.reason ?? ''}`,
  ]);
  return ['### Targets', '', table(['target', 'kind', 'what', 'durability', 'status'], rows), ''];
}

/** One line per sessile store: its ratios against its main peer and its raw engine, and its locks. */
function headlineSection(results: BenchResults): string[] {
  const figure = (workload: string, name: string | undefined, field: string) =>
    name === undefined ? undefined : num(okResult(results.results[workload]?.[name]), field);
  const versus = (
    workload: string,
    target: TargetInfo,
    baseline: string | undefined,
    invert: boolean,
  ) => {
    const own = figure(workload, target.name, 'opsPerSec');
    const other = figure(workload, baseline, 'opsPerSec');
    return own === undefined || other === undefined || own === 0 || other === 0
      ? '–'
      : ratio(invert ? other / own : own / other);
  };
  // Reads of unknown ids per second over reads of stored ones: 1× means an unknown id costs the same.
  const unknownVersusKnown = (name: string) => {
    const unknown = figure('read-missing', name, 'opsPerSec');
    const known = figure('read', name, 'opsPerSec');
    return unknown === undefined || known === undefined || known === 0
      ? '–'
      : ratio(unknown / known);
  };
  const rows = results.targets
    .filter((target) => target.kind === 'sessile' && target.status === 'ok')
    .map((target) => {
      const peer = target.peers?.[0];
      const contention = okResult(results.results.contention?.[target.name]) as unknown as
        | ContentionResult
        | undefined;
      const cleanup = okResult(results.results.cleanup?.[target.name]) as unknown as
        | CleanupResult
        | undefined;
      const peerCleanup =
        peer === undefined
          ? undefined
          : (okResult(results.results.cleanup?.[peer]) as unknown as CleanupResult | undefined);
      return [
        `\`${target.name}\``,
        peer === undefined ? '–' : `\`${peer}\``,
        versus('create', target, peer, false),
        versus('read', target, peer, false),
        versus('mixed', target, peer, false),
        unknownVersusKnown(target.name),
        target.engine === undefined
          ? '–'
          : `${versus('create', target, target.engine, true)} / ${versus('read', target, target.engine, true)} / ${versus('mixed', target, target.engine, true)}`,
        contention?.lostLocked === undefined
          ? '–'
          : `${contention.lostLocked} of ${contention.cycles}`,
        cleanup === undefined
          ? '–'
          : `${ms(cleanup.maxDuringMs)}${peerCleanup !== undefined && peerCleanup.cleanups > 0 ? ` (peer ${ms(peerCleanup.maxDuringMs)})` : ''}`,
      ];
    });
  if (rows.length === 0) return [];
  return [
    '### Headlines',
    '',
    'Each sessile store against its main peer (speed: above 1× is faster) and against its raw engine (cost: 1× is no overhead). Details and every other target below.',
    '',
    table(
      [
        'store',
        'main peer',
        'create vs peer',
        'read vs peer',
        'mixed vs peer',
        'unknown-id read vs its own read',
        'cost vs raw engine (create / read / mixed)',
        'lost updates with locks',
        'worst latency during cleanup',
      ],
      rows,
    ),
    '',
  ];
}

/** The generated part of docs/benchmarks.md, and the charts it links to. */
export function renderReport(
  results: BenchResults,
  chartsLink: string,
): { markdown: string; charts: Map<string, string> } {
  const charts: Charts = { dir: '', link: chartsLink, files: new Map() };
  const lines = [
    ...environmentSection(results),
    ...headlineSection(results),
    ...targetsSection(results),
    ...OPS_WORKLOADS.flatMap((name) => opsSection(results, name, charts)),
    ...growthSection(results, charts),
    ...contentionSection(results, charts),
    ...cleanupSection(results, charts),
    ...httpSection(results, charts),
  ];
  return { markdown: lines.join('\n'), charts: charts.files };
}

const DEFAULT_DOC = `# Benchmarks

${START_MARKER}
${END_MARKER}
`;

/** Replaces what lies between the markers in `docPath` (creating the file if needed) and writes the charts. */
export async function writeReport(
  results: BenchResults,
  docPath: string,
  chartsDir: string,
): Promise<void> {
  const link = relative(dirname(docPath), chartsDir).split('\\').join('/') || basename(chartsDir);
  const { markdown, charts } = renderReport(results, link);
  const existing = await readFile(docPath, 'utf8').catch(() => DEFAULT_DOC);
  const start = existing.indexOf(START_MARKER);
  const end = existing.indexOf(END_MARKER);
  const base =
    start === -1 || end === -1 || end < start
      ? `${existing.trimEnd()}\n\n${START_MARKER}\n${END_MARKER}\n`
      : existing;
  const from = base.indexOf(START_MARKER) + START_MARKER.length;
  const to = base.indexOf(END_MARKER);
  const updated = `${base.slice(0, from)}\n${markdown}\n${base.slice(to)}`;
  await mkdir(dirname(docPath), { recursive: true });
  await mkdir(chartsDir, { recursive: true });
  await writeFile(docPath, updated);
  await Promise.all([...charts].map(([name, svg]) => writeFile(join(chartsDir, name), svg)));
}

/** Says where the targets' files were, when the run recorded it. */
function spreadNote(spread: boolean | undefined): string {
  if (spread === undefined) return '';
  return spread
    ? ' Each target wrote into a directory of its own block group (`chattr +T`), so none paid for files another had deleted.'
    : " The targets' directories shared the filesystem's block groups (`chattr +T` was not available).";
}
