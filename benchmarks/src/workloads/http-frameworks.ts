import type { FrameworkMode } from '../http/frameworks.js';
import type { Workload } from './context.js';
import { type HttpModeResult, runMode } from './http.js';

/** The stores the Koa and Hono rows run over: one per kind of backend the adapters' tests cover. */
const FRAMEWORK_STORES = ['memory', 'sqlite', 'file'];
/** The store whose row also measures koa-session and hono-sessions over their own default stores. */
const DEFAULTS_ON = 'memory';

export interface FrameworkHttpResult {
  /** req/s of sessile's Koa middleware (with locks) over this store. */
  koaSessileRps: number;
  /** req/s of koa-session over this store through `toKoaSessionStore`. */
  koaSessionRps: number;
  /** `koaSessileRps / koaSessionRps`: the same store, the same app. */
  koaRatio: number;
  honoSessileRps: number;
  /** req/s of hono-sessions over this store through `toHonoSessionsStore`. */
  honoSessionsRps: number;
  honoRatio: number;
  /** Every mode's full figures; the `-default` modes only on the memory row. */
  modes: Partial<Record<FrameworkMode, HttpModeResult>>;
}

function rps(result: HttpModeResult | undefined): number {
  return result?.status === 'ok' ? (result.requestsPerSec ?? 0) : 0;
}

function ratioOf(ours: number, theirs: number): number {
  return ours > 0 && theirs > 0 ? Math.round((ours / theirs) * 100) / 100 : 0;
}

export const httpFrameworks: Workload<FrameworkHttpResult, 'http-frameworks'> = {
  name: 'http-frameworks',
  title: 'HTTP with Koa and Hono',
  description:
    "Koa and Hono apps on Node, load from autocannon on 127.0.0.1: sessile's locking middleware against koa-session and hono-sessions",
  primary: { field: 'koaRatio', label: 'sessile / koa-session (req/s)', higherIsBetter: true },
  limitMs: (profile) => profile.limitsMs.http * 3,
  skipReason: (target) =>
    target.kind === 'sessile' && FRAMEWORK_STORES.includes(target.name)
      ? undefined
      : `measured over ${FRAMEWORK_STORES.join(', ')}`,
  unavailableHereOnly: true,
  async run(context) {
    const modes: FrameworkHttpResult['modes'] = {};
    const wanted: FrameworkMode[] = ['koa-sessile', 'koa-session', 'hono-sessile', 'hono-sessions'];
    if (context.target.name === DEFAULTS_ON)
      wanted.push('koa-session-default', 'hono-sessions-default');
    for (const mode of wanted) modes[mode] = await runMode(context, mode);
    const koaSessileRps = rps(modes['koa-sessile']);
    const koaSessionRps = rps(modes['koa-session']);
    const honoSessileRps = rps(modes['hono-sessile']);
    const honoSessionsRps = rps(modes['hono-sessions']);
    return {
      koaSessileRps,
      koaSessionRps,
      koaRatio: ratioOf(koaSessileRps, koaSessionRps),
      honoSessileRps,
      honoSessionsRps,
      honoRatio: ratioOf(honoSessileRps, honoSessionsRps),
      modes,
    };
  },
};
