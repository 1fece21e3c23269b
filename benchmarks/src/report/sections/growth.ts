import type { BenchResults } from '../../results.js';
import { addChart, type Charts } from '../charts.js';
import { ms, okResult, statusText } from '../format.js';
import { formatNumber, lineChart } from '../svg.js';
import { table } from '../table.js';

/** Insert latency at each store size, as a line chart and a table. */
export function growthSection(results: BenchResults, charts: Charts): string[] {
  const byTarget = results.results.growth;
  if (byTarget === undefined) return [];
  const sizes = results.profile.growthSizes;
  const series = results.targets
    .map((target) => {
      const row = okResult(byTarget[target.name]);
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
    const row = okResult(outcome);
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
