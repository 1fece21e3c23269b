import { type ChildProcess, fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { OpenTarget } from '../adapter.js';
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

/** The compiled server, also when the harness itself runs from TypeScript sources (tests). */
function serverScript(): string {
  const sibling = fileURLToPath(new URL('../http/server.js', import.meta.url));
  if (sibling.endsWith('.js') && existsSync(sibling) && sibling.includes('/dist/')) return sibling;
  return fileURLToPath(new URL('../../dist/http/server.js', import.meta.url));
}

async function startServer(
  config: ServerConfig,
  signal: AbortSignal,
): Promise<{ child: ChildProcess; port: number }> {
  const script = serverScript();
  if (!existsSync(script)) throw new Error(`${script} is missing: build the benchmarks first`);
  const child = fork(script, [JSON.stringify(config)], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2000);
  });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      child.on('message', (message: { type: string; port?: number; reason?: string }) => {
        if (message.type === 'ready') resolve(message.port as number);
        if (message.type === 'unavailable')
          reject(new ServerUnavailable(message.reason ?? 'unavailable'));
      });
      child.on('exit', (code) =>
        reject(
          new Error(`server exited with code ${code}: ${stderr.trim().split('\n').pop() ?? ''}`),
        ),
      );
    });
    return { child, port };
  } catch (error) {
    stopServer(child);
    throw error;
  }
}

class ServerUnavailable extends Error {}

function stopServer(child: ChildProcess): void {
  if (child.connected) child.disconnect();
  setTimeout(() => child.kill('SIGKILL'), 2000).unref();
}

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
      const setCookie = headers['set-cookie'];
      const first = Array.isArray(setCookie) ? setCookie[0] : setCookie;
      if (first !== undefined) session.cookie = first.split(';')[0];
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

async function runMode(
  context: WorkloadContext,
  mode: ServerConfig['mode'],
): Promise<HttpModeResult> {
  const { target } = context;
  const http = target.http;
  if (http === undefined) return { status: 'unavailable', reason: 'no HTTP setup' };
  const workers = http.sharedAcrossProcesses ? context.profile.http.workers : 1;
  const dir = await context.dirs.make(`${target.name}-http`);
  // Opening the target once here creates its schema before two workers race to do it.
  let prepared: OpenTarget | undefined;
  let server: { child: ChildProcess; port: number } | undefined;
  try {
    if (http.sharedAcrossProcesses) prepared = await target.open(dir);
    server = await startServer({ target: target.name, mode, dir, workers }, context.signal);
    const result = await load(server.port, context);
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
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    if (error instanceof ServerUnavailable || (error as Error).name === 'Unavailable')
      return { status: 'unavailable', reason };
    if (context.signal.aborted) throw error;
    return { status: 'failed', reason };
  } finally {
    if (server !== undefined) stopServer(server.child);
    await prepared?.close().catch(() => {});
    await context.dirs.remove(dir);
  }
}

export const httpEndToEnd: Workload<HttpResult> = {
  name: 'http',
  title: 'HTTP end to end',
  description: 'an Express app in worker processes, load from autocannon on 127.0.0.1',
  primary: { field: 'requestsPerSec', label: 'req/s (express-session)', higherIsBetter: true },
  limitMs: (profile) => profile.limitsMs.http,
  skipReason: (target) =>
    target.http === undefined ? 'a raw engine is not a session store' : undefined,
  async run(context) {
    const expressSession = await runMode(context, 'express-session');
    const result: HttpResult = {
      requestsPerSec: expressSession.requestsPerSec ?? 0,
      p99Ms: expressSession.p99Ms ?? 0,
      expressSession,
    };
    if (context.target.kind === 'sessile') result.sessile = await runMode(context, 'sessile');
    if (expressSession.status === 'unavailable' && result.sessile?.status !== 'ok') {
      const { Unavailable } = await import('../adapter.js');
      throw new Unavailable(expressSession.reason ?? 'unavailable');
    }
    return result;
  },
};
