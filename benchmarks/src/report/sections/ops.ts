import type { BenchResults, OpsWorkloadName } from '../../results.js';
import { PRELOAD_SHARE_OF_LIMIT } from '../../workloads/ops.js';
import { addChart, type Charts } from '../charts.js';
import { baselineRatios, figure, ms, okResult, withSpread } from '../format.js';
import { type Bar, barChart, formatNumber } from '../svg.js';
import { table } from '../table.js';

/** The throughput workloads, in report order. */
export const OPS_WORKLOADS: readonly OpsWorkloadName[] = [
  'create',
  'create-preloaded',
  'create-after-deletes',
  'read',
  'read-missing',
  'mixed',
];

/** One throughput workload: ops/s and latencies, against the raw engine and the peers. */
export function opsSection(
  results: BenchResults,
  workloadName: OpsWorkloadName,
  charts: Charts,
): string[] {
  const workload = results.workloads.find((w) => w.name === workloadName);
  const byTarget = results.results[workloadName];
  if (workload === undefined || byTarget === undefined) return [];
  const bars: Bar[] = results.targets.map((target) => {
    const outcome = byTarget[target.name];
    const value = figure(outcome, 'opsPerSec') ?? 0;
    return {
      label: target.name,
      value,
      kind: target.kind,
      ...(value === 0 ? { note: outcome?.status ?? 'did not run' } : {}),
    };
  });
  const rows = results.targets.map((target) => {
    const outcome = byTarget[target.name];
    const errors = figure(outcome, 'errors') ?? 0;
    const storeSessions = figure(outcome, 'storeSessions');
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
        (errors > 0 ? ` (${errors} failed: ${String(okResult(outcome)?.firstError ?? '')})` : ''),
      ms(figure(outcome, 'p50Ms')),
      ms(figure(outcome, 'p99Ms')),
      ms(figure(outcome, 'maxMs')),
      target.engine ? baselineRatios(byTarget, target, 'opsPerSec', [target.engine], true) : '',
      target.peers ? baselineRatios(byTarget, target, 'opsPerSec', target.peers, false) : '',
    ];
  });
  return [
    `### ${workload.title}`,
    '',
    `${workload.description}, ${results.profile.concurrency} in flight${workloadName === 'create' ? '' : `; the preload is ${formatNumber(results.profile.preloadSessions)} sessions, or as many as the target wrote in ${Math.round((results.profile.limitsMs.ops * PRELOAD_SHARE_OF_LIMIT) / 1000)} s`}.`,
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
