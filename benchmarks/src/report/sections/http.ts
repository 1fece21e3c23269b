import { median } from '../../measure.js';
import type { BenchResults, Outcome } from '../../results.js';
import type { HttpModeResult, HttpResult } from '../../workloads/http.js';
import { addChart, type Charts } from '../charts.js';
import { baselineRatios, medianRatio, ms, okResult, ratio, statusText } from '../format.js';
import { type Bar, barChart, formatNumber } from '../svg.js';
import { table } from '../table.js';

export function httpModeText(mode: HttpModeResult | undefined): [string, string] {
  if (mode === undefined) return ['–', '–'];
  if (mode.status !== 'ok') return [`_${mode.status}_`, ''];
  const errors = (mode.non2xx ?? 0) + (mode.errors ?? 0);
  return [
    `${formatNumber(mode.requestsPerSec ?? 0)}${errors > 0 ? ` (${formatNumber(errors)} failed)` : ''}`,
    ms(mode.p99Ms),
  ];
}

/** One mode's rate in each run of a measured outcome; undefined where it did not run. */
function ratesOf(
  outcome: Outcome<HttpResult> | undefined,
  mode: 'expressSession' | 'sessile',
): (number | undefined)[] {
  if (outcome?.status !== 'ok') return [];
  return outcome.runs.map((run) => {
    const result = run[mode];
    return result?.status === 'ok' ? result.requestsPerSec : undefined;
  });
}

/**
 * Each round's sessile() rate over the rate of express-session on `baseline` in that round
 * (this same store, or a peer the run served beside it), median of the rounds; undefined for a
 * run that did not serve them in turns (results from before the rounds).
 */
function roundsRatio(run: HttpResult, baseline: string, own: string): number | undefined {
  const rounds = run.rounds;
  if (rounds === undefined) return undefined;
  const other =
    baseline === own
      ? rounds.expressSession
      : run.peers?.find((peer) => peer.name === baseline)?.rounds;
  if (other === undefined) return undefined;
  return medianRatio(rounds.sessile, other);
}

/**
 * sessile() over express-session on `baseline` (this same store, or a peer). Where a run served
 * them in turns, its ratio is the median of its rounds' ratios, and the result the median of
 * the runs'. Otherwise run by run as `medianRatio` pairs them: within a run the two were
 * measured one after the other, where a ratio of two medians could pair a quick run of one with
 * a slow run of the other (runs of one app here ranged over 1.5× within one benchmark).
 */
export function sessileOver(
  byTarget: Partial<Record<string, Outcome<HttpResult>>> | undefined,
  own: string,
  baseline: string,
): number | undefined {
  const outcome = byTarget?.[own];
  if (outcome?.status === 'ok') {
    const paired = outcome.runs.map((run) => roundsRatio(run, baseline, own));
    if (paired.every((ratio) => ratio !== undefined)) return median(paired as number[]);
  }
  return medianRatio(ratesOf(outcome, 'sessile'), ratesOf(byTarget?.[baseline], 'expressSession'));
}

/** sessile() over each peer the run served in turns with this store's apps: "1.2× `peer`". */
function versusPeersText(
  byTarget: Partial<Record<string, Outcome<HttpResult>>>,
  own: string,
  row: HttpResult | undefined,
): string {
  const parts = (row?.peers ?? []).map(
    ({ name }) => `${ratioText(sessileOver(byTarget, own, name))} \`${name}\``,
  );
  return parts.length === 0 ? '–' : parts.join(', ');
}

function ratioText(value: number | undefined): string {
  return value === undefined ? '–' : ratio(value);
}

/** Requests per second through Express, with express-session and with sessile's middleware. */
export function httpSection(results: BenchResults, charts: Charts): string[] {
  const byTarget = results.results.http;
  if (byTarget === undefined) return [];
  const bars: Bar[] = [];
  const rows: string[][] = [];
  const notes: string[] = [];
  for (const target of results.targets) {
    const outcome = byTarget[target.name];
    if (outcome?.status === 'skipped') continue;
    const row = okResult(outcome);
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
      kind: target.kind,
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
      target.kind === 'sessile' ? ratioText(sessileOver(byTarget, target.name, target.name)) : '',
      target.kind === 'sessile' ? versusPeersText(byTarget, target.name, row) : '',
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
    `An Express 5 app whose one route loads the session, bumps a counter and saves it, in ${http.workers} worker processes (one when the store lives in one process's memory or directory). autocannon on 127.0.0.1 with ${http.connections} connections for ${http.durationSec} s; each connection keeps its session cookie for 20 requests, then starts a new session. A peer's app takes the load for ${http.durationSec} s. A sessile store's apps (express-session and sessile() over it) and express-session over its main peer (for some stores over other peers too, as the table names them) all start together and take the load in turns, ${http.rounds} rounds of ${http.roundSec} s each after a first of ${http.durationSec} s that warms them up, the order turning every round, so a slow spell of the machine falls on all of them alike. Their rates and p99s are the median round's; the ratios of sessile() to the others (here and in the headlines) are medians of the rounds' own ratios, then of the runs'.`,
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
        'sessile middleware / express-session, same store',
        'sessile middleware / express-session over the peers served in turns',
        'speed vs peer (express-session)',
      ],
      rows,
    ),
    '',
    ...(notes.length > 0 ? ['Not measured:', '', ...notes, ''] : []),
  ];
}
