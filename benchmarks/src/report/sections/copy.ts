import type { BenchResults } from '../../results.js';
import { okResult, ratio, statusText } from '../format.js';
import { formatNumber } from '../svg.js';
import { table } from '../table.js';

/** `sessile copy` into each store, against that store's own write rate. */
export function copySection(results: BenchResults): string[] {
  const byTarget = results.results.copy;
  if (byTarget === undefined) return [];
  const measured = results.targets.filter((target) => byTarget[target.name] !== undefined);
  const rows = measured.flatMap((target) => {
    const outcome = byTarget[target.name];
    if (outcome?.status === 'skipped') return [];
    const row = okResult(outcome);
    if (row === undefined) return [[`\`${target.name}\``, statusText(outcome), '', '', '']];
    return [
      [
        `\`${target.name}\``,
        formatNumber(row.sessions),
        formatNumber(row.copyPerSec),
        formatNumber(row.directPerSec),
        `**${ratio(row.ratioToDirect)}**`,
      ],
    ];
  });
  if (rows.length === 0) return [];
  return [
    '### Copy between stores',
    '',
    `\`sessile copy --from file:… --to <store>\` run as a separate process (its start-up included) moves ${formatNumber(results.profile.copySessions)} live sessions out of a FileStore. Beside it, the same records are written straight into a fresh store of the same kind with \`set(id, record, { only: 'absent' })\`, in process, 64 in flight, as the copy writes them. The ratio is what the copy keeps of the store's own write rate.`,
    '',
    table(
      ['into', 'sessions', 'copy, sessions/s', 'direct set, sessions/s', 'copy / direct'],
      rows,
    ),
    '',
  ];
}
