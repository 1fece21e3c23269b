import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExpressSessionSignIn, HttpStoreFixture } from '@sessile/conformance/http';
import { MemoryStore } from '@sessile/core';
import { FileStore } from '@sessile/file';
import { SqliteStore } from '@sessile/sqlite';
import express from 'express';
import session from 'express-session';
import { afterAll } from 'vitest';
import { toExpressStore } from '../src/index.js';

declare module 'express-session' {
  interface SessionData {
    userId: string;
  }
}

/**
 * The stores the HTTP tests run over: in memory, and the real sqlite and file stores, each
 * opened fresh under one temporary directory. Call it at the top level of a test file: it
 * removes that directory after the file's tests.
 */
export function testStores(): HttpStoreFixture[] {
  const root = mkdtempSync(join(tmpdir(), 'sessile-express-http-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  let opened = 0;
  return [
    { name: 'MemoryStore', open: async () => new MemoryStore() },
    { name: 'SqliteStore', open: () => SqliteStore.open({ path: join(root, `${++opened}.db`) }) },
    { name: 'FileStore', open: () => FileStore.open({ path: join(root, `${++opened}`) }) },
  ];
}

export async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return `http://127.0.0.1:${port}`;
}

export async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/**
 * Serves `app` on a loopback port, and queues in `cleanups` closing the server, then the
 * middleware, then its store.
 */
export async function serveApp(
  app: RequestListener,
  cleanups: Array<() => Promise<void>>,
  sessions: { close(): Promise<void> },
  store: { close(): Promise<void> },
): Promise<string> {
  const server = createServer(app);
  const url = await listen(server);
  cleanups.push(async () => {
    await closeServer(server);
    await sessions.close();
    await store.close();
  });
  return url;
}

/**
 * Signs `user` in on a real express-session app over `store` through `toExpressStore`, for the
 * HTTP suite's `acceptExpressSession` scenarios: its session id and `connect.sid` cookie pair.
 */
export const signInWithExpressSession: ExpressSessionSignIn = async (store, user, secret) => {
  const app = express();
  app.use(
    session({
      store: toExpressStore(store),
      secret,
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 3_600_000 },
    }),
  );
  app.post('/login', (req, res) => {
    req.session.userId = user;
    res.json({ id: req.sessionID });
  });
  const server = createServer(app);
  const url = await listen(server);
  try {
    const response = await fetch(`${url}/login`, { method: 'POST' });
    const { id } = (await response.json()) as { id: string };
    const cookie = response.headers
      .getSetCookie()
      .map((header) => header.split(';')[0] ?? '')
      .find((pair) => pair.startsWith('connect.sid='));
    if (cookie === undefined) throw new Error('express-session set no connect.sid cookie');
    return { id, cookie };
  } finally {
    await closeServer(server);
  }
};
