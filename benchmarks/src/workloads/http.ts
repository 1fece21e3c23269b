import { createRequire } from 'node:module';
import { type Target, Unavailable } from '../adapter.js';
import { withServer } from '../http/process.js';
import type { ServerConfig } from '../http/server.js';
import { median, round } from '../measure.js';
import { findTarget } from '../targets/index.js';
import type { Workload, WorkloadContext } from './context.js';

const require = createRequire(import.meta.url);

/** One middleware setup over one store, measured with autocannon. */
export interface HttpModeResult {
  status: 'ok' | 'unavailable' | 'failed';
  reason?: string;
  workers?: number;
  requestsPerSec?: number;
  p50Ms?: number;
  p99Ms?: number;
  maxMs?: number;
  requests?: number;
  non2xx?: number;
  errors?: number;
}

export interface HttpResult {
  /** req/s of express-session over this store, for the bar chart; 0 when it could not run. */
  requestsPerSec: number;
  p99Ms: number;
  expressSession: HttpModeResult;
  /** sessile's locking middleware over this store; only for sessile stores. */
  sessile?: HttpModeResult;
  /**
   * For a sessile store, express-session over each of its `httpPeers`, served in the same run:
   * all the apps take the load in turns round by round, so each round's ratios pair rates
   * measured seconds apart, not minutes. `rounds` is that app's req/s in each round.
   */
  peers?: { name: string; expressSession: HttpModeResult; rounds: number[] }[];
  /** For a sessile store, its two apps' req/s in each round. */
  rounds?: { expressSession: number[]; sessile: number[] };
}

/** Requests one simulated user makes with one session before starting over with a new one. */
const REQUESTS_PER_SESSION = 20;

