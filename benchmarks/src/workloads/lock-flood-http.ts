import { Agent, request } from 'node:http';
import { withServer } from '../http/process.js';
import { describeError, round } from '../measure.js';
import type { Workload } from './context.js';

export interface LockFloodHttpResult {
  /** Worker processes of the app, all serving the one session. */
  workers: number;
  /** Requests sent at once, all with the same session cookie. */
  requests: number;
  /** Requests answered 200: each bumped the session's counter. */
  served: number;
  /** Requests answered 503: the session lock was not free within the default `waitMs`. */
  busy: number;
  /** Requests answered with another status, or that got no answer. */
  failed: number;
  firstFailure?: string;
  /** Served requests whose increment the session's counter does not show. */
  lost: number;
  /** From sending every request to the last answer. */
  elapsedMs: number;
  /** `elapsedMs` over `served`; 0 when none was served. */
  msPerServed: number;
}

interface Reply {
  status: number;
  body: string;
  /** The `name=value` part of the first `Set-Cookie`, when there is one. */
  cookie?: string;
}

function get(
  port: number,
  agent: Agent,
  cookie: string | undefined,
  path: '/' | '/connect' = '/',
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        agent,
        headers: cookie === undefined ? {} : { cookie },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('error', reject);
        res.on('end', () => {
          const setCookie = res.headers['set-cookie']?.[0]?.split(';')[0];
          resolve({
            status: res.statusCode ?? 0,
            body,
            ...(setCookie === undefined ? {} : { cookie: setCookie }),
          });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The session counter the app answered with. */
function counterOf(reply: Reply): number {
  if (reply.status !== 200) throw new Error(`the app answered ${reply.status}: ${reply.body}`);
  const { counter } = JSON.parse(reply.body) as { counter: number };
  return counter;
}

/** The lock flood through the app: what a user sees when one session gets many requests at once. */
export const lockFloodHttp: Workload<LockFloodHttpResult, 'lock-flood-http'> = {
  name: 'lock-flood-http',
  title: 'Lock flood over HTTP',
  description:
    "parallel requests with one session cookie to the Express app with sessile's locking middleware",
  primary: { field: 'busy', label: 'requests answered 503', higherIsBetter: false },
  limitMs: (profile) => profile.limitsMs.lockFlood,
  skipReason: (target) =>
    target.http?.sessileMiddleware === undefined
      ? "sessile's middleware runs only over sessile stores"
      : undefined,
  unavailableHereOnly: true,
  async run(context) {
    const requests = context.profile.lockFlood.cycles;
    return withServer(context, 'sessile', async ({ port, workers }) => {
      // One connection per request, as that many browser tabs or clients would hold, all open
      // before the burst: opening them is slow on some machines and would spread the requests out.
      const agent = new Agent({ keepAlive: true, maxFreeSockets: requests });
      try {
        await Promise.all(
          Array.from({ length: requests }, () => get(port, agent, undefined, '/connect')),
        );
        const first = await get(port, agent, undefined);
        const cookie = first.cookie;
        if (cookie === undefined) throw new Error('the app set no session cookie');
        const before = counterOf(first);
        const started = performance.now();
        const replies = await Promise.allSettled(
          Array.from({ length: requests }, () => get(port, agent, cookie)),
        );
        const elapsedMs = performance.now() - started;
        let served = 0;
        let busy = 0;
        let firstFailure: string | undefined;
        for (const reply of replies) {
          if (reply.status === 'fulfilled' && reply.value.status === 200) served++;
          else if (reply.status === 'fulfilled' && reply.value.status === 503) busy++;
          else
            firstFailure ??=
              reply.status === 'fulfilled'
                ? `${reply.value.status}: ${reply.value.body.slice(0, 200)}`
                : describeError(reply.reason);
        }
        // This last request bumps the counter once more itself.
        const after = counterOf(await get(port, agent, cookie)) - 1;
        return {
          workers,
          requests,
          served,
          busy,
          failed: requests - served - busy,
          ...(firstFailure === undefined ? {} : { firstFailure }),
          lost: served - (after - before),
          elapsedMs: round(elapsedMs),
          msPerServed: served > 0 ? round(elapsedMs / served) : 0,
        };
      } finally {
        agent.destroy();
      }
    });
  },
};
