import type { BenchResults, Outcome } from '../../results.js';
import type { NumericField } from '../../workloads/context.js';
import { okResult, ratio, withSpread } from '../format.js';
import { formatNumber } from '../svg.js';
import { table } from '../table.js';

const millis = (value: number) => `${formatNumber(value)} ms`;

/** A count, with its spread only where the repeats disagreed: "0 lost" should read as 0. */
function count<R>(outcome: Outcome<R> | undefined, field: NumericField<R>): string {
  const spread = outcome?.status === 'ok' ? outcome.spread[field] : undefined;
  return spread !== undefined && spread[0] === spread[1]
    ? String(spread[0])
    : withSpread(outcome, field, String);
}

function notMeasured<R>(target: string, label: string, outcome: Outcome<R> | undefined): string[] {
  return outcome === undefined || outcome.status === 'ok' || outcome.status === 'skipped'
    ? []
    : [`- \`${target}\` ${label}: ${outcome.status}: ${outcome.reason}`];
}

/** Many parallel requests for one session: timeouts, lost updates and the cost of waiting in line. */
export function lockFloodSection(results: BenchResults): string[] {
  const direct = results.results['lock-flood'];
  const overHttp = results.results['lock-flood-http'];
  if (direct === undefined && overHttp === undefined) return [];
  const rows: string[][] = [];
  const notes: string[] = [];
  for (const target of results.targets) {
    const outcome = direct?.[target.name];
    const http = overHttp?.[target.name];
    const measured = [outcome, http].filter((o) => o !== undefined && o.status !== 'skipped');
    if (measured.length === 0) continue;
    const row = okResult(outcome);
    const httpRow = okResult(http);
    const errors = [
      ...(row !== undefined && row.errors > 0
        ? [`${row.errors} errors (${row.firstError ?? ''})`]
        : []),
      ...(httpRow !== undefined && httpRow.failed > 0
        ? [`HTTP: ${httpRow.failed} failed (${httpRow.firstFailure ?? ''})`]
        : []),
    ];
    rows.push([
      `\`${target.name}\``,
      withSpread(outcome, 'uncontendedCycleMs', millis),
      count(outcome, 'timeouts'),
      count(outcome, 'lost'),
      withSpread(outcome, 'msPerSavedCycle', millis),
      withSpread(outcome, 'contendedRatio', ratio),
      withSpread(outcome, 'longestStallMs', millis),
      count(http, 'busy'),
      count(http, 'lost'),
      withSpread(http, 'msPerServed', millis),
      errors.join('; '),
    ]);
    notes.push(
      ...notMeasured(target.name, 'direct', outcome),
      ...notMeasured(target.name, 'over HTTP', http),
    );
  }
  const cycles = results.profile.lockFlood.cycles.toLocaleString('en-US');
  const { workers } = results.profile.http;
  return [
    '### Lock flood',
    '',
    `${cycles} lock-read-increment-write-release cycles started at once on one session, each taking the store's session lock with its default \`waitMs\`, as that many parallel requests of one user would. Before them, the same cycle run one at a time on another session gives the uncontended cycle time. A timeout is a cycle whose lock was not free within the wait; a lost update is an increment the session does not show, and must never happen. "Contended / uncontended" is the flood's time per saved cycle over the uncontended cycle time: waiting in line should cost little more than the cycles themselves (the goal is at most 1.5×). The longest event-loop stall during the flood shows whether the waiters got the lock one after another without the process ever getting a turn: while that lasts no timer fires, the waits' own \`waitMs\` included, and nothing else is served.`,
    '',
    ...(overHttp === undefined
      ? []
      : [
          `Over HTTP, ${cycles} requests with one session cookie reach the Express app of the HTTP workload at once, with sessile's locking middleware and its default lock settings, in ${workers} worker processes (one when the store lives in one process's memory or directory); the app answers a lock timeout with 503.`,
          '',
        ]),
    table(
      [
        'target',
        'uncontended cycle',
        `timeouts (of ${cycles})`,
        'lost',
        'per saved cycle',
        'contended / uncontended',
        'longest event-loop stall',
        'HTTP 503s',
        'HTTP lost',
        'HTTP per served request',
        'errors',
      ],
      rows,
    ),
    '',
    ...(notes.length > 0 ? ['Not measured:', '', ...notes, ''] : []),
  ];
}
