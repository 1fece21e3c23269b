// The HTTP test helpers are shared with @sessile/fastify's tests, which import this file.
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore, type SessionStore } from '@sessile/core';

/** A store backend the HTTP tests run against: in memory, and the real sqlite and file stores. */
export interface StoreFixture {
  name: string;
  open(): Promise<{ store: SessionStore; cleanup(): Promise<void> }>;
}

async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export const storeFixtures: StoreFixture[] = [
  {
    name: 'MemoryStore',
    async open() {
      const store = new MemoryStore();
      return { store, cleanup: () => store.close() };
    },
  },
  {
    name: 'SqliteStore',
    async open() {
      const { SqliteStore } = await import('@sessile/sqlite');
      const dir = await tempDir('sessile-http-sqlite-');
      const store = await SqliteStore.open({ path: join(dir, 'sessions.db') });
      return {
        store,
        async cleanup() {
          await store.close();
          await rm(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: 'FileStore',
    async open() {
      const { FileStore } = await import('@sessile/file');
      const dir = await tempDir('sessile-http-file-');
      const store = await FileStore.open({ path: join(dir, 'sessions') });
      return {
        store,
        async cleanup() {
          await store.close();
          await rm(dir, { recursive: true, force: true });
        },
      };
    },
  },
];

export async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return `http://127.0.0.1:${port}`;
}

export async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** One browser: remembers the cookies the server sets and sends them back. */
export class CookieJar {
  readonly cookies = new Map<string, string>();

  header(): string | undefined {
    if (this.cookies.size === 0) return undefined;
    return Array.from(this.cookies, ([name, value]) => `${name}=${value}`).join('; ');
  }

  remember(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair = '', ...attributes] = line.split(';');
      const equals = pair.indexOf('=');
      const name = pair.slice(0, equals).trim();
      const value = pair.slice(equals + 1).trim();
      const cleared =
        value === '' || attributes.some((attribute) => /^\s*max-age=0\s*$/i.test(attribute));
      if (cleared) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  clone(): CookieJar {
    const copy = new CookieJar();
    for (const [name, value] of this.cookies) copy.cookies.set(name, value);
    return copy;
  }

  async fetch(url: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    const cookie = this.header();
    if (cookie !== undefined) headers.set('cookie', cookie);
    const response = await fetch(url, { ...init, headers });
    this.remember(response);
    return response;
  }

  async json<T = unknown>(url: string, init: RequestInit = {}): Promise<T> {
    const response = await this.fetch(url, init);
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
