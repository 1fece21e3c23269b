import type { BenchResults, OpsWorkloadName, TargetInfo } from '../../results.js';
import { figure, ms, okResult, ratio } from '../format.js';
import { table } from '../table.js';

/** One line per sessile store: its ratios against its main peer and its raw engine, and its locks. */
export function headlineSection(results: BenchResults): string[] {
  const opsPerSec = (workload: OpsWorkloadName, name: string | undefined) =>
    name === undefined ? undefined : figure(results.results[workload]?.[name], 'opsPerSec');
  const versus = (
    workload: OpsWorkloadName,
    target: TargetInfo,
    baseline: string | undefined,
    invert: boolean,
  ) => {
    const own = opsPerSec(workload, target.name);
    const other = opsPerSec(workload, baseline);
    return own === undefined || other === undefined || own === 0 || other === 0
      ? '–'
      : ratio(invert ? other / own : own / other);
  };
  // Reads of unknown ids per second over reads of stored ones: 1× means an unknown id costs the same.
  const unknownVersusKnown = (name: string) => {
    const unknown = opsPerSec('read-missing', name);
    const known = opsPerSec('read', name);
    return unknown === undefined || known === undefined || known === 0
      ? '–'
      : ratio(unknown / known);
  };
  const rows = results.targets
    .filter((target) => target.kind === 'sessile' && target.status === 'ok')
    .map((target) => {
      const peer = target.peers?.[0];
      const contention = okResult(results.results.contention?.[target.name]);
      const cleanup = okResult(results.results.cleanup?.[target.name]);
      const peerCleanup =
        peer === undefined ? undefined : okResult(results.results.cleanup?.[peer]);
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
