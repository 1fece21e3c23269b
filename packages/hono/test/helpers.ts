import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import {
  type ClientHttp2Session,
  createServer as createHttp2Server,
  type Http2Server,
} from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serve } from '@hono/node-server';
import type { HttpStoreFixture } from '@sessile/conformance/http';
import { MemoryStore } from '@sessile/core';
import { FileStore } from '@sessile/file';
import { SqliteStore } from '@sessile/sqlite';
import { afterAll } from 'vitest';

/**
 * The stores the HTTP tests run over: in memory, and the real sqlite and file stores, each
 * opened fresh under one temporary directory. Call it at the top level of a test file: it
 * removes that directory after the file's tests.
 */
export function testStores(): HttpStoreFixture[] {
  const root = mkdtempSync(join(tmpdir(), 'sessile-hono-http-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  let opened = 0;
  return [
    { name: 'MemoryStore', open: async () => new MemoryStore() },
    { name: 'SqliteStore', open: () => SqliteStore.open({ path: join(root, `${++opened}.db`) }) },
    { name: 'FileStore', open: () => FileStore.open({ path: join(root, `${++opened}`) }) },
  ];
}

/** Serves `fetch` with @hono/node-server on a free loopback port. */
export async function start(
  fetch: Parameters<typeof serve>[0]['fetch'],
): Promise<{ url: string; close(): Promise<void> }> {
  let server: Server | undefined;
  const port = await new Promise<number>((resolve) => {
    server = serve({ fetch, port: 0, hostname: '127.0.0.1' }, (info) =>
      resolve(info.port),
    ) as Server;
  });
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      server?.closeAllConnections();
      await new Promise<void>((resolve) => server?.close(() => resolve()));
    },
  };
}

/** Serves `fetch` with @hono/node-server over cleartext HTTP/2 on a free loopback port. */
export async function startHttp2(
  fetch: Parameters<typeof serve>[0]['fetch'],
): Promise<{ url: string; close(): Promise<void> }> {
  let server: Http2Server | undefined;
  const port = await new Promise<number>((resolve) => {
    server = serve(
      { fetch, port: 0, hostname: '127.0.0.1', createServer: createHttp2Server },
      (info) => resolve(info.port),
    ) as Http2Server;
  });
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server?.close(() => resolve())),
  };
}

/** One HTTP/2 `GET path` on `session`, with `cookie`: its status, `Set-Cookie` values and body. */
export function http2Get(
  session: ClientHttp2Session,
  path: string,
  cookie?: string,
): Promise<{ status: number; cookies: string[]; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path, ...(cookie === undefined ? {} : { cookie }) });
    let status = 0;
    let cookies: string[] = [];
    let body = '';
    stream.on('response', (headers) => {
      status = Number(headers[':status']);
      cookies = [headers['set-cookie'] ?? []].flat();
    });
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      body += chunk;
    });
    stream.on('end', () => resolve({ status, cookies, body }));
    stream.on('error', reject);
  });
}
