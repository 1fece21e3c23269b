import {
  mkdir,
  readdir,
  readFile,
  rename,
  stat,
  unlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { importOptional, type OpenTarget, type Target } from '../adapter.js';
import type { SessionBody } from '../body.js';

const require = createRequire(import.meta.url);

export function encodeBody(body: SessionBody): Uint8Array {
  return Buffer.from(JSON.stringify(body));
}

export function decodeBody(data: Uint8Array): SessionBody {
  return JSON.parse(
    Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString(),
  ) as SessionBody;
}

/** A `Map` of encoded records: the ceiling for any in-memory store. */
export const mapEngine: Target = {
  name: 'map',
  kind: 'engine',
  description: 'a bare `Map` of encoded records',
  durability: 'none (process memory)',
  async open() {
    const records = new Map<string, { data: Uint8Array; expiresAt: number }>();
    const live = (id: string) => {
      const record = records.get(id);
      return record !== undefined && record.expiresAt > Date.now() ? record : undefined;
    };
    return {
      async create(id, body, expiresAt) {
        records.set(id, { data: encodeBody(body), expiresAt });
      },
      async read(id) {
        const record = live(id);
        return record && decodeBody(record.data);
      },
      async update(id, body, expiresAt) {
        records.set(id, { data: encodeBody(body), expiresAt });
      },
      async touch(id, expiresAt) {
        const record = live(id);
        if (record) record.expiresAt = expiresAt;
      },
      cleanupNote: 'one synchronous pass over the whole Map',
      async cleanup() {
        const now = Date.now();
        let removed = 0;
        for (const [id, record] of records) {
          if (record.expiresAt <= now) {
            records.delete(id);
            removed++;
          }
        }
        return { removed };
      },
      async expiredLeft(ids) {
        return ids.filter((id) => records.has(id)).length;
      },
      async close() {
        records.clear();
      },
    } satisfies OpenTarget;
  },
};

interface Statement {
  run(...params: unknown[]): { changes: number };
  get(...params: unknown[]): unknown;
}
interface Database {
  pragma(source: string): unknown;
  exec(source: string): void;
  prepare(source: string): Statement;
  close(): void;
}

/** better-sqlite3 prepared statements in WAL mode, synchronous=NORMAL, with an expiry index. */
export const sqliteEngine: Target = {
  name: 'raw-sqlite',
  kind: 'engine',
  description: 'bare better-sqlite3 prepared statements, WAL, synchronous=NORMAL, expiry index',
  durability: 'process crash: yes; power loss: last commits may roll back',
  async open(dir) {
    const { default: BetterSqlite } = await importOptional<{
      default: new (path: string) => Database;
    }>('better-sqlite3');
    const db = new BetterSqlite(join(dir, 'raw.sqlite'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec(
      'CREATE TABLE sessions (id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, data BLOB NOT NULL) WITHOUT ROWID;' +
        'CREATE INDEX sessions_expires_at ON sessions (expires_at);',
    );
    const insert = db.prepare('INSERT INTO sessions (id, expires_at, data) VALUES (?, ?, ?)');
    const select = db.prepare('SELECT data FROM sessions WHERE id = ? AND expires_at > ?');
    const replace = db.prepare(
      'UPDATE sessions SET expires_at = ?, data = ? WHERE id = ? AND expires_at > ?',
    );
    const touch = db.prepare('UPDATE sessions SET expires_at = ? WHERE id = ? AND expires_at > ?');
    const sweep = db.prepare('DELETE FROM sessions WHERE expires_at <= ?');
    const exists = db.prepare('SELECT 1 FROM sessions WHERE id = ?');
    return {
      async create(id, body, expiresAt) {
        insert.run(id, expiresAt, encodeBody(body));
      },
      async read(id) {
        const row = select.get(id, Date.now()) as { data: Uint8Array } | undefined;
        return row && decodeBody(row.data);
      },
      async update(id, body, expiresAt) {
        replace.run(expiresAt, encodeBody(body), id, Date.now());
      },
      async touch(id, expiresAt) {
        touch.run(expiresAt, id, Date.now());
      },
      cleanupNote: 'one unbounded `DELETE … WHERE expires_at <= now` through the index',
      async cleanup() {
        return { removed: sweep.run(Date.now()).changes };
      },
      async expiredLeft(ids) {
        return ids.filter((id) => exists.get(id) !== undefined).length;
      },
      async close() {
        db.close();
      },
    } satisfies OpenTarget;
  },
};

interface Level {
  open(): Promise<void>;
  put(key: string, value: Uint8Array): Promise<void>;
  get(key: string): Promise<Uint8Array | undefined>;
  batch(operations: { type: 'del'; key: string }[]): Promise<void>;
  iterator(): AsyncIterable<[string, Uint8Array]> & { close(): Promise<void> };
  close(): Promise<void>;
}

/** An 8-byte big-endian expiry in front of the payload, so reads need no second lookup. */
function withExpiry(expiresAt: number, data: Uint8Array): Buffer {
  const buffer = Buffer.allocUnsafe(8 + data.byteLength);
  buffer.writeDoubleBE(expiresAt, 0);
  buffer.set(data, 8);
  return buffer;
}

/** classic-level `put`/`get` of the same bytes, no expiry index. */
export const levelEngine: Target = {
  name: 'raw-level',
  kind: 'engine',
  description: 'bare classic-level `put`/`get`, expiry in a value prefix, no index',
  durability: 'process crash: yes (LevelDB log); power loss: recent writes may be lost',
  async open(dir) {
    const { ClassicLevel } = await importOptional<{
      ClassicLevel: new (path: string, options: object) => Level;
    }>('classic-level');
    const db = new ClassicLevel(join(dir, 'raw-level'), {
      keyEncoding: 'utf8',
      valueEncoding: 'view',
    });
    await db.open();
    const live = async (id: string) => {
      const value = await db.get(id);
      if (value === undefined) return undefined;
      const buffer = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
      return buffer.readDoubleBE(0) > Date.now() ? buffer : undefined;
    };
    return {
      async create(id, body, expiresAt) {
        await db.put(id, withExpiry(expiresAt, encodeBody(body)));
      },
      async read(id) {
        const value = await live(id);
        return value && decodeBody(value.subarray(8));
      },
      async update(id, body, expiresAt) {
        await db.put(id, withExpiry(expiresAt, encodeBody(body)));
      },
      async touch(id, expiresAt) {
        const value = await live(id);
        if (value) await db.put(id, withExpiry(expiresAt, value.subarray(8)));
      },
      cleanupNote: 'a full iteration, deleting expired keys in batches of 1000',
      async cleanup(signal) {
        const now = Date.now();
        let removed = 0;
        let batch: { type: 'del'; key: string }[] = [];
        for await (const [key, value] of db.iterator()) {
          signal.throwIfAborted();
          if (Buffer.from(value.buffer, value.byteOffset, 8).readDoubleBE(0) <= now) {
            batch.push({ type: 'del', key });
            if (batch.length === 1000) {
              await db.batch(batch);
              removed += batch.length;
              batch = [];
            }
          }
        }
        await db.batch(batch);
        return { removed: removed + batch.length };
      },
      async expiredLeft(ids) {
        let left = 0;
        for (const id of ids) if ((await db.get(id)) !== undefined) left++;
        return left;
      },
      async close() {
        await db.close();
      },
    } satisfies OpenTarget;
  },
};

/** One file per session in 256 shard directories, written to a temp file and renamed. */
export const fsEngine: Target = {
  name: 'raw-fs',
  kind: 'engine',
  description: 'bare `fs` write of a temp file + rename, 256 shard dirs, expiry in the mtime',
  durability: 'process crash: yes (atomic rename); power loss: no fsync, recent writes may be lost',
  async open(dir) {
    const root = join(dir, 'raw-fs');
    const made = new Set<string>();
    let sequence = 0;
    const pathOf = (id: string) => join(root, id.slice(0, 2), id);
    const write = async (id: string, data: Uint8Array, expiresAt: number) => {
      const shard = join(root, id.slice(0, 2));
      if (!made.has(shard)) {
        await mkdir(shard, { recursive: true });
        made.add(shard);
      }
      const temp = join(shard, `.${id}.${process.pid}.${sequence++}`);
      await writeFile(temp, data);
      await utimes(temp, expiresAt / 1000, expiresAt / 1000);
      await rename(temp, pathOf(id));
    };
    const live = async (id: string) => {
      try {
        const info = await stat(pathOf(id));
        return info.mtimeMs > Date.now();
      } catch {
        return false;
      }
    };
    return {
      async create(id, body, expiresAt) {
        await write(id, encodeBody(body), expiresAt);
      },
      async read(id) {
        try {
          const data = await readFile(pathOf(id));
          return decodeBody(data);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
          throw error;
        }
      },
      async update(id, body, expiresAt) {
        await write(id, encodeBody(body), expiresAt);
      },
      async touch(id, expiresAt) {
        if (await live(id)) await utimes(pathOf(id), expiresAt / 1000, expiresAt / 1000);
      },
      cleanupNote: 'readdir of every shard, `stat` each file, unlink those whose mtime has passed',
      async cleanup(signal) {
        const now = Date.now();
        let removed = 0;
        for (const shard of await readdir(root).catch(() => [] as string[])) {
          for (const name of await readdir(join(root, shard))) {
            signal.throwIfAborted();
            const path = join(root, shard, name);
            const info = await stat(path).catch(() => undefined);
            if (info !== undefined && info.mtimeMs <= now) {
              await unlink(path).catch(() => undefined);
              removed++;
            }
          }
        }
        return { removed };
      },
      async expiredLeft(ids) {
        let left = 0;
        for (const id of ids)
          if (
            await stat(pathOf(id)).then(
              () => true,
              () => false,
            )
          )
            left++;
        return left;
      },
      async close() {},
    } satisfies OpenTarget;
  },
};

void require;
