import type { BenchResults } from '../../results.js';
import { addChart, type Charts } from '../charts.js';
import { okResult, statusText } from '../format.js';
import { type Bar, barChart, formatNumber } from '../svg.js';
import { table } from '../table.js';

/** Lost updates with and without the target's session lock. */
export function contentionSection(results: BenchResults, charts: Charts): string[] {
  const byTarget = results.results.contention;
  if (byTarget === undefined) return [];
  const bars: Bar[] = results.targets.map((target) => {
    const row = okResult(byTarget[target.name]);
    const value = row?.cyclesPerSecLocked ?? row?.cyclesPerSecUnlocked ?? 0;
    return {
      label: target.name,
      value,
      kind: target.kind,
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
    const row = okResult(outcome);
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
