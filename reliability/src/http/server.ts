import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSessionError, type Session, type SessionStore } from '@sessile/core';
import { sessile } from '@sessile/express';
import { SqliteStore } from '@sessile/sqlite';

export const SECRET = 'reliability-harness-secret-0123456789abcdef';
export const COOKIE = 'sid';

export type Handler = (
  req: IncomingMessage & { session: Session },
  res: ServerResponse,
) => Promise<void>;

export interface TestServer {
  port: number;
  store: SessionStore;
  /** Requests that failed with ERR_LOCK_TIMEOUT (answered 503). */
  lockTimeouts: number;
  /** Other errors the middleware passed on (answered 500). */
  errors: string[];
  close(): Promise<void>;
}

/** A node:http server with `sessile()` over a SqliteStore in a fresh directory. */
export async function startServer(
  handler: Handler,
  lock: { waitMs: number; leaseMs: number } | false,
): Promise<TestServer> {
  const dir = await mkdtemp(join(tmpdir(), 'sessile-http-'));
  const store = await SqliteStore.open({ path: join(dir, 'sessions.sqlite') });
  const middleware = sessile({ store, secret: SECRET, lock, onError: () => {} });
  const state = { lockTimeouts: 0, errors: [] as string[] };
  const server: Server = createServer((req, res) => {
    middleware(req as never, res as never, (error?: unknown) => {
      if (error !== undefined) {
        const timeout = isSessionError(error) && error.code === 'ERR_LOCK_TIMEOUT';
        if (timeout) state.lockTimeouts++;
        else state.errors.push(String(error));
        res.statusCode = timeout ? 503 : 500;
        res.end();
        return;
      }
      handler(req as IncomingMessage & { session: Session }, res).catch((failure: unknown) => {
        state.errors.push(`handler: ${String(failure)}`);
        if (!res.headersSent) res.statusCode = 500;
        res.end();
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    store,
    get lockTimeouts() {
      return state.lockTimeouts;
    },
    get errors() {
      return state.errors;
    },
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  } as TestServer;
}

/** The `sid` cookie a response sets, as `name=value`, if any. */
export function setCookie(
  headers: Record<string, string | string[] | undefined>,
): string | undefined {
  const values = headers['set-cookie'];
  const list = Array.isArray(values) ? values : values === undefined ? [] : [values];
  const ours = list.find((value) => value.startsWith(`${COOKIE}=`));
  return ours?.split(';')[0];
}
