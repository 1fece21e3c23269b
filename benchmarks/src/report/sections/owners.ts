import type { BenchResults } from '../../results.js';
import { OWNER_ROUNDS } from '../../workloads/owners.js';
import { ms, okResult, statusText } from '../format.js';
import { formatNumber } from '../svg.js';
import { table } from '../table.js';

function percent(value: number): string {
  return `${value >= 0 ? '+' : ''}${Math.round(value * 100)}%`;
}

/** Listing an owner's sessions, and the owner index's cost on set and get. */
export function ownersSection(results: BenchResults): string[] {
  const byTarget = results.results.owners;
  if (byTarget === undefined) return [];
  const rows: string[][] = [];
  for (const target of results.targets) {
    const outcome = byTarget[target.name];
    if (outcome === undefined || outcome.status === 'skipped') continue;
    const row = okResult(outcome);
    if (row === undefined) {
      rows.push([`\`${target.name}\``, statusText(outcome), '', '', '', '', '', '', '']);
      continue;
    }
    rows.push([
      `\`${target.name}\``,
      formatNumber(row.listsPerSec),
      ms(row.listP99Ms),
      formatNumber(row.setWithOwnerPerSec),
      formatNumber(row.setWithoutOwnerPerSec),
      `**${percent(row.setOverhead)}**`,
      formatNumber(row.getWithOwnerPerSec),
      formatNumber(row.getWithoutOwnerPerSec),
      `**${percent(row.getOverhead)}**`,
    ]);
  }
  if (rows.length === 0) return [];
  const { sessions, owners } = results.profile.owners;
  return [
    '### Sessions by user',
    '',
    `${formatNumber(sessions)} sessions of ${formatNumber(owners)} owners. \`ownedBy(owner)\` lists one owner's live sessions with their records, for owners picked across the whole range, ${results.profile.concurrency} calls in flight; each call's count is checked. Beside it, the same sessions are written into two fresh stores of the same kind, one with owners and one without, in ${OWNER_ROUNDS} rounds that alternate which store goes first, then read back the same way; the first round warms up and is not counted. The overhead is how much slower \`set\` and \`get\` are with the owner index than without: in each counted round, the rate without owners over the rate with them, and the median of those paired ratios (the rate columns are medians of the rounds on their own).`,
    '',
    table(
      [
        'store',
        'listings/s',
        'listing p99',
        'set/s, owners',
        'set/s, none',
        'set overhead',
        'get/s, owners',
        'get/s, none',
        'get overhead',
      ],
      rows,
    ),
    '',
  ];
}