interface AutocannonResult {
  requests: { average: number; total: number };
  /** Seconds the load ran. */
  duration: number;
  latency: { p50: number; p99: number; max: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}
type Autocannon = (
  options: object,
  callback: (error: unknown, result: AutocannonResult) => void,
) => { stop(): void };

/**
 * The `Cookie` header a browser would send next: `previous` with every cookie `setCookie` sets
 * replaced or added (koa-session sets a cookie and its signature as two).
 */
export function mergeCookies(
  previous: string | undefined,
  setCookie: string | string[] | undefined,
): string | undefined {
  if (setCookie === undefined) return previous;
  const jar = new Map<string, string>();
  for (const pair of previous?.split('; ') ?? []) jar.set(pair.split('=')[0] as string, pair);
  for (const header of Array.isArray(setCookie) ? setCookie : [setCookie]) {
    const pair = header.split(';')[0] as string;
    jar.set(pair.split('=')[0] as string, pair);
  }
  return [...jar.values()].join('; ');
}

/**
 * Three requests carrying the cookies the app sets must see the session's counter go 1, 2, 3:
 * otherwise the figures would measure an app that keeps no session.
 */
async function checkSessionKept(port: number): Promise<void> {
  let cookie: string | undefined;
  for (let expected = 1; expected <= 3; expected++) {
    const response = await fetch(`http://127.0.0.1:${port}/`, {
      headers: cookie === undefined ? {} : { cookie },
    });
    const body = (await response.json()) as { counter?: unknown };
    if (body.counter !== expected) {
      throw new Error(
        `the app kept no session: request ${expected} answered ${response.status} ${JSON.stringify(body)}`,
      );
    }
    const setCookie = response.headers.getSetCookie();
    cookie = mergeCookies(cookie, setCookie.length === 0 ? undefined : setCookie);
  }
}

async function load(
  port: number,
  context: WorkloadContext,
  durationSec: number,
): Promise<AutocannonResult> {
  const autocannon = require('autocannon') as Autocannon;
  const { http } = context.profile;
  const request = {
    setupRequest(req: { headers?: Record<string, string> }, session: { cookie?: string }) {
      return session.cookie === undefined
        ? req
        : { ...req, headers: { ...req.headers, cookie: session.cookie } };
    },
    onResponse(
      _status: number,
      _body: string,
      session: { cookie?: string },
      headers: Record<string, string | string[]>,
    ) {
      // autocannon keys headers as the server spelled them: Express and Koa send `Set-Cookie`.
      const name = Object.keys(headers).find((key) => key.toLowerCase() === 'set-cookie');
      session.cookie = mergeCookies(session.cookie, name === undefined ? undefined : headers[name]);
    },
  };
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${port}/`,
        connections: http.connections,
        duration: durationSec,
        requests: Array.from({ length: REQUESTS_PER_SESSION }, () => request),
        initialContext: {},
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
    context.signal.addEventListener('abort', () => instance.stop(), { once: true });
  });
}

export async function runMode(
  context: WorkloadContext,
  mode: ServerConfig['mode'],
): Promise<HttpModeResult> {
  if (context.target.http === undefined) return { status: 'unavailable', reason: 'no HTTP setup' };
  try {
    return await withServer(context, mode, async ({ port, workers }) => {
      await checkSessionKept(port);
      const result = await load(port, context, context.profile.http.durationSec);
      return modeResult([result], workers);
    });
  } catch (error) {
    return notServed(context, error);
  }
}

/** One app's figures from its loads: rates and latencies the median round's, counts summed. */
function modeResult(loads: readonly AutocannonResult[], workers: number): HttpModeResult {
  const sum = (field: (load: AutocannonResult) => number) =>
    loads.reduce((total, load) => total + field(load), 0);
  return {
    status: 'ok',
    workers,
    requestsPerSec: Math.round(median(loads.map(rateOf))),
    p50Ms: round(median(loads.map((load) => load.latency.p50))),
    p99Ms: round(median(loads.map((load) => load.latency.p99))),
    maxMs: round(Math.max(...loads.map((load) => load.latency.max))),
    requests: sum((load) => load.requests.total),
    non2xx: sum((load) => load.non2xx),
    errors: sum((load) => load.errors + load.timeouts),
  };
}

/** Requests per second over the whole load: autocannon's average is of whole seconds only. */
function rateOf(load: AutocannonResult): number {
  return load.duration > 0 ? load.requests.total / load.duration : load.requests.average;
}

/** An app that could not be served, as a result; rethrows when the run was stopped. */
function notServed(context: WorkloadContext, error: unknown): HttpModeResult {
  if (context.signal.aborted) throw error;
  const reason = error instanceof Error ? error.message : String(error);
  if ((error as Error).name === 'Unavailable') return { status: 'unavailable', reason };
  return { status: 'failed', reason };
}

/** One app to serve in turns: a middleware over a target. */
interface App {
  target: Target;
  mode: ServerConfig['mode'];
}
type Served = { port: number; workers: number } | HttpModeResult;

/**
 * Starts every app of `apps`, each checked to keep its session, and runs `work` with them all
 * serving; an app that cannot start is handed to `work` as its result instead. Stops them all.
 */
async function withApps<T>(
  context: WorkloadContext,
  apps: readonly App[],
  work: (served: Served[]) => Promise<T>,
  started: Served[] = [],
): Promise<T> {
  const app = apps[started.length];
  if (app === undefined) return work(started);
  let entered = false;
  let value: T | undefined;
  try {
    await withServer(
      context,
      app.mode,
      async (server) => {
        await checkSessionKept(server.port);
        entered = true;
        value = await withApps(context, apps, work, [...started, server]);
      },
      app.target,
    );
  } catch (error) {
    // Once this app serves, a failure is the others' work's or the run's, not this app's.
    if (entered) throw error;
    return withApps(context, apps, work, [...started, notServed(context, error)]);
  }
  return value as T;
}

export const httpEndToEnd: Workload<HttpResult, 'http'> = {
  name: 'http',
  title: 'HTTP end to end',
  description:
    "an Express app in worker processes, load from autocannon on 127.0.0.1; a sessile store's apps and its peer's take the load in turns",
  primary: { field: 'requestsPerSec', label: 'req/s (express-session)', higherIsBetter: true },
  // A sessile store's apps (express-session's and sessile()'s over it, express-session's over
  // its `httpPeers`) serve in turns, each for `durationSec` and then `rounds` times `roundSec`.
  limitMs: (profile) => profile.limitsMs.http * 3,
  skipReason: (target) =>
    target.http === undefined ? 'a raw engine is not a session store' : undefined,
  unavailableHereOnly: true,
  async run(context) {
    const { target } = context;
    if (target.kind !== 'sessile') {
      const expressSession = await runMode(context, 'express-session');
      if (expressSession.status === 'unavailable') {
        throw new Unavailable(expressSession.reason ?? 'unavailable');
      }
      return {
        requestsPerSec: expressSession.requestsPerSec ?? 0,
        p99Ms: expressSession.p99Ms ?? 0,
        expressSession,
      };
    }
    return servePaired(context);
  },
};

/**
 * A sessile store's apps and its main peer's, served in turns: every round each app that
 * started takes the load for `roundSec`, the order turning by one each round, so a slow spell
 * of the machine falls on the apps of one round alike and the per-round ratios cancel it.
 */
async function servePaired(context: WorkloadContext): Promise<HttpResult> {
  const { target } = context;
  const { rounds, roundSec, durationSec } = context.profile.http;
  const peers = (target.httpPeers ?? target.peers?.slice(0, 1) ?? []).flatMap((name) => {
    const peer = findTarget(name);
    return peer?.http === undefined ? [] : [peer];
  });
  const apps: App[] = [
    { target, mode: 'express-session' },
    { target, mode: 'sessile' },
    ...peers.map((peer) => ({ target: peer, mode: 'express-session' as const })),
  ];
  return withApps(context, apps, async (served) => {
    const loads = served.map((): AutocannonResult[] => []);
    const serving = served.flatMap((app, i) => ('port' in app ? [i] : []));
    // Round 0, `durationSec` long, warms every app up (its JIT, its connections) and is not
    // counted: an app's first second ran at half its later rate, which would weigh on whichever
    // apps the first counted rounds happened to start with.
    for (let round = 0; round <= rounds; round++) {
      for (let turn = 0; turn < serving.length; turn++) {
        const i = serving[(round + turn) % serving.length] as number;
        const { port } = served[i] as { port: number };
        const measured = await load(port, context, round === 0 ? durationSec : roundSec);
        if (round > 0) (loads[i] as AutocannonResult[]).push(measured);
      }
    }
    const outcome = (i: number): HttpModeResult => {
      const app = served[i];
      if (app === undefined) return { status: 'unavailable', reason: 'not served' };
      return 'port' in app ? modeResult(loads[i] as AutocannonResult[], app.workers) : app;
    };
    const ratesOf = (i: number) => (loads[i] ?? []).map((one) => Math.round(rateOf(one)));
    const expressSession = outcome(0);
    if (expressSession.status === 'unavailable' && outcome(1).status !== 'ok') {
      throw new Unavailable(expressSession.reason ?? 'unavailable');
    }
    const result: HttpResult = {
      requestsPerSec: expressSession.requestsPerSec ?? 0,
      p99Ms: expressSession.p99Ms ?? 0,
      expressSession,
      sessile: outcome(1),
      rounds: { expressSession: ratesOf(0), sessile: ratesOf(1) },
    };
    if (peers.length > 0) {
      result.peers = peers.map((peer, i) => ({
        name: peer.name,
        expressSession: outcome(2 + i),
        rounds: ratesOf(2 + i),
      }));
    }
    return result;
  });
}
