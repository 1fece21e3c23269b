import { createRequire } from 'node:module';
import { Unavailable } from '../adapter.js';
import { withServer } from '../http/process.js';
import type { ServerConfig } from '../http/server.js';
import { round } from '../measure.js';
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
}

/** Requests one simulated user makes with one session before starting over with a new one. */
const REQUESTS_PER_SESSION = 20;

interface AutocannonResult {
  requests: { average: number; total: number };
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

async function load(port: number, context: WorkloadContext): Promise<AutocannonResult> {
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
        duration: http.durationSec,
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
      const result = await load(port, context);
      return {
        status: 'ok',
        workers,
        requestsPerSec: Math.round(result.requests.average),
        p50Ms: round(result.latency.p50),
        p99Ms: round(result.latency.p99),
        maxMs: round(result.latency.max),
        requests: result.requests.total,
        non2xx: result.non2xx,
        errors: result.errors + result.timeouts,
      };
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    if ((error as Error).name === 'Unavailable') return { status: 'unavailable', reason };
    if (context.signal.aborted) throw error;
    return { status: 'failed', reason };
  }
}

export const httpEndToEnd: Workload<HttpResult, 'http'> = {
  name: 'http',
  title: 'HTTP end to end',
  description: 'an Express app in worker processes, load from autocannon on 127.0.0.1',
  primary: { field: 'requestsPerSec', label: 'req/s (express-session)', higherIsBetter: true },
  // A sessile store runs two apps, express-session's and sessile()'s, each started afresh.
  limitMs: (profile) => profile.limitsMs.http * 2,
  skipReason: (target) =>
    target.http === undefined ? 'a raw engine is not a session store' : undefined,
  unavailableHereOnly: true,
  async run(context) {
    const expressSession = await runMode(context, 'express-session');
    const result: HttpResult = {
      requestsPerSec: expressSession.requestsPerSec ?? 0,
      p99Ms: expressSession.p99Ms ?? 0,
      expressSession,
    };
    if (context.target.kind === 'sessile') result.sessile = await runMode(context, 'sessile');
    if (expressSession.status === 'unavailable' && result.sessile?.status !== 'ok') {
      throw new Unavailable(expressSession.reason ?? 'unavailable');
    }
    return result;
  },
};
