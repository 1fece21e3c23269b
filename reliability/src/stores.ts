import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { SessionRecord, SessionStore, SetOptions } from '@sessile/core';

export const REDIS_URL = process.env.SESSILE_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const PG_URL = process.env.SESSILE_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** One store under test: how to open it on a run directory, and what it promises. */
export interface StoreSpec {
  name: string;
  /** What a resolved write survives, from the store's README. */
  promise: string;
  /** Why the store is not crash-tested, when it is not. */
  skip?: string;
  /** Lease of the lock the crash rounds take and kill; short so a round ends quickly. */
  lockLeaseMs: number;
  /** The package `open` imports, which a crash child loads before its task arrives. */
  module: string;
  open(dir: string): Promise<SessionStore>;
  /** How the crash child opens it, when that differs (only the broken control store). */
  openWriter?(dir: string): Promise<SessionStore>;
  /** Removes what a run left outside `dir` (server keys, schemas). */
  cleanup?(dir: string): Promise<void>;
}

/** A name derived from the run directory, so every process of one run finds the same keys. */
export function runTag(dir: string): string {
  return createHash('sha256').update(dir).digest('hex').slice(0, 12);
}

const PROCESS_CRASH = 'every resolved write survives a process crash';

export const STORES: StoreSpec[] = [
  {
    name: 'memory',
    promise: 'none: the data lives in the process',
    skip: 'MemoryStore is not durable (capabilities.durable is false): a crash loses everything by design',
    lockLeaseMs: 1000,
    module: '@sessile/core',
    async open() {
      const { MemoryStore } = await import('@sessile/core');
      return new MemoryStore();
    },
  },
  sqlite('normal'),
  sqlite('full'),
  {
    name: 'level',
    promise: PROCESS_CRASH,
    lockLeaseMs: 1000,
    module: '@sessile/level',
    async open(dir) {
      const { LevelStore } = await import('@sessile/level');
      return LevelStore.open({ path: join(dir, 'level') });
    },
  },
  {
    name: 'file',
    promise: `${PROCESS_CRASH} (durability 'normal')`,
    lockLeaseMs: 1000,
    module: '@sessile/file',
    async open(dir) {
      const { FileStore } = await import('@sessile/file');
      // A crashed sweeper blocks the next one for one sweep lease: short here, 60 s by default.
      return FileStore.open({ path: join(dir, 'files'), sweepLeaseMs: 1000 });
    },
  },
  {
    name: 'dbm',
    promise: `${PROCESS_CRASH} (durability 'normal'); the journal replays an interrupted commit`,
    lockLeaseMs: 1000,
    module: '@sessile/dbm',
    async open(dir) {
      const { DbmStore } = await import('@sessile/dbm');
      // A killed holder of the global lock stalls the next writer for one lease (10 s by default).
      return DbmStore.open({ path: join(dir, 'sessions.dbm'), globalLockLeaseMs: 1000 });
    },
  },
  {
    name: 'redis',
    promise: 'every resolved write survives a crash of the app (it lives in Redis)',
    lockLeaseMs: 1000,
    module: '@sessile/redis',
    async open(dir) {
      const { RedisStore } = await import('@sessile/redis');
      return RedisStore.open({ url: REDIS_URL, prefix: `sessile-rel-${runTag(dir)}:` });
    },
    async cleanup(dir) {
      const { createClient } = await import('redis');
      const client = createClient({ url: REDIS_URL });
      client.on('error', () => {});
      await client.connect();
      try {
        for await (const keys of client.scanIterator({
          MATCH: `sessile-rel-${runTag(dir)}:*`,
          COUNT: 1000,
        })) {
          if (keys.length > 0) await client.unlink(keys);
        }
      } finally {
        await client.close();
      }
    },
  },
  {
    name: 'postgres',
    promise: 'every resolved write survives a crash of the app (committed on the server)',
    lockLeaseMs: 1000,
    module: '@sessile/postgres',
    async open(dir) {
      const { PostgresStore } = await import('@sessile/postgres');
      return PostgresStore.open({
        connectionString: PG_URL,
        poolSize: 4,
        schema: `sessile_rel_${runTag(dir)}`,
      });
    },
    async cleanup(dir) {
      const pg = await import('pg');
      const client = new pg.default.Client({ connectionString: PG_URL });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS "sessile_rel_${runTag(dir)}" CASCADE`);
      } finally {
        await client.end();
      }
    },
  },
];

function sqlite(durability: 'normal' | 'full'): StoreSpec {
  return {
    name: `sqlite-${durability}`,
    promise: `${PROCESS_CRASH} (durability '${durability}')`,
    lockLeaseMs: 1000,
    module: '@sessile/sqlite',
    async open(dir) {
      const { SqliteStore } = await import('@sessile/sqlite');
      return SqliteStore.open({ path: join(dir, 'sessions.sqlite'), durability });
    },
  };
}

/**
 * Deliberately broken stores that the harness's own tests run, to prove that a crash round
 * catches what it claims to. `lossy-file` acknowledges a write before it reaches the disk;
 * `decaying-file` changes a record of round 0 each time a later round's writer opens it.
 */
async function openControlFileStore(dir: string): Promise<SessionStore> {
  const { FileStore } = await import('@sessile/file');
  return FileStore.open({ path: join(dir, 'files'), sweepLeaseMs: 1000 });
}

export const CONTROL_STORES: StoreSpec[] = [
  {
    name: 'lossy-file',
    promise: 'none: it acknowledges writes 50 ms before making them',
    lockLeaseMs: 1000,
    module: '@sessile/file',
    open: openControlFileStore,
    async openWriter(dir) {
      return lateWrites(await this.open(dir));
    },
  },
  {
    name: 'decaying-file',
    promise: "none: opening it for writes moves an earlier round's expiry",
    lockLeaseMs: 1000,
    module: '@sessile/file',
    open: openControlFileStore,
    async openWriter(dir) {
      const store = await this.open(dir);
      for await (const id of store.ids()) {
        const record = id.startsWith('r0000-') ? await store.get(id) : undefined;
        if (record === undefined) continue;
        await store.touch(id, record.expiresAt + 1);
        break;
      }
      return store;
    },
  },
];

/** Answers writes from an in-memory copy at once and applies them to `store` 50 ms later. */
async function lateWrites(store: SessionStore): Promise<SessionStore> {
  const { MemoryStore } = await import('@sessile/core');
  const mirror = new MemoryStore();
  let queue: Promise<unknown> = Promise.resolve();
  const later = (write: () => Promise<unknown>) => {
    setTimeout(() => {
      queue = queue.then(write).catch(() => {});
    }, 50);
  };
  return new Proxy(store, {
    get(target, property) {
      if (property === 'set') {
        return async (id: string, record: SessionRecord, options?: SetOptions) => {
          const result = await mirror.set(id, record, options);
          if (result) later(() => target.set(id, record));
          return result;
        };
      }
      if (property === 'touch') {
        return async (id: string, expiresAt: number) => {
          const result = await mirror.touch(id, expiresAt);
          later(() => target.touch(id, expiresAt));
          return result;
        };
      }
      if (property === 'delete') {
        return async (id: string) => {
          const result = await mirror.delete(id);
          later(() => target.delete(id));
          return result;
        };
      }
      // The store's methods and getters read private fields, so they run on the store itself.
      const value = Reflect.get(target, property);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

export type Role = 'writer' | 'checker';

export async function openForRole(name: string, dir: string, role: Role): Promise<SessionStore> {
  const spec = storeSpec(name);
  if (role === 'writer' && spec.openWriter !== undefined) return spec.openWriter(dir);
  return spec.open(dir);
}

/** Loads the modules a store's `open` needs, so a later open does only the store's own work. */
export async function loadStore(name: string): Promise<void> {
  await Promise.all([import('@sessile/core'), import(storeSpec(name).module)]);
}

export function storeSpec(name: string): StoreSpec {
  const spec = [...STORES, ...CONTROL_STORES].find((candidate) => candidate.name === name);
  if (spec === undefined) {
    throw new TypeError(
      `unknown store ${JSON.stringify(name)}; one of ${STORES.map((s) => s.name).join(', ')}`,
    );
  }
  return spec;
}
