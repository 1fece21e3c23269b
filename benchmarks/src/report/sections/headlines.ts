import type { BenchResults, OpsWorkloadName, TargetInfo } from '../../results.js';
import { figure, ms, okResult, ratio, stall } from '../format.js';
import { table } from '../table.js';

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
  const opsPerSec = (workload: OpsWorkloadName, name: string | undefined) =>
    name === undefined ? undefined : figure(results.results[workload]?.[name], 'opsPerSec');
  const viaExpress = results.targets.find(
    (other) => other.viaExpressOf === target.name && other.status === 'ok',
  )?.name;
  return {
    target,
    peer: target.peers?.[0],
    viaExpress,
    speed(workload, own, other) {
      const a = opsPerSec(workload, own);
      const b = opsPerSec(workload, other);
      return a === undefined || b === undefined || a === 0 || b === 0 ? undefined : a / b;
    },
    httpVersus(baseline) {
      const sessile = okResult(results.results.http?.[target.name])?.sessile;
      const other = baseline === undefined ? undefined : okResult(results.results.http?.[baseline]);
      if (sessile?.status !== 'ok' || other?.expressSession.status !== 'ok') return undefined;
      const a = sessile.requestsPerSec ?? 0;
      const b = other.expressSession.requestsPerSec ?? 0;
      return a === 0 || b === 0 ? undefined : a / b;
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
