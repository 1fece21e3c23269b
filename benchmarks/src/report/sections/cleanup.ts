import type { BenchResults } from '../../results.js';
import { addChart, type Charts } from '../charts.js';
import { ms, okResult, ratio, stall, statusText, withSpread } from '../format.js';
import { type Bar, barChart, formatNumber, type TimelinePanel, timelineChart } from '../svg.js';
import { table } from '../table.js';

/** The seed scenario: request latency while each target cleans expired sessions its own way. */
export function cleanupSection(results: BenchResults, charts: Charts): string[] {
  const byTarget = results.results.cleanup;
  if (byTarget === undefined) return [];
  const settings = results.profile.cleanup;
  const bars: Bar[] = results.targets.map((target) => {
    const outcome = byTarget[target.name];
    const row = okResult(outcome);
    const value = row?.maxDuringMs ?? 0;
    return {
      label: target.name,
      value,
      kind: target.kind,
      ...(row === undefined
        ? { note: outcome?.status ?? '' }
        : row.cleanups === 0
          ? { note: 'no cleanup' }
          : {}),
    };
  });
  const rows = results.targets.map((target) => {
    const outcome = byTarget[target.name];
    const row = okResult(outcome);
    if (row === undefined)
      return [`\`${target.name}\``, statusText(outcome), '', '', '', '', '', '', '', ''];
    const versus = (target.peers ?? [])
      .flatMap((peer) => {
        const other = okResult(byTarget[peer]);
        return other !== undefined && other.cleanups > 0 && other.cleanupMs > 0 && row.cleanupMs > 0
          ? [`${ratio(other.cleanupMs / row.cleanupMs)} ${peer}`]
          : [];
      })
      .join(', ');
    return [
      `\`${target.name}\``,
      row.cleanups === 0
        ? 'no cleanup'
        : withSpread(outcome, 'cleanupMs', (v) => `${formatNumber(v)} ms`),
      row.expiredLeft === null ? '?' : String(row.expiredLeft),
      `${stall(row.stallDuringMs, row.onCpuStallDuringMs)} / ${stall(row.stallOutsideMs, row.onCpuStallOutsideMs)}`,
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
  const panels = results.targets.flatMap((target): TimelinePanel[] => {
    const row = okResult(byTarget[target.name]);
    if (row === undefined) return [];
    return [
      {
        label: target.name,
        summary:
          row.cleanups === 0
            ? 'no cleanup'
            : `cleanup ${formatNumber(row.cleanupMs)} ms · worst ${formatNumber(row.maxDuringMs)} ms · stall ${formatNumber(row.stallDuringMs)} ms`,
        points: row.timeline.filter((bucket) => bucket.requests > 0),
        windows: row.windows,
      },
    ];
  });
  const methods = results.targets
    .filter((target) => target.cleanup !== undefined)
    .map((target) => `- \`${target.name}\`: ${target.cleanup}`);
  return [
    '### Cleanup under load',
    '',
    `The seed scenario. ${formatNumber(settings.liveSessions)} live and ${formatNumber(settings.expiredSessions)} expired sessions; a steady ${settings.requestsPerSec} requests/s (each a read, one in ten also a write) arrive on a fixed schedule, and every ${settings.triggerEveryRequests}th request triggers the target's own cleanup, as mod_python did. Latency counts from each request's scheduled arrival, so a stall shows as queueing. "During" means the request overlapped a running cleanup. A stall is the longest gap between two 1 ms probes of the event loop; "on CPU" counts only the time the benchmark's main thread ran in that gap (Linux schedstat), which leaves out the time a loaded machine gave other processes.`,
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
