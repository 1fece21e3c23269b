import { Agent, request } from 'node:http';
import { generateSessionId, SessionCookie } from '@sessile/core';
import type { CheckOutcome } from '../results.js';
import { rawRequest, requestWithCookie } from './raw.js';
import { COOKIE, SECRET, setCookie, startServer } from './server.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The body every handler answers with: the session's id and whether it is new. */
interface Answer {
  id: string;
  isNew: boolean;
  n: number;
}

function get(
  port: number,
  cookie: string | undefined,
  agent?: Agent,
): Promise<{ status: number; cookie?: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { port, host: '127.0.0.1', path: '/', agent, headers: cookie ? { cookie } : {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            cookie: setCookie(res.headers),
            body: Buffer.concat(chunks).toString(),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Malformed cookies: each gets a fresh session or a 400, never an adopted id, an error or a hang. */
export async function malformedCookies(): Promise<CheckOutcome> {
  const outcome: CheckOutcome = {
    name: 'http: malformed cookies',
    cases: 0,
    failures: [],
    notes: [],
  };
  const server = await startServer(
    async (req, res) => {
      req.session.data.n = Number(req.session.data.n ?? 0) + 1;
      res.end(
        JSON.stringify({ id: req.session.id, isNew: req.session.isNew, n: req.session.data.n }),
      );
    },
    { waitMs: 5000, leaseMs: 5000 },
  );
  try {
    const signer = new SessionCookie({ secrets: [SECRET] });
    const first = await get(server.port, undefined);
    const issued = (JSON.parse(first.body) as Answer).id;
    const valid = first.cookie as string;
    const [, signedValue] = valid.split('=') as [string, string];
    const neverIssued = generateSessionId();
    const cases: [string, Buffer | string | undefined][] = [
      ['an empty Cookie header', ''],
      ['an empty value', `${COOKIE}=`],
      ['a 10 KB value', `${COOKIE}=${'A'.repeat(10_240)}`],
      ['200 duplicates', Array.from({ length: 200 }, (_, n) => `${COOKIE}=forged${n}`).join('; ')],
      ['a bad signature', `${COOKIE}=${signedValue.slice(0, -4)}AAAA`],
      [
        'a signature of another secret',
        `${COOKIE}=${new SessionCookie({ secrets: ['another-secret-0123456789abcdefghijklmnop'] }).sign(issued)}`,
      ],
      ['an id the server never issued, correctly signed', `${COOKIE}=${signer.sign(neverIssued)}`],
      ['the raw id, unsigned', `${COOKIE}=${issued}`],
      ['a NUL byte', Buffer.from(`${COOKIE}=abc\0def`, 'latin1')],
      ['non-ASCII bytes', Buffer.from(`${COOKIE}=\u00e9t\u00e9\u00ff`, 'latin1')],
      ['UTF-8 text', Buffer.from(`${COOKIE}=s\u00e9ssion-\u2603`, 'utf8')],
      ['percent escapes', `${COOKIE}=%00%ZZ%`],
    ];
    for (const [what, cookie] of cases) {
      outcome.cases++;
      let answer: Awaited<ReturnType<typeof rawRequest>>;
      try {
        answer = await rawRequest(server.port, requestWithCookie(cookie));
      } catch (error) {
        outcome.failures.push(`${what}: ${String(error)}`);
        continue;
      }
      if (answer.status === 400 || answer.status === 431) {
        outcome.notes?.push(`${what}: ${answer.status} from Node's HTTP parser`);
        continue;
      }
      if (answer.status !== 200) {
        outcome.failures.push(`${what}: status ${answer.status}`);
        continue;
      }
      const body = JSON.parse(answer.body) as Answer;
      if (!body.isNew || body.id === issued || body.id === neverIssued) {
        outcome.failures.push(
          `${what}: got session ${body.id} (new: ${body.isNew}), not a fresh one`,
        );
      }
    }
    // The real cookie still works after all that.
    const again = await get(server.port, valid);
    const body = JSON.parse(again.body) as Answer;
    if (body.id !== issued || body.n !== 2)
      outcome.failures.push(`the issued cookie no longer finds its session: ${again.body}`);
    outcome.failures.push(...server.errors.map((error) => `middleware error: ${error}`));
  } finally {
    await server.close();
  }
  return outcome;
}

/**
 * A client that takes a session's lock and then disconnects mid-request: the next request on
 * that session gets the lock within one lease, not after the server's own request timeout.
 */
export async function slowClient(): Promise<CheckOutcome> {
  const outcome: CheckOutcome = {
    name: 'http: a slow client holding a session lock',
    cases: 0,
    failures: [],
    notes: [],
  };
  const leaseMs = 1000;
  const server = await startServer(
    async (req, res) => {
      // Reads the whole body first: a client that never sends it keeps this request open.
      for await (const _ of req);
      req.session.data.n = Number(req.session.data.n ?? 0) + 1;
      res.end(
        JSON.stringify({ id: req.session.id, isNew: req.session.isNew, n: req.session.data.n }),
      );
    },
    { waitMs: leaseMs * 4, leaseMs },
  );
  try {
    const first = await get(server.port, undefined);
    const cookie = first.cookie as string;
    const { connect } = await import('node:net');
    for (const how of ['disconnects', 'stalls'] as const) {
      outcome.cases++;
      const socket = connect(server.port, '127.0.0.1');
      socket.on('error', () => {});
      socket.write(
        `POST / HTTP/1.1\r\nHost: localhost\r\nCookie: ${cookie}\r\nContent-Length: 100\r\n\r\npartial`,
      );
      await sleep(300);
      if (how === 'disconnects') socket.destroy();
      const started = Date.now();
      const next = await get(server.port, cookie);
      const waited = Date.now() - started;
      if (how === 'disconnects') {
        if (next.status !== 200)
          outcome.failures.push(`after the slow client disconnected: status ${next.status}`);
        outcome.notes?.push(
          `a client that disconnected mid-request held the lock ${waited} more ms (lease ${leaseMs} ms)`,
        );
      } else {
        outcome.notes?.push(
          `while a connected client stalls, the next request waited ${waited} ms and got ${next.status} (a live request's lock is extended, so ${next.status === 503 ? 'ERR_LOCK_TIMEOUT' : 'it got through'})`,
        );
      }
      socket.destroy();
    }
  } finally {
    await server.close();
  }
  return outcome;
}

/**
 * Parallel requests on one session, each reading, awaiting, then writing: none may be lost.
 * `locking: false` turns the session lock off, which the harness's own test uses to show that
 * the count catches lost updates.
 */
export async function parallelRequests(count: number, locking = true): Promise<CheckOutcome> {
  const outcome: CheckOutcome = {
    name: `http: ${count} parallel requests on one session${locking ? '' : ', locking off'}`,
    cases: count,
    failures: [],
    notes: [],
  };
  const server = await startServer(
    async (req, res) => {
      const n = Number(req.session.data.n ?? 0);
      await sleep(Math.random() * 2);
      req.session.data.n = n + 1;
      res.end(String(req.session.data.n));
    },
    locking ? { waitMs: 120_000, leaseMs: 30_000 } : false,
  );
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  try {
    const first = await get(server.port, undefined, agent);
    const cookie = first.cookie as string;
    const statuses = await Promise.all(
      Array.from({ length: count }, () =>
        get(server.port, cookie, agent).then(
          (answer) => answer.status,
          () => 0,
        ),
      ),
    );
    const ok = statuses.filter((status) => status === 200).length;
    const last = await get(server.port, cookie, agent);
    const counted = Number(last.body) - 1;
    // The first request counted 1 and the last one counts itself.
    const lost = ok + 1 - counted;
    outcome.notes?.push(
      `${ok} answered 200, ${server.lockTimeouts} lock timeouts (503), ${statuses.filter((s) => s !== 200 && s !== 503).length} other; the session counted ${counted}; ${lost} updates lost`,
    );
    if (lost !== 0)
      outcome.failures.push(
        `${lost} updates lost: ${ok + 1} requests succeeded, the session counted ${counted}`,
      );
    outcome.failures.push(
      ...server.errors.slice(0, 5).map((error) => `middleware error: ${error}`),
    );
  } finally {
    agent.destroy();
    await server.close();
  }
  return outcome;
}
