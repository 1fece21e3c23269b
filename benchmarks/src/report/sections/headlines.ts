import type { BenchResults, OpsWorkloadName, TargetInfo } from '../../results.js';
import { figure, ms, okResult, pairedRatio, ratio, stall } from '../format.js';
import { table } from '../table.js';
import { sessileOver } from './http.js';

const HEADLINE_WORKLOADS: readonly OpsWorkloadName[] = ['create', 'read', 'mixed'];

/** The figures behind one store's headline, shared with the store READMEs' generated blocks. */
export interface StoreHeadline {
  target: TargetInfo;
  peer: string | undefined;
  /** `<store>-express`, when it ran: the store behind `toExpressStore`. */
  viaExpress: string | undefined;
  /** own / other ops/s on `workload`; undefined when either was not measured. */
  speed(
    workload: OpsWorkloadName,
    own: string | undefined,
    other: string | undefined,
  ): number | undefined;
  /** sessile() middleware req/s over express-session over the peer, or over this same store. */
  httpVersus(baseline: string | undefined): number | undefined;
}

export function storeHeadline(results: BenchResults, target: TargetInfo): StoreHeadline {
  const outcome = (workload: OpsWorkloadName, name: string | undefined) =>
    name === undefined ? undefined : results.results[workload]?.[name];
  const viaExpress = results.targets.find(
    (other) => other.viaExpressOf === target.name && other.status === 'ok',
  )?.name;
  return {
    target,
    peer: target.peers?.[0],
    viaExpress,
    speed(workload, own, other) {
      return pairedRatio(outcome(workload, own), outcome(workload, other), 'opsPerSec');
    },
    httpVersus(baseline) {
      return baseline === undefined
        ? undefined
        : sessileOver(results.results.http, target.name, baseline);
    },
  };
}

/** "a / b / c" over create, read and mixed; '–' when none was measured. */
export function triple(value: (workload: OpsWorkloadName) => number | undefined): string {
  const parts = HEADLINE_WORKLOADS.map((workload) => {
    const v = value(workload);
    return v === undefined ? '–' : ratio(v);
  });
  return parts.every((part) => part === '–') ? '–' : parts.join(' / ');
}

/** The sessile stores measured natively, in report order. */
export function nativeStores(results: BenchResults): TargetInfo[] {
  return results.targets.filter(
    (target) =>
      target.kind === 'sessile' && target.status === 'ok' && target.viaExpressOf === undefined,
  );
}

/**
 * One line per sessile store. The headline ratio drives the store and its peer through the same
 * express-session `Store` API; the native API and `sessile()` columns are what switching fully
 * gains, and the adapter column is what `toExpressStore` itself costs.
 */
export function headlineSection(results: BenchResults): string[] {
  const opsPerSec = (workload: OpsWorkloadName, name: string) =>
    figure(results.results[workload]?.[name], 'opsPerSec');
  // Reads of unknown ids per second over reads of stored ones: 1× means an unknown id costs the same.
  const unknownVersusKnown = (name: string) => {
    const unknown = opsPerSec('read-missing', name);
    const known = opsPerSec('read', name);
    return unknown === undefined || known === undefined || known === 0
      ? '–'
      : ratio(unknown / known);
  };
  const rows = nativeStores(results).map((target) => {
    const h = storeHeadline(results, target);
    const name = target.name;
    const contention = okResult(results.results.contention?.[name]);
    const cleanup = okResult(results.results.cleanup?.[name]);
    const peerCleanup =
      h.peer === undefined ? undefined : okResult(results.results.cleanup?.[h.peer]);
    const httpPeer = h.httpVersus(h.peer);
    const httpSame = h.httpVersus(name);
    return [
      `\`${name}\``,
      h.peer === undefined ? '–' : `\`${h.peer}\``,
      triple((w) => h.speed(w, h.viaExpress, h.peer)),
      triple((w) => h.speed(w, name, h.peer)),
      httpPeer === undefined && httpSame === undefined
        ? '–'
        : `${httpPeer === undefined ? '–' : ratio(httpPeer)} / ${httpSame === undefined ? '–' : ratio(httpSame)}`,
      triple((w) => h.speed(w, name, h.viaExpress)),
      triple((w) => h.speed(w, target.engine, name)),
      unknownVersusKnown(name),
      contention?.lostLocked === undefined
        ? '–'
        : `${contention.lostLocked} of ${contention.cycles}`,
      cleanup === undefined
        ? '–'
        : `${ms(cleanup.maxDuringMs)}${peerCleanup !== undefined && peerCleanup.cleanups > 0 ? ` (peer ${ms(peerCleanup.maxDuringMs)})` : ''}`,
      cleanup === undefined ? '–' : stall(cleanup.stallDuringMs, cleanup.onCpuStallDuringMs),
    ];
  });
  if (rows.length === 0) return [];
  return [
    '### Headlines',
    '',
    'Each sessile store against its main peer (above 1× is faster) and against its raw engine (1× is no overhead); create / read / mixed. Details and every other target below.',
    '',
    "- **vs peer, same API** is the fair comparison: the store behind `toExpressStore` (the `-express` target) and the peer, both driven through express-session's callback `Store` API by the same code, 64 calls in flight.",
    "- **native API vs peer** and **`sessile()` vs peer** are what an app gains by switching fully: sessile's own `get`/`set` calls, and HTTP through sessile's middleware (which locks each session) against express-session over the peer, and over this same store.",
    "- **adapter cost** is the native API's rate over `toExpressStore`'s on the same store (1× is free).",
    "- Every ratio is the median of the repeats' own ratios: each repeat measures every target once, close together in time, so a slow spell of the machine moves both sides of that repeat's ratio. The rates in the tables below are medians of each target's runs on their own, so a ratio of two of them can differ from the ratio shown.",
    '',
    table(
      [
        'store',
        'main peer',
        'vs peer, same API',
        'native API vs peer',
        '`sessile()` HTTP vs peer / vs same store',
        'adapter cost',
        'cost vs raw engine',
        'unknown-id read vs its own read',
        'lost updates with locks',
        'worst latency during cleanup',
        'event-loop stall during cleanup',
      ],
      rows,
    ),
    '',
  ];
}
