import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
  const root = mkdtempSync(join(tmpdir(), 'sessile-koa-http-'));
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
