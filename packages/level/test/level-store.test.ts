import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  statfsSync,
  statSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { mountSmallFilesystem, unmountSmallFilesystem } from '@sessile/conformance';
import {
  generateSessionId,
  isSessionError,
  manual,
  type SessionErrorCode,
  SessionManager,
  type SessionRecord,
} from '@sessile/core';
import { LevelStore } from '@sessile/level';
import { ClassicLevel } from 'classic-level';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const HOUR_MS = 3_600_000;
const root = mkdtempSync(join(tmpdir(), 'sessile-level-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let dirs = 0;
const freshPath = () => join(root, `db-${++dirs}`);
const encoder = new TextEncoder();
const record = (text: string, expiresAt = Date.now() + HOUR_MS): SessionRecord => ({
  data: encoder.encode(text),
  expiresAt,
});
const text = (found: SessionRecord | undefined) =>
  found === undefined ? undefined : new TextDecoder().decode(found.data);

async function withStore<T>(body: (store: LevelStore) => Promise<T>): Promise<T> {
  const store = await LevelStore.open({ path: freshPath() });
  try {
    return await body(store);
  } finally {
    await store.close();
  }
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the promise to reject');
}

/** The message of the innermost `cause` of `error`, which says what went wrong. */
function deepestMessage(error: unknown): string {
  let current = error;
  while (current instanceof Error && current.cause instanceof Error) current = current.cause;
  return current instanceof Error ? current.message : String(current);
}

async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const ids: string[] = [];
  for await (const id of iterable) ids.push(id);
  return ids;
}

/** The ids named by the store's expiry index entries, in index order. */
async function indexedIds(store: LevelStore): Promise<string[]> {
  const keys = await store.db.keys({ gte: Uint8Array.of(0x78), lt: Uint8Array.of(0x79) }).all();
  return keys.map((key) => Buffer.from(key).toString('latin1', 9));
}

async function dropIndexEntry(store: LevelStore, id: string): Promise<void> {
  const keys = await store.db.keys({ gte: Uint8Array.of(0x78), lt: Uint8Array.of(0x79) }).all();
  const key = keys.find((candidate) => Buffer.from(candidate).toString('latin1', 9) === id);
  if (key === undefined) throw new Error('no index entry to drop');
  await store.db.del(key);
}

const recordKey = (id: string) => Buffer.from(`r${id}`, 'latin1');

/** Writes `value` under `id` and, once the store has acknowledged it, notes it in `acknowledged`. */
function acknowledgingWrites(store: LevelStore, acknowledged: Map<string, string>) {
  return async (id: string, value: string): Promise<void> => {
    await store.set(id, record(value));
    acknowledged.set(id, value);
  };
}

/** The store's owner index entries, each as `owner id`, sorted. */
async function ownerEntries(store: LevelStore): Promise<string[]> {
  const keys = await store.db.keys({ gte: Uint8Array.of(0x6f), lt: Uint8Array.of(0x70) }).all();
  return keys
    .map((key) => {
      const bytes = Buffer.from(key);
      const end = 3 + bytes.readUInt16BE(1);
      return `${bytes.toString('utf8', 3, end)} ${bytes.toString('latin1', end)}`;
    })
    .sort();
}

/** What the records say the owner index should hold, in the form of `ownerEntries`. */
async function ownersOfRecords(store: LevelStore): Promise<string[]> {
  const entries: string[] = [];
  for (const id of await collect(store.ids())) {
    const owner = (await store.get(id))?.owner;
    if (owner !== undefined) entries.push(`${owner} ${id}`);
  }
  return entries.sort();
}

const owned = (text: string, owner: string, expiresAt?: number): SessionRecord => ({
  ...record(text, expiresAt),
  owner,
});

describe('LevelStore: one process per directory', () => {
  const fixture = new URL('./fixtures/open-store.mjs', import.meta.url).pathname;
  const openInChild = async (path: string) => {
    // The timeout only guards the test run: a child that hangs is killed and fails the test.
    const { stdout } = await run(process.execPath, [fixture, path], { timeout: 60_000 });
    return JSON.parse(stdout) as Record<string, unknown>;
  };

  it('a second process opening a held directory fails fast with ERR_STORE_BUSY naming the lock', async () => {
    const path = freshPath();
    const store = await LevelStore.open({ path });
    try {
      await store.set(generateSessionId(), record('held'));
      const outcome = await openInChild(path);
      expect(outcome).toMatchObject({
        opened: false,
        name: 'SessionError',
        code: 'ERR_STORE_BUSY',
        causeCode: 'LEVEL_DATABASE_NOT_OPEN',
        rootCauseCode: 'LEVEL_LOCKED',
      });
      expect(outcome.message).toMatch(/locked/);
      expect(outcome.message).toMatch(/one process per directory/);
      expect(outcome.message).toMatch(/@sessile\/sqlite or @sessile\/file/);
    } finally {
      await store.close();
    }
    // Once the holder closes, another process opens the same data.
    expect(await openInChild(path)).toEqual({ opened: true, count: 1 });
  }, 120_000);

  it('a second store on the same directory in this process gets the same error', async () => {
    const path = freshPath();
    const store = await LevelStore.open({ path });
    try {
      const error = await rejection(LevelStore.open({ path }));
      expect(isSessionError(error, 'ERR_STORE_BUSY')).toBe(true);
      expect((error as Error).message).toMatch(/one process per directory/);
    } finally {
      await store.close();
    }
  });

  it('a second store naming the directory through a symbolic link, in this process, gets the same error, and the first loses nothing', async () => {
    const base = freshPath();
    mkdirSync(base);
    const path = join(base, 'db');
    const store = await LevelStore.open({ path });
    const link = join(base, 'link');
    symlinkSync(path, link);
    const parentLink = join(base, 'parent-link');
    symlinkSync(base, parentLink);
    const ids = Array.from({ length: 200 }, () => generateSessionId());
    try {
      for (const other of [link, join(parentLink, 'db')]) {
        const error = await rejection(LevelStore.open({ path: other }));
        expect(isSessionError(error, 'ERR_STORE_BUSY')).toBe(true);
        expect((error as Error).message).toContain(other);
        expect((error as Error).message).toMatch(/one process per directory/);
      }
      for (const id of ids) await store.set(id, record(id));
    } finally {
      await store.close();
    }
    // Once the first store closes, the directory opens under any of its names, every write kept.
    const again = await LevelStore.open({ path: link });
    try {
      expect(await again.count()).toBe(ids.length);
      for (const id of ids) expect(text(await again.get(id))).toBe(id);
    } finally {
      await again.close();
    }
  });

  /** A child process holding `path` open, which writes on demand and closes when told. */
  async function holdInChild(path: string, kind: 'store' | 'foreign') {
    const holder = new URL('./fixtures/hold-directory.mjs', import.meta.url).pathname;
    const child = spawn(process.execPath, [holder, path, kind], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    let buffered = '';
    const waiters: Array<(line: string) => void> = [];
    child.stdout.on('data', (chunk: Buffer) => {
      const lines = (buffered + chunk.toString()).split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) waiters.shift()?.(line);
    });
    const nextLine = () =>
      Promise.race([
        new Promise<string>((resolve) => waiters.push(resolve)),
        exited.then((code) => Promise.reject(new Error(`the holder exited with ${code}`))),
      ]);
    expect(await nextLine()).toBe('held');
    return {
      write: async () => {
        child.stdin.write('write\n');
        return nextLine();
      },
      close: async () => {
        child.stdin.end();
        return exited;
      },
    };
  }

  it('probe of a directory another process holds answers as if nobody held it, disturbing nothing, and open then rejects with ERR_STORE_BUSY', async () => {
    const path = freshPath();
    const holder = await holdInChild(path, 'store');
    try {
      expect(await LevelStore.probe({ path })).toEqual({ state: 'present' });
      const busy = await rejection(LevelStore.open({ path }));
      expect(isSessionError(busy, 'ERR_STORE_BUSY'), String(busy)).toBe(true);
      // probe takes no lock and leaves no copy behind, so the holder goes on writing.
      expect(await holder.write()).toBe('wrote');
      expect(readdirSync(root).filter((name) => name.startsWith('.sessile'))).toEqual([]);
    } finally {
      expect(await holder.close()).toBe(0);
    }
    expect(await LevelStore.probe({ path })).toEqual({ state: 'present' });
    const store = await LevelStore.open({ path });
    expect(await store.count()).toBe(2);
    await store.close();

    // It reads the held database's keys: another program's is refused as when nobody holds it.
    const foreign = freshPath();
    const app = await holdInChild(foreign, 'foreign');
    try {
      expect(await LevelStore.probe({ path: foreign })).toMatchObject({
        state: 'refused',
        reason: expect.stringContaining("another program's database"),
      });
    } finally {
      expect(await app.close()).toBe(0);
    }
    expect(await LevelStore.probe({ path: foreign })).toMatchObject({
      state: 'refused',
      reason: expect.stringContaining("another program's database"),
    });
  }, 120_000);

  it("probe of an app's sublevel another open store uses answers present, and leaves that store working", async () => {
    const db = new ClassicLevel<string, string>(freshPath());
    await db.open();
    try {
      const store = await LevelStore.open({ db });
      const id = generateSessionId();
      await store.set(id, record('in use'));
      expect(await LevelStore.probe({ db })).toEqual({ state: 'present' });
      expect(isSessionError(await rejection(LevelStore.open({ db })), 'ERR_STORE_BUSY')).toBe(true);
      expect(text(await store.get(id))).toBe('in use');
      await store.set(id, record('still written'));
      expect(text(await store.get(id))).toBe('still written');
      await store.close();
    } finally {
      await db.close();
    }
  });

  it('a symbolic link to a missing directory at the path or above it: probe refuses and open rejects, naming the link', async () => {
    const target = join(root, `nowhere-${++dirs}`);
    const link = join(root, `dangling-${++dirs}`);
    symlinkSync(target, link);
    const reason = `${link} is a symbolic link to a missing directory (${target})`;
    for (const path of [link, join(link, 'sessions')]) {
      expect(await LevelStore.probe({ path })).toEqual({ state: 'refused', reason });
      const error = await rejection(LevelStore.open({ path }));
      expect(isSessionError(error, 'ERR_STORE_IO'), String(error)).toBe(true);
      // Then the mkdir error it met, in parentheses.
      const prefix = `Cannot open LevelDB directory ${path}: ${reason} (`;
      expect((error as Error).message.slice(0, prefix.length)).toBe(prefix);
      expect((error as Error).cause).toMatchObject({ code: 'LEVEL_DATABASE_NOT_OPEN' });
    }
    expect(existsSync(target)).toBe(false);
  });

  it('a path that is a regular file rejects with ERR_STORE_IO naming the path and the reason', async () => {
    const file = join(root, `not-a-directory-${++dirs}`);
    writeFileSync(file, 'plain file');
    const error = await rejection(LevelStore.open({ path: file }));
    expect(isSessionError(error, 'ERR_STORE_IO')).toBe(true);
    const { message, cause } = error as Error;
    expect(message).toBe(
      `Cannot open LevelDB directory ${file}: it is a regular file, not a directory (EEXIST: file already exists, mkdir '${file}')`,
    );
    // The original error stays the cause, with the file system's own error under it.
    expect(cause).toMatchObject({ code: 'LEVEL_DATABASE_NOT_OPEN', cause: { code: 'EEXIST' } });
  });

  it('a path below a regular file names the real reason instead of "Database failed to open"', async () => {
    const file = join(root, `not-a-directory-${++dirs}`);
    writeFileSync(file, 'plain file');
    const path = join(file, 'sessions');
    const error = await rejection(LevelStore.open({ path }));
    expect(isSessionError(error, 'ERR_STORE_IO')).toBe(true);
    expect((error as Error).message).toMatch(
      new RegExp(`^Cannot open LevelDB directory ${path}: ENOTDIR: not a directory`),
    );
  });

  it('unknown options reject with a TypeError naming them and the likely intended one', async () => {
    const path = freshPath();
    for (const [options, expected] of [
      [
        { path, syncRead: false },
        "LevelStore.open: unknown option 'syncRead'; did you mean 'syncReads'?",
      ],
      [
        { path, maxRecordByte: 10 },
        "LevelStore.open: unknown option 'maxRecordByte'; did you mean 'maxRecordBytes'?",
      ],
      [{ path, ttl: 1000 }, "LevelStore.open: unknown option 'ttl'"],
    ] as const) {
      const error = await rejection(LevelStore.open(options as never));
      expect(error).toBeInstanceOf(TypeError);
      expect((error as Error).message).toBe(expected);
    }
    // Nothing was opened: the directory is free.
    const store = await LevelStore.open({ path });
    await store.close();
  });

  it('a maxRecordBytes over what a LevelDB value holds is a TypeError, from open and probe', async () => {
    const path = freshPath();
    for (const method of ['open', 'probe'] as const) {
      const error = await rejection(LevelStore[method]({ path, maxRecordBytes: 2 ** 32 }));
      expect(error).toBeInstanceOf(TypeError);
      expect((error as Error).message).toBe(
        `maxRecordBytes must be at most ${2 ** 32 - 1025} (LevelDB writes a value's length in 32 bits), got ${2 ** 32}`,
      );
    }
    expect(existsSync(path)).toBe(false);
    const store = await LevelStore.open({ path, maxRecordBytes: 2 ** 32 - 1025 });
    await store.close();
  });

  it('a path with a NUL character is a TypeError naming it, from open and probe', async () => {
    const path = `${freshPath()}\0x`;
    for (const method of ['open', 'probe'] as const) {
      const error = await rejection(LevelStore[method]({ path }));
      expect(error).toBeInstanceOf(TypeError);
      expect((error as Error).message).toBe(
        `options.path must not contain a NUL character, got ${JSON.stringify(path)}`,
      );
    }
  });

  it('probe checks options as open does, and its errors name probe', async () => {
    const path = freshPath();
    const db = new ClassicLevel(freshPath());
    try {
      for (const [options, expected] of [
        [
          { path, syncRead: false },
          "LevelStore.probe: unknown option 'syncRead'; did you mean 'syncReads'?",
        ],
        [{}, 'LevelStore.probe needs exactly one of { path } or { db }'],
        [null, 'LevelStore.probe needs { path } or { db }'],
        [{ path, maxRecordBytes: 0 }, /maxRecordBytes/],
        [{ db: {} }, 'options.db must be an abstract-level database or sublevel'],
        [{ db, sublevel: 7 }, 'options.sublevel must be a non-empty string'],
      ] as const) {
        const error = await rejection(LevelStore.probe(options as never));
        expect(error).toBeInstanceOf(TypeError);
        if (typeof expected === 'string') expect((error as Error).message).toBe(expected);
        else expect((error as Error).message).toMatch(expected);
        expect((error as Error).message).not.toMatch(/LevelStore\.open/);
      }
    } finally {
      await db.close();
    }
    expect(existsSync(path)).toBe(false);
  });

  it('bad options reject with a TypeError before the directory is touched', async () => {
    const path = freshPath();
    await expect(LevelStore.open({ path, maxRecordBytes: 0 })).rejects.toThrow(TypeError);
    await expect(LevelStore.open({ path, maxRecordBytes: Number.NaN })).rejects.toThrow(TypeError);
    await expect(LevelStore.open({ path, syncReads: 'yes' } as never)).rejects.toThrow(TypeError);
    expect(existsSync(path), 'no database was created for options that were refused').toBe(false);
    const store = await LevelStore.open({ path });
    try {
      // A directory another store holds still names the bad option, not ERR_STORE_BUSY.
      await expect(LevelStore.open({ path, maxRecordBytes: -5 })).rejects.toThrow(/maxRecordBytes/);
    } finally {
      await store.close();
    }
  });

  it('open needs exactly one of path and db, and a valid sublevel name', async () => {
    await expect(LevelStore.open({})).rejects.toThrow(TypeError);
    const db = new ClassicLevel(freshPath());
    try {
      await expect(LevelStore.open({ path: freshPath(), db })).rejects.toThrow(TypeError);
      await expect(LevelStore.open({ db: {} as never })).rejects.toThrow(TypeError);
      // abstract-level reserves '!' and '"' as separators.
      await expect(LevelStore.open({ db, sublevel: 'a!b' })).rejects.toThrow(TypeError);
    } finally {
      await db.close();
    }
  });

  it('sublevel with path is a TypeError naming it, before the directory is created', async () => {
    const path = freshPath();
    for (const sublevel of ['web', 42]) {
      const error = await rejection(LevelStore.open({ path, sublevel } as never));
      expect(error).toBeInstanceOf(TypeError);
      expect((error as Error).message).toMatch(/options\.sublevel applies only with options\.db/);
    }
    expect(existsSync(path)).toBe(false);
  });
});

describe('LevelStore: the expiry index', () => {
  it('sweep orders expiresAt numerically: negative, fractional and far-future times', async () => {
    await withStore(async (store) => {
      const now = 1_000.5;
      const times = [-5e12, -1, -0.25, 0, 0.75, 999, 1_000.5, 1_000.75, 1_001, 2 ** 40, 8.64e15];
      const ids = times.map(() => generateSessionId());
      for (const [i, id] of ids.entries()) await store.set(id, record(`t${i}`, times[i]));
      const result = await store.sweep({ now });
      expect(result).toMatchObject({ removed: 7, scanned: 7, done: true });
      const left = new Set(await indexedIds(store));
      for (const [i, id] of ids.entries()) {
        const raw = await store.db.get(recordKey(id));
        expect(raw !== undefined, `record at ${times[i]}`).toBe((times[i] as number) > now);
        expect(left.has(id), `index entry at ${times[i]}`).toBe((times[i] as number) > now);
      }
    });
  });

  it('every write leaves exactly one index entry per record', async () => {
    await withStore(async (store) => {
      const id = generateSessionId();
      const start = Date.now();
      await store.set(id, record('a', start + HOUR_MS));
      await store.set(id, record('b', start + 2 * HOUR_MS));
      await store.touch(id, start + 3 * HOUR_MS);
      await store.set(id, record('c', start + 3 * HOUR_MS), { only: 'present' });
      expect(await indexedIds(store)).toEqual([id]);
      expect(await store.delete(id)).toBe(true);
      expect(await indexedIds(store)).toEqual([]);
    });
  });

  it('an index entry left without its record is never returned, and sweep cleans it', async () => {
    await withStore(async (store) => {
      const start = Date.now();
      const orphan = generateSessionId();
      const kept = generateSessionId();
      await store.set(orphan, record('orphan', start + HOUR_MS));
      await store.set(kept, record('kept', start + 10 * HOUR_MS));
      await store.db.del(recordKey(orphan));

      expect(await store.get(orphan)).toBeUndefined();
      expect(await store.touch(orphan, start + 5 * HOUR_MS)).toBe(false);
      expect(await store.delete(orphan)).toBe(false);
      expect(await store.count()).toBe(1);
      expect(await collect(store.ids())).toEqual([kept]);

      const result = await store.sweep({ now: start + 2 * HOUR_MS });
      expect(result).toEqual({ removed: 0, scanned: 1, done: true });
      expect(await indexedIds(store)).toEqual([kept]);
      expect(text(await store.get(kept))).toBe('kept');
      // The id is free again for a create.
      expect(await store.set(orphan, record('new'), { only: 'absent' })).toBe(true);
    });
  });

  it('a record that lost its index entry still expires for reads; repairIndex lets sweep remove it', async () => {
    await withStore(async (store) => {
      const lost = generateSessionId();
      const live = generateSessionId();
      await store.set(lost, record('lost', Date.now() + 150));
      await store.set(live, record('live'));
      await dropIndexEntry(store, lost);
      await new Promise((resolve) => setTimeout(resolve, 300));

      expect(await store.get(lost)).toBeUndefined();
      expect(await store.touch(lost, Date.now() + HOUR_MS)).toBe(false);
      expect(await store.count()).toBe(1);
      expect(await collect(store.ids())).toEqual([live]);
      expect(await store.set(lost, record('x'), { only: 'present' })).toBe(false);

      // Sweep walks only the index, so it cannot see the record (the documented limit)...
      expect(await store.sweep()).toMatchObject({ removed: 0, done: true });
      expect(await store.db.get(recordKey(lost))).toBeDefined();
      // ...until repairIndex re-creates the entry.
      expect(await store.repairIndex()).toEqual({ scanned: 2, repaired: 1, removed: 0 });
      expect(await store.repairIndex()).toEqual({ scanned: 2, repaired: 0, removed: 0 });
      expect(await store.sweep()).toMatchObject({ removed: 1, done: true });
      expect(await store.db.get(recordKey(lost))).toBeUndefined();
      expect(await indexedIds(store)).toEqual([live]);
    });
  });

  it('any write to a record that lost its index entry indexes it again', async () => {
    await withStore(async (store) => {
      const id = generateSessionId();
      const start = Date.now();
      await store.set(id, record('a', start + HOUR_MS));
      await dropIndexEntry(store, id);
      expect(await store.touch(id, start + 2 * HOUR_MS)).toBe(true);
      expect(await indexedIds(store)).toEqual([id]);
      expect(await store.sweep({ now: start + 3 * HOUR_MS })).toMatchObject({ removed: 1 });
    });
  });

  it('a record written below where the last sweep stopped is still swept', async () => {
    await withStore(async (store) => {
      const start = Date.now();
      const first = generateSessionId();
      await store.set(first, record('first', start + HOUR_MS));
      expect(await store.sweep({ now: start + 2 * HOUR_MS })).toMatchObject({ removed: 1 });
      // Earlier than every entry the last sweep already walked past.
      const earlier = generateSessionId();
      const touched = generateSessionId();
      await store.set(earlier, record('earlier', start + HOUR_MS / 2));
      await store.set(touched, record('touched', start + 10 * HOUR_MS));
      await store.touch(touched, start + HOUR_MS / 4);
      expect(await store.sweep({ now: start + 2 * HOUR_MS })).toEqual({
        removed: 2,
        scanned: 2,
        done: true,
      });
      expect(await indexedIds(store)).toEqual([]);
    });
  });

  it('records that expire while a sweep runs are found by the next sweep', async () => {
    await withStore(async (store) => {
      const start = Date.now();
      const old = Array.from({ length: 3000 }, () => generateSessionId());
      await Promise.all(old.map((id) => store.set(id, record(id, start + HOUR_MS))));
      // Started after the sweep's iterator, so it cannot see them, and due before where it stops.
      const late = Array.from({ length: 200 }, () => generateSessionId());
      const sweeping = store.sweep({ now: start + 2 * HOUR_MS, limit: 100_000 });
      const writing = late.map((id) => store.set(id, record(id, start + HOUR_MS / 2)));
      const first = await sweeping;
      await Promise.all(writing);
      const second = await store.sweep({ now: start + 2 * HOUR_MS });
      expect(second.done).toBe(true);
      expect(first.removed + second.removed).toBe(3200);
      expect(await indexedIds(store)).toEqual([]);
    });
  }, 60_000);

  it('a write racing a sweep of the same id is never lost', async () => {
    await withStore(async (store) => {
      const start = Date.now();
      const ids = Array.from({ length: 2000 }, () => generateSessionId());
      await Promise.all(ids.map((id) => store.set(id, record(id, start + HOUR_MS))));
      // Each touch renews a record the concurrent sweep considers expired; they interleave
      // with the sweep's batches.
      const sweeping = store.sweep({ now: start + 2 * HOUR_MS, limit: 100_000 });
      const touching: Promise<boolean>[] = [];
      for (const [i, id] of ids.entries()) {
        touching.push(store.touch(id, start + 10 * HOUR_MS));
        if (i % 4 === 0) await new Promise((resolve) => setImmediate(resolve));
      }
      const [touched] = await Promise.all([Promise.all(touching), sweeping]);
      for (const [i, id] of ids.entries()) {
        const found = await store.get(id);
        expect(found !== undefined).toBe(touched[i]);
        if (found !== undefined) expect(found.expiresAt).toBe(start + 10 * HOUR_MS);
      }
      expect(await store.sweep({ now: start + 2 * HOUR_MS })).toMatchObject({ removed: 0 });
      expect(await store.count()).toBe(touched.filter(Boolean).length);
    });
  }, 60_000);
});

describe('LevelStore: the owner index', () => {
  it('every write changes the owner entry in the batch that changes the record', async () => {
    await withStore(async (store) => {
      const start = Date.now();
      const [a, b, c] = [generateSessionId(), generateSessionId(), generateSessionId()];
      await store.set(a, owned('a', 'ada', start + HOUR_MS));
      await store.set(b, owned('b', 'ada', start + 10 * HOUR_MS));
      await store.set(c, owned('c', 'bob'));
      expect(await ownerEntries(store)).toEqual([`ada ${a}`, `ada ${b}`, `bob ${c}`].sort());
      await store.touch(a, start + 2 * HOUR_MS);
      await store.set(b, owned('b', 'bob', start + 10 * HOUR_MS), { only: 'present' });
      expect(await ownerEntries(store)).toEqual([`ada ${a}`, `bob ${b}`, `bob ${c}`].sort());
      await store.set(c, record('c'));
      expect(await ownerEntries(store)).toEqual([`ada ${a}`, `bob ${b}`].sort());
      await store.delete(b);
      expect(await ownerEntries(store)).toEqual([`ada ${a}`]);
      await store.set(b, owned('b', 'bob', start + 10 * HOUR_MS));
      // a (ada) and c (no owner) are due; b is not.
      expect(await store.sweep({ now: start + 3 * HOUR_MS })).toMatchObject({ removed: 2 });
      expect(await ownerEntries(store)).toEqual([`bob ${b}`]);
      await store.clear();
      expect(await ownerEntries(store)).toEqual([]);
    });
  });

  it('reads records written before owners, which have none, and owns them on their next write', async () => {
    await withStore(async (store) => {
      const id = generateSessionId();
      const expiresAt = Date.now() + HOUR_MS;
      // Format 1, the only one before owners: [1][expiresAt, float64 BE][data].
      const old = Buffer.alloc(9 + 3);
      old[0] = 1;
      old.writeDoubleBE(expiresAt, 1);
      old.write('old', 9);
      await store.db.put(recordKey(id), old);
      expect(await store.get(id)).toEqual({ data: encoder.encode('old'), expiresAt });
      expect(await store.ownedBy('ada')).toEqual([]);
      expect(await store.touch(id, expiresAt + 1)).toBe(true);
      expect(await store.get(id)).toEqual({
        data: encoder.encode('old'),
        expiresAt: expiresAt + 1,
      });
      await store.set(id, owned('new', 'ada', expiresAt));
      expect((await store.db.get(recordKey(id)))?.[0]).toBe(2);
      expect(await store.ownedBy('ada')).toEqual([
        { id, record: { data: encoder.encode('new'), expiresAt, owner: 'ada' } },
      ]);
      // Without an owner a record is written in format 1 again.
      await store.set(id, record('plain', expiresAt));
      expect((await store.db.get(recordKey(id)))?.[0]).toBe(1);
    });
  });

  it('an entry whose record is gone, expired, unreadable or owned by another is never listed', async () => {
    await withStore(async (store) => {
      const [gone, expired, moved, corrupt, live] = Array.from({ length: 5 }, () =>
        generateSessionId(),
      );
      const entry = (id: string) => {
        const owner = Buffer.from('ada');
        return Buffer.concat([Uint8Array.of(0x6f, 0, owner.length), owner, Buffer.from(id)]);
      };
      await store.db.put(entry(gone as string), new Uint8Array(0));
      await store.set(expired as string, owned('expired', 'ada', Date.now() - 1));
      await store.set(moved as string, owned('moved', 'bob'));
      await store.db.put(entry(moved as string), new Uint8Array(0));
      await store.set(corrupt as string, owned('corrupt', 'ada'));
      await store.db.put(recordKey(corrupt as string), Uint8Array.of(2, 0, 0));
      await store.set(live as string, owned('live', 'ada'));
      expect((await store.ownedBy('ada')).map((session) => session.id)).toEqual([live]);
    });
  });

  it('lists no session written by hand under an id no session can have, so revoking the owner reaches every session', async () => {
    await withStore(async (store) => {
      const live = generateSessionId();
      await store.set(live, owned('live', 'ada'));
      const value = await store.db.get(recordKey(live));
      if (value === undefined) throw new Error('no record to copy');
      const owner = Buffer.from('ada');
      for (const stray of ['', 'short', 'has space in it, long enough', 'x'.repeat(129)]) {
        await store.db.put(recordKey(stray), value);
        const entry = Buffer.concat([
          Uint8Array.of(0x6f, 0, owner.length),
          owner,
          Buffer.from(stray),
        ]);
        await store.db.put(entry, new Uint8Array(0));
      }
      const listed = (await store.ownedBy('ada')).map((session) => session.id);
      expect(listed).toEqual([live]);
      // What "sign out everywhere" does with the list: every listed id can be deleted.
      for (const id of listed) expect(await store.delete(id)).toBe(true);
    });
  });

  it('repairIndex re-creates a lost owner entry, so ownedBy lists the session again', async () => {
    await withStore(async (store) => {
      const [lost, kept] = [generateSessionId(), generateSessionId()];
      await store.set(lost, owned('lost', 'ada'));
      await store.set(kept, owned('kept', 'ada'));
      const keys = await store.db.keys({ gte: Uint8Array.of(0x6f), lt: Uint8Array.of(0x70) }).all();
      const entry = keys.find((key) => Buffer.from(key).toString('latin1').endsWith(lost));
      await store.db.del(entry as Uint8Array);
      expect((await store.ownedBy('ada')).map((session) => session.id)).toEqual([kept]);
      expect(await store.repairIndex()).toEqual({ scanned: 2, repaired: 1, removed: 0 });
      expect(await ownerEntries(store)).toEqual([`ada ${kept}`, `ada ${lost}`].sort());
    });
  });

  it('repairIndex removes owner entries whose record is gone or names another owner, as a crash inside clear() leaves them', async () => {
    await withStore(async (store) => {
      const [gone, kept, moved, corrupt, bobs] = [
        generateSessionId(),
        generateSessionId(),
        generateSessionId(),
        generateSessionId(),
        generateSessionId(),
      ];
      const expiresAt = Date.now() + HOUR_MS;
      for (const id of [gone, kept, moved, corrupt])
        await store.set(id, owned(id, 'ada', expiresAt));
      await store.set(bobs, owned('bob', 'bob', expiresAt + 1000));
      // Behind the store's back: one record gone, one now holding bob's record, one undecodable.
      await store.db.del(recordKey(gone));
      await store.db.put(recordKey(moved), (await store.db.get(recordKey(bobs))) as Uint8Array);
      await store.db.put(recordKey(corrupt), Uint8Array.of(2, 0, 0));
      // Re-created: the moved record's entries under bob and at bob's record's expiry.
      expect(await store.repairIndex()).toEqual({ scanned: 4, repaired: 2, removed: 2 });
      // The undecodable record keeps its entry: an overwrite repairs both.
      expect(await ownerEntries(store)).toEqual(
        [`ada ${corrupt}`, `ada ${kept}`, `bob ${bobs}`, `bob ${moved}`].sort(),
      );
      expect((await store.ownedBy('ada')).map((session) => session.id)).toEqual([kept]);
      expect(await store.repairIndex()).toEqual({ scanned: 4, repaired: 0, removed: 0 });
    });
  });

  it('owners with a shared prefix, or equal once normalized or case-folded, stay apart', async () => {
    await withStore(async (store) => {
      const owners = [
        'user-1',
        'user-10',
        'User-1',
        '\u00e9',
        'e\u0301',
        '\u{1f600}',
        'x'.repeat(256),
      ];
      const ids = owners.map(() => generateSessionId());
      for (const [n, owner] of owners.entries())
        await store.set(ids[n] as string, owned('x', owner));
      for (const [n, owner] of owners.entries()) {
        expect((await store.ownedBy(owner)).map((session) => session.id)).toEqual([ids[n]]);
        expect((await store.get(ids[n] as string))?.owner).toBe(owner);
      }
    });
  });

  it('after the writing process is killed with SIGKILL, the index matches the records exactly', async () => {
    const path = freshPath();
    const writer = new URL('./fixtures/owner-writer.mjs', import.meta.url).pathname;
    const child = spawn(process.execPath, [writer, path], { stdio: ['ignore', 'pipe', 'inherit'] });
    const acks: string[][] = [];
    let buffered = '';
    await new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`the writer exited with ${code}`)));
      child.stdout.on('data', (chunk: Buffer) => {
        const lines = (buffered + chunk.toString()).split('\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) acks.push(line.split(' '));
        if (acks.length >= 400) resolve();
      });
    });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;

    const store = await LevelStore.open({ path });
    try {
      const entries = await ownerEntries(store);
      expect(entries.length).toBeGreaterThan(0);
      expect(entries).toEqual(await ownersOfRecords(store));
      for (const [action, id] of acks) {
        if (action === 'delete') expect(await store.get(id as string)).toBeUndefined();
      }
    } finally {
      await store.close();
    }
  }, 120_000);

  it('stores in different sublevels of one database list only their own sessions', async () => {
    const db = new ClassicLevel<string, string>(freshPath());
    await db.open();
    try {
      const web = await LevelStore.open({ db });
      const admin = await LevelStore.open({ db, sublevel: 'admin-sessions' });
      const [first, second] = [generateSessionId(), generateSessionId()];
      await web.set(first, owned('web', 'ada'));
      await admin.set(second, owned('admin', 'ada'));
      expect((await web.ownedBy('ada')).map((session) => session.id)).toEqual([first]);
      expect((await admin.ownedBy('ada')).map((session) => session.id)).toEqual([second]);
      await admin.clear();
      expect((await web.ownedBy('ada')).map((session) => session.id)).toEqual([first]);
      await Promise.all([web.close(), admin.close()]);
    } finally {
      await db.close();
    }
  });
});

describe('LevelStore: corrupt records', () => {
  const corrupt = (store: LevelStore, id: string) =>
    store.db.put(recordKey(id), Uint8Array.of(0x01, 0x02));

  it('conditional writes and touch reject with ERR_CORRUPT_RECORD; delete removes the bytes', async () => {
    await withStore(async (store) => {
      const id = generateSessionId();
      await store.set(id, record('a'));
      await corrupt(store, id);
      for (const attempt of [
        store.set(id, record('b'), { only: 'absent' }),
        store.set(id, record('b'), { only: 'present' }),
        store.touch(id, Date.now() + HOUR_MS),
      ]) {
        expect(isSessionError(await rejection(attempt), 'ERR_CORRUPT_RECORD')).toBe(true);
      }
      // Not known to be live, so false, but the damaged bytes are gone.
      expect(await store.delete(id)).toBe(false);
      expect(await store.get(id)).toBeUndefined();
    });
  });

  it('sweep removes a corrupt record once its index entry is due, and the stale entry of an overwrite', async () => {
    await withStore(async (store) => {
      const start = Date.now();
      const due = generateSessionId();
      const overwritten = generateSessionId();
      await store.set(due, record('due', start + HOUR_MS));
      await store.set(overwritten, record('old', start + HOUR_MS));
      await corrupt(store, due);
      await corrupt(store, overwritten);
      // An overwrite cannot read the old expiresAt, so the old entry stays behind until sweep.
      await store.set(overwritten, record('new', start + 10 * HOUR_MS));
      expect(await store.sweep({ now: start + 2 * HOUR_MS })).toEqual({
        removed: 1,
        scanned: 2,
        done: true,
      });
      expect(await store.db.get(recordKey(due))).toBeUndefined();
      expect(text(await store.get(overwritten))).toBe('new');
      expect(await indexedIds(store)).toEqual([overwritten]);
    });
  });

  it('a record whose owner is not UTF-8, or no owner a write accepts, rejects get with ERR_CORRUPT_RECORD for its id only', async () => {
    await withStore(async (store) => {
      const expiresAt = Date.now() + HOUR_MS;
      /** A record in the owned format with `ownerBytes` as its owner and one byte of data. */
      const ownedValue = (ownerBytes: Uint8Array) => {
        const value = Buffer.alloc(11 + ownerBytes.byteLength + 1);
        value[0] = 2;
        value.writeDoubleBE(expiresAt, 1);
        value.writeUInt16BE(ownerBytes.byteLength, 9);
        value.set(ownerBytes, 11);
        value[value.byteLength - 1] = 7;
        return value;
      };
      const fine = generateSessionId();
      await store.set(fine, owned('fine', 'ada'));
      const damaged = [
        Uint8Array.of(0xff), // never UTF-8
        Uint8Array.of(0xc3), // cut short
        Uint8Array.of(0xc0, 0x80), // overlong NUL
        Uint8Array.of(0xed, 0xa0, 0x80), // an encoded lone surrogate
        encoder.encode('a'.repeat(257)), // longer than an owner may be
      ];
      const ids = damaged.map(() => generateSessionId());
      for (const [i, id] of ids.entries()) {
        await store.db.put(recordKey(id), ownedValue(damaged[i] as Uint8Array));
      }
      for (const id of ids) {
        for (const call of [store.get(id), store.touch(id, expiresAt + HOUR_MS)]) {
          expect(isSessionError(await rejection(call), 'ERR_CORRUPT_RECORD'), id).toBe(true);
        }
      }
      // The longest owner, and a leading U+FEFF (which a decoder would strip), read back whole.
      const longest = generateSessionId();
      const withBom = generateSessionId();
      await store.db.put(recordKey(longest), ownedValue(encoder.encode('\u{1F600}'.repeat(128))));
      await store.db.put(recordKey(withBom), ownedValue(encoder.encode('\uFEFFada')));
      expect((await store.get(longest))?.owner).toBe('\u{1F600}'.repeat(128));
      expect((await store.get(withBom))?.owner).toBe('\uFEFFada');
      // Every other session reads and lists as before; count and ids skip what get rejects.
      expect(text(await store.get(fine))).toBe('fine');
      expect((await store.ownedBy('ada')).map((session) => session.id)).toEqual([fine]);
      expect((await collect(store.ids())).sort()).toEqual([fine, longest, withBom].sort());
      expect(await store.count()).toBe(3);
      // An overwrite repairs a damaged record.
      expect(await store.set(ids[0] as string, owned('repaired', 'bob'))).toBe(true);
      expect((await store.get(ids[0] as string))?.owner).toBe('bob');
    });
  });

  it('lists no record written by hand under an id no session can have', async () => {
    await withStore(async (store) => {
      const kept = generateSessionId();
      await store.set(kept, record('kept'));
      const value = await store.db.get(recordKey(kept));
      if (value === undefined) throw new Error('no record to copy');
      for (const stray of [
        '',
        'short',
        'has space in it, long enough',
        'x'.repeat(129),
        '\u00e9'.repeat(20),
      ]) {
        await store.db.put(recordKey(stray), value);
      }
      const listed = await collect(store.ids());
      expect(listed).toEqual([kept]);
      // Each listed id can be read, as `sessile copy` does with every id it lists.
      await Promise.all(listed.map((id) => store.get(id)));
    });
  });
});

describe("LevelStore: inside an app's database", () => {
  async function appDatabase() {
    const db = new ClassicLevel<string, string>(freshPath());
    await db.open();
    // Keys that sort before, around and after the store's sublevel prefix '!sessions!', which
    // belongs to the store.
    const appKeys: [string, string][] = [
      [' first', '1'],
      ['!sessions', 'close to the prefix'],
      ['!sessions"', "the sublevel's upper bound"],
      ['!sessionsx', 'after'],
      ['r-looks-like-a-record', 'app'],
      ['x-looks-like-an-index-entry', 'app'],
      ['user:1', 'alice'],
      ['~last', 'z'],
    ];
    await db.batch(appKeys.map(([key, value]) => ({ type: 'put', key, value })));
    return { db, appKeys };
  }

  it("keeps sessions in a sublevel and leaves the app's keys untouched, including on clear()", async () => {
    const { db, appKeys } = await appDatabase();
    try {
      const store = await LevelStore.open({ db });
      const start = Date.now();
      const ids = [generateSessionId(), generateSessionId(), generateSessionId()];
      for (const id of ids) await store.set(id, record(id, start + HOUR_MS));
      await store.touch(ids[0] as string, start + 10 * HOUR_MS);
      expect(await store.count()).toBe(3);
      expect((await collect(store.ids())).sort()).toEqual([...ids].sort());
      expect(await store.sweep({ now: start + 2 * HOUR_MS })).toMatchObject({
        removed: 2,
        done: true,
      });
      await store.clear();
      expect(await store.count()).toBe(0);
      await store.close();

      // Closing the store leaves the app's database open, with all of its own keys; the store's
      // sublevel keeps only its format key.
      expect(db.status).toBe('open');
      const kept: [string, string][] = [...appKeys, ['!sessions!mformat', '@sessile/level 1']];
      expect(await db.iterator().all()).toEqual(
        kept.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
      );
    } finally {
      await db.close();
    }
  });

  it('stores in different sublevels, or in a sublevel of a sublevel, do not see each other', async () => {
    const { db, appKeys } = await appDatabase();
    try {
      const web = await LevelStore.open({ db });
      const admin = await LevelStore.open({ db, sublevel: 'admin-sessions' });
      const nested = await LevelStore.open({ db: db.sublevel('tenant-1') });
      const id = generateSessionId();
      await web.set(id, record('web'));
      await admin.set(id, record('admin'));
      await nested.set(id, record('nested'));
      expect(text(await web.get(id))).toBe('web');
      expect(text(await admin.get(id))).toBe('admin');
      expect(text(await nested.get(id))).toBe('nested');
      await admin.clear();
      expect(await admin.get(id)).toBeUndefined();
      expect(text(await web.get(id))).toBe('web');
      expect(text(await nested.get(id))).toBe('nested');
      await Promise.all([web.close(), admin.close(), nested.close()]);
      for (const [key, value] of appKeys) expect(await db.get(key)).toBe(value);
    } finally {
      await db.close();
    }
  });

  it('a second open store on the same sublevel of one database rejects with ERR_STORE_BUSY, as a held directory does', async () => {
    const { db } = await appDatabase();
    try {
      const first = await LevelStore.open({ db });
      // Each would keep its own locks on the same sessions, so both could hold one session's lock.
      for (const second of [
        { db },
        { db, sublevel: 'sessions' },
        { db: db.sublevel('tenant-1') },
      ]) {
        const nested = second.db !== db ? await LevelStore.open(second) : undefined;
        const error = await rejection(LevelStore.open(second));
        expect(isSessionError(error, 'ERR_STORE_BUSY'), String(error)).toBe(true);
        expect((error as Error).message).toContain('sublevel');
        await nested?.close();
      }
      await first.close();
      // Once closed, the sublevel may be opened again.
      const again = await LevelStore.open({ db });
      await again.close();
      expect(db.status).toBe('open');
    } finally {
      await db.close();
    }
  });

  it('an app database that is closed rejects with ERR_STORE_IO saying so, and is left closed', async () => {
    const db = new ClassicLevel(freshPath());
    await db.open();
    await db.close();
    const error = await rejection(LevelStore.open({ db }));
    expect(isSessionError(error, 'ERR_STORE_IO'), String(error)).toBe(true);
    expect((error as Error).message).toBe(
      `Cannot open the sublevel "sessions" of the app's database: the database is closed; open it before opening the store`,
    );
    expect((error as Error).cause).toMatchObject({ code: 'LEVEL_DATABASE_NOT_OPEN' });
    expect(db.status).toBe('closed');
  });

  it('sessions in an app database survive reopening it', async () => {
    const path = freshPath();
    const id = generateSessionId();
    const first = new ClassicLevel(path);
    const store = await LevelStore.open({ db: first });
    await store.set(id, record('kept'));
    await store.close();
    await first.close();

    const second = new ClassicLevel(path);
    try {
      const reopened = await LevelStore.open({ db: second });
      expect(text(await reopened.get(id))).toBe('kept');
      // Returned data is the caller's own copy, not a view of the app database's bytes.
      const found = await reopened.get(id);
      found?.data.fill(0);
      expect(text(await reopened.get(id))).toBe('kept');
      await reopened.close();
    } finally {
      await second.close();
    }
  });
});

describe("LevelStore: another program's LevelDB database", () => {
  const latin1 = (keys: Uint8Array[]) => keys.map((key) => Buffer.from(key).toString('latin1'));

  /** A LevelDB directory as level-session-store leaves it: sessions as JSON under their ids. */
  async function peerDirectory(): Promise<string> {
    const path = freshPath();
    const peer = new ClassicLevel<string, string>(path, { valueEncoding: 'utf8' });
    await peer.open();
    await peer.batch([
      { type: 'put', key: '__length__', value: '2' },
      // Session ids that start like the store's own keyspaces, as ids of any peer may.
      { type: 'put', key: 'rX9kq2mPz7', value: '{"cookie":{"expires":null},"user":1}' },
      { type: 'put', key: 'xA1b2C3d4e', value: '{"cookie":{"expires":null},"user":2}' },
    ]);
    await peer.close();
    return path;
  }

  async function keysOf(path: string): Promise<string[]> {
    const db = new ClassicLevel<Uint8Array, Uint8Array>(path, {
      keyEncoding: 'view',
      valueEncoding: 'view',
    });
    await db.open();
    try {
      return latin1(await db.keys().all());
    } finally {
      await db.close();
    }
  }

  async function expectRefused(options: Parameters<typeof LevelStore.open>[0], where: string) {
    const probe = await LevelStore.probe(options);
    expect(probe.state).toBe('refused');
    const error = await rejection(LevelStore.open(options));
    expect(isSessionError(error, 'ERR_UNSUPPORTED'), String(error)).toBe(true);
    const { message } = error as Error;
    expect(message).toContain(where);
    expect(message).toMatch(/another program's database/);
    expect(probe).toMatchObject({ reason: message });
  }

  it("refuses level-session-store's directory with ERR_UNSUPPORTED naming it, and writes nothing", async () => {
    const path = await peerDirectory();
    const before = await keysOf(path);
    await expectRefused({ path }, `LevelDB directory ${path}`);
    expect(await keysOf(path)).toEqual(before);
    // Refused, the directory is free for the program it belongs to.
    const peer = new ClassicLevel(path);
    await peer.open();
    await peer.close();
  });

  it('refuses a LevelDB database whose keys all start like its own but hold other bytes', async () => {
    for (const [key, value] of [
      ['rabbit', 'hop'],
      ['x', ''],
      ['o', 'an app value'],
    ] as const) {
      const path = freshPath();
      const other = new ClassicLevel<string, string>(path);
      await other.open();
      await other.put(key, value);
      await other.close();
      await expectRefused({ path }, `LevelDB directory ${path}`);
    }
  });

  it('opens an empty LevelDB database another program made, and marks it as a store', async () => {
    const path = freshPath();
    const other = new ClassicLevel(path);
    await other.open();
    await other.close();
    expect(await LevelStore.probe({ path })).toMatchObject({ state: 'absent' });
    const store = await LevelStore.open({ path });
    const id = generateSessionId();
    await store.set(id, record('new'));
    await store.close();
    expect(await LevelStore.probe({ path })).toEqual({ state: 'present' });
    expect(await keysOf(path)).toEqual(['mformat', `r${id}`, expect.stringMatching(/^x/)]);
  });

  it('opens a store made before the format key, keeps its sessions, and marks it', async () => {
    const path = freshPath();
    const id = generateSessionId();
    const first = await LevelStore.open({ path });
    await first.set(id, { ...record('older'), owner: 'ada' });
    await first.close();
    // What a release without the format key left: the three keyspaces only.
    const raw = new ClassicLevel(path);
    await raw.open();
    await raw.del('mformat');
    await raw.close();
    expect(await LevelStore.probe({ path })).toEqual({ state: 'present' });
    const store = await LevelStore.open({ path });
    expect(text(await store.get(id))).toBe('older');
    await store.close();
    expect((await keysOf(path))[0]).toBe('mformat');
  });

  it('refuses a store of a newer format with ERR_UNSUPPORTED, and a format key of other bytes as foreign', async () => {
    for (const [value, pattern] of [
      ['@sessile/level 2', /format 2, newer than the 1 this @sessile\/level reads; upgrade/],
      ['something else', /another program's database/],
    ] as const) {
      const path = freshPath();
      await (await LevelStore.open({ path })).close();
      const raw = new ClassicLevel<string, string>(path);
      await raw.open();
      await raw.put('mformat', value);
      await raw.close();
      const probe = await LevelStore.probe({ path });
      const error = await rejection(LevelStore.open({ path }));
      expect(isSessionError(error, 'ERR_UNSUPPORTED'), String(error)).toBe(true);
      expect((error as Error).message).toMatch(pattern);
      expect((error as Error).message).toContain(path);
      expect(probe).toEqual({ state: 'refused', reason: (error as Error).message, cause: error });
    }
  });

  it("refuses an app's sublevel that holds the app's own keys, and probes a new one as absent", async () => {
    const db = new ClassicLevel<string, string>(freshPath());
    await db.open();
    try {
      await db.put('!sessions!user:1', 'alice');
      await expectRefused({ db }, `the sublevel "sessions" of the app's database`);
      expect(await db.keys().all()).toEqual(['!sessions!user:1']);
      expect(await LevelStore.probe({ db, sublevel: 'web' })).toMatchObject({ state: 'absent' });
      const store = await LevelStore.open({ db, sublevel: 'web' });
      await store.close();
      expect(await LevelStore.probe({ db, sublevel: 'web' })).toEqual({ state: 'present' });
    } finally {
      await db.close();
    }
    // A closed database: probe gives open's reason.
    const error = await rejection(LevelStore.open({ db }));
    expect(await LevelStore.probe({ db })).toEqual({
      state: 'refused',
      reason: (error as Error).message,
      cause: expect.objectContaining({ code: 'ERR_STORE_IO' }),
    });
    expect((error as Error).message).toMatch(/the database is closed; open it/);
  });
});

describe('LevelStore: reads and grouped writes', () => {
  it('with syncReads: false every operation reads asynchronously and keeps the same semantics', async () => {
    const store = await LevelStore.open({ path: freshPath(), syncReads: false });
    try {
      const start = Date.now();
      const [live, expired, corrupt] = [
        generateSessionId(),
        generateSessionId(),
        generateSessionId(),
      ];
      expect(await store.set(live, record('a'), { only: 'absent' })).toBe(true);
      expect(await store.set(live, record('b'), { only: 'absent' })).toBe(false);
      expect(await store.set(live, record('c'), { only: 'present' })).toBe(true);
      expect(text(await store.get(live))).toBe('c');
      expect(await store.touch(live, start + 2 * HOUR_MS)).toBe(true);
      expect((await store.get(live))?.expiresAt).toBe(start + 2 * HOUR_MS);
      expect(await indexedIds(store)).toEqual([live]);

      await store.set(expired, record('old', start - 1));
      expect(await store.get(expired)).toBeUndefined();
      expect(await store.touch(expired, start + HOUR_MS)).toBe(false);
      expect(await store.set(expired, record('new'), { only: 'absent' })).toBe(true);

      await store.db.put(recordKey(corrupt), Uint8Array.of(0xde, 0xad));
      expect(isSessionError(await rejection(store.get(corrupt)), 'ERR_CORRUPT_RECORD')).toBe(true);
      expect(await store.delete(corrupt)).toBe(false);

      expect(await store.delete(live)).toBe(true);
      expect(await store.get(live)).toBeUndefined();
    } finally {
      await store.close();
    }
  });

  it('a syncReads that is not a boolean is a TypeError and leaves the directory free', async () => {
    const path = freshPath();
    const options = { path, syncReads: 'yes' } as unknown as { path: string };
    await expect(LevelStore.open(options)).rejects.toThrow(TypeError);
    const store = await LevelStore.open({ path });
    await store.close();
  });

  it('concurrent writes to many ids, committed together, each keep their record and one index entry', async () => {
    const path = freshPath();
    const start = Date.now();
    const ids = Array.from({ length: 300 }, () => generateSessionId());
    const store = await LevelStore.open({ path });
    await Promise.all(ids.map((id, i) => store.set(id, record(`v${i}`, start + HOUR_MS + i))));
    // Touch a third, delete a third and overwrite a third, all in flight at once.
    const results = await Promise.all(
      ids.map((id, i) =>
        i % 3 === 0
          ? store.touch(id, start + 2 * HOUR_MS + i)
          : i % 3 === 1
            ? store.delete(id)
            : store.set(id, record(`w${i}`, start + 3 * HOUR_MS + i), { only: 'present' }),
      ),
    );
    expect(results.every((result) => result === true)).toBe(true);
    await store.close();

    const reopened = await LevelStore.open({ path });
    try {
      const kept = ids.filter((_, i) => i % 3 !== 1);
      expect((await indexedIds(reopened)).sort()).toEqual([...kept].sort());
      for (const [i, id] of ids.entries()) {
        const found = await reopened.get(id);
        if (i % 3 === 0) expect(found?.expiresAt).toBe(start + 2 * HOUR_MS + i);
        if (i % 3 === 1) expect(found).toBeUndefined();
        if (i % 3 === 2) expect(text(found)).toBe(`w${i}`);
      }
      expect(await reopened.sweep({ now: start + 4 * HOUR_MS })).toMatchObject({
        removed: kept.length,
        done: true,
      });
    } finally {
      await reopened.close();
    }
  });

  it('writes waiting to be committed together all reject with ERR_STORE_IO when the database closes', async () => {
    const db = new ClassicLevel(freshPath());
    await db.open();
    const store = await LevelStore.open({ db });
    const writes = Array.from({ length: 20 }, (_, i) =>
      rejection(store.set(generateSessionId(), record(`v${i}`))),
    );
    const closing = db.close();
    for (const error of await Promise.all(writes)) {
      expect(isSessionError(error, 'ERR_STORE_IO')).toBe(true);
    }
    await closing;
    await store.close();
  });
});

describe('LevelStore: a damaged table file', () => {
  it('reads and writes that need it reject with ERR_STORE_IO naming the directory, keeping the cause', async () => {
    const path = freshPath();
    const id = generateSessionId();
    const first = await LevelStore.open({ path });
    await first.set(id, record('kept'));
    await first.close();
    // Opening again writes the log out as a table file.
    await (await LevelStore.open({ path })).close();
    const tables = readdirSync(path).filter((name) => name.endsWith('.ldb'));
    expect(tables.length).toBeGreaterThan(0);
    // Zeroes each table's magic number, its last 8 bytes: "not an sstable", which names no file.
    for (const table of tables) {
      const file = join(path, table);
      const fd = openSync(file, 'r+');
      writeSync(fd, Buffer.alloc(8), 0, 8, statSync(file).size - 8);
      closeSync(fd);
    }
    const store = await LevelStore.open({ path });
    try {
      for (const [label, attempt] of [
        ['get', store.get(id)],
        ['touch', store.touch(id, Date.now() + 2 * HOUR_MS)],
        ['count', store.count()],
        ['ids', collect(store.ids())],
      ] as const) {
        const error = await rejection(attempt);
        expect(isSessionError(error, 'ERR_STORE_IO'), `${label}: ${String(error)}`).toBe(true);
        expect((error as Error).message, label).toContain(`${label} on ${path} failed: `);
        expect((error as Error).message, label).not.toContain(id);
        expect((error as Error).cause, label).toMatchObject({ code: 'LEVEL_CORRUPTION' });
      }
    } finally {
      await store.close();
    }
  });
});

describe('LevelStore: clear() and writes in flight', () => {
  it('writes called before clear() are cleared with everything else, their owner entries too', async () => {
    await withStore(async (store) => {
      const ids = Array.from({ length: 5 }, () => generateSessionId());
      for (const id of ids) await store.set(id, owned('before', 'ada'));
      // Each write reads its record, then hands its batch over; clear() is called meanwhile.
      const writes = [
        store.set(ids[0] as string, owned('same owner', 'ada')),
        store.set(ids[1] as string, owned('update', 'ada'), { only: 'present' }),
        store.touch(ids[2] as string, Date.now() + 2 * HOUR_MS),
        store.set(ids[3] as string, owned('new owner', 'bob')),
        store.delete(ids[4] as string),
      ];
      await Promise.all([...writes, store.clear()]);
      // A touch or an update of a cleared session must not bring it back.
      expect(await store.count()).toBe(0);
      for (const id of ids) expect(await store.get(id)).toBeUndefined();
      expect(await indexedIds(store)).toEqual([]);
      expect(await ownerEntries(store)).toEqual([]);
    });
  });

  it('writes called after clear() land after it, with their index entries', async () => {
    await withStore(async (store) => {
      const [old, fresh, moved] = [generateSessionId(), generateSessionId(), generateSessionId()];
      await store.set(old, owned('old', 'ada'));
      await store.set(moved, owned('moved', 'ada'));
      const clearing = store.clear();
      const writes = Promise.all([
        store.set(fresh, owned('fresh', 'ada')),
        store.set(moved, owned('moved', 'bob')),
        store.touch(old, Date.now() + 2 * HOUR_MS),
      ]);
      await clearing;
      // The touch came after the clear, so it found nothing to renew.
      expect(await writes).toEqual([true, true, false]);
      expect(await store.get(old)).toBeUndefined();
      expect((await store.ownedBy('ada')).map((session) => session.id)).toEqual([fresh]);
      expect((await store.ownedBy('bob')).map((session) => session.id)).toEqual([moved]);
      expect(await ownerEntries(store)).toEqual(await ownersOfRecords(store));
      expect((await indexedIds(store)).sort()).toEqual([fresh, moved].sort());
    });
  });

  it('after writes, touches and deletes racing a clear(), both indexes match the records', async () => {
    await withStore(async (store) => {
      const ids = Array.from({ length: 64 }, () => generateSessionId());
      const owners = ['ada', 'bob', undefined];
      for (let round = 0; round < 12; round++) {
        const pending: Promise<unknown>[] = [];
        for (const [i, id] of ids.entries()) {
          // Half of the calls come before the clear, half after it.
          if (i === ids.length / 2) pending.push(store.clear());
          const owner = owners[(round + i) % owners.length];
          const value = { ...record(`r${round}`), ...(owner === undefined ? {} : { owner }) };
          const action = (round + i) % 4;
          if (action === 0) pending.push(store.touch(id, Date.now() + 2 * HOUR_MS));
          else if (action === 1) pending.push(store.delete(id));
          else pending.push(store.set(id, value, action === 2 ? { only: 'present' } : undefined));
        }
        await Promise.all(pending);
        expect(await ownerEntries(store), `round ${round}`).toEqual(await ownersOfRecords(store));
        expect((await indexedIds(store)).sort(), `round ${round}`).toEqual(
          (await collect(store.ids())).sort(),
        );
        // Between rounds every session is written again, so the next clear has some to race.
        await Promise.all(
          ids.map((id, i) => store.set(id, owned(`w${round}`, owners[i % 2] as string))),
        );
      }
    });
  }, 60_000);
});

describe('LevelStore: scans after writes not yet finished', () => {
  it('count, ids and ownedBy see a set called before them, and a delete', async () => {
    await withStore(async (store) => {
      const id = generateSessionId();
      const setting = store.set(id, owned('a', 'ada'));
      const counted = store.count();
      const owners = store.ownedBy('ada');
      const listed = collect(store.ids());
      expect(await setting).toBe(true);
      expect(await counted).toBe(1);
      expect((await owners).map((session) => session.id)).toEqual([id]);
      expect(await listed).toEqual([id]);

      const deleting = store.delete(id);
      const [count, owners_, ids] = [store.count(), store.ownedBy('ada'), collect(store.ids())];
      expect(await deleting).toBe(true);
      expect(await count).toBe(0);
      expect(await owners_).toEqual([]);
      expect(await ids).toEqual([]);
    });
  });

  it('sweep removes a session a touch called before it moved into the past', async () => {
    await withStore(async (store) => {
      const id = generateSessionId();
      await store.set(id, record('a'));
      const touching = store.touch(id, Date.now() - 1);
      const swept = store.sweep();
      expect(await touching).toBe(true);
      expect(await swept).toEqual({ removed: 1, scanned: 1, done: true });
      // Only the store's format key is left.
      const keys = await store.db.keys().all();
      expect(keys.map((key) => Buffer.from(key).toString('latin1'))).toEqual(['mformat']);
    });
  });

  it('scans wait for every id with a write in flight, a conditional set and a many-id clear included', async () => {
    await withStore(async (store) => {
      const ids = Array.from({ length: 20 }, () => generateSessionId());
      await Promise.all(ids.slice(10).map((id) => store.set(id, owned('old', 'bob'))));
      const writes = [
        ...ids.slice(0, 10).map((id) => store.set(id, owned('new', 'ada'), { only: 'absent' })),
        ...ids.slice(10, 15).map((id) => store.delete(id)),
        ...ids.slice(15).map((id) => store.set(id, owned('moved', 'ada'))),
      ];
      const [count, ada, bob, listed] = [
        store.count(),
        store.ownedBy('ada'),
        store.ownedBy('bob'),
        collect(store.ids()),
      ];
      await Promise.all(writes);
      const live = [...ids.slice(0, 10), ...ids.slice(15)].sort();
      expect(await count).toBe(15);
      expect((await ada).map((session) => session.id).sort()).toEqual(live);
      expect(await bob).toEqual([]);
      expect((await listed).sort()).toEqual(live);

      const clearing = store.clear();
      const [afterClear, idsAfterClear, got] = [
        store.count(),
        collect(store.ids()),
        store.get(ids[0] as string),
      ];
      await clearing;
      expect(await afterClear).toBe(0);
      expect(await idsAfterClear).toEqual([]);
      expect(await got).toBeUndefined();
    });
  });

  it('a listing left unfinished holds up no write called after it, on a new id or a listed one', async () => {
    await withStore(async (store) => {
      const [listed, fresh] = [generateSessionId(), generateSessionId()];
      const setting = store.set(listed, record('a'));
      const iterator = store.ids()[Symbol.asyncIterator]();
      const first = iterator.next();
      await setting;
      expect(await first).toEqual({ done: false, value: listed });
      // The listing is never finished here: writes after it must not wait for it.
      expect(await store.set(fresh, record('b'))).toBe(true);
      expect(await store.set(listed, record('c'))).toBe(true);
      expect(await store.delete(listed)).toBe(true);
      expect(await store.count()).toBe(1);
      await iterator.return?.();
    });
  });

  it('writes called after a sweep that waits for earlier ones run, and the sweep finishes', async () => {
    await withStore(async (store) => {
      const ids = Array.from({ length: 8 }, () => generateSessionId());
      await Promise.all(ids.map((id) => store.set(id, record('a'))));
      const past = ids.map((id) => store.touch(id, Date.now() - 1));
      const swept = store.sweep();
      // Renewed after the sweep was called: the sweep's batch holds these ids after them.
      const renewed = ids.slice(0, 4).map((id) => store.set(id, record('renewed')));
      expect(await Promise.all(past)).toEqual(ids.map(() => true));
      expect(await Promise.all(renewed)).toEqual(ids.slice(0, 4).map(() => true));
      expect((await swept).done).toBe(true);
      expect((await collect(store.ids())).sort()).toEqual(ids.slice(0, 4).sort());
    });
  });

  it('through SessionManager, sessionsOf called after a revoke no longer lists the session, with a save in flight before both', async () => {
    await withStore(async (store) => {
      const manager = new SessionManager<{ user?: string }>({ store, cleanup: manual() });
      try {
        const session = await manager.open(undefined);
        await session.regenerate();
        session.data.user = 'alice';
        await session.setOwner('alice');
        await session.commit();
        expect((await manager.sessionsOf('alice')).map((listed) => listed.id)).toEqual([
          session.id,
        ]);
        // A request's save still in flight, as when an admin revokes a session in use.
        const request = await manager.open(session.id);
        request.data.user = 'alice again';
        const saving = request.commit();
        const revoking = manager.revoke(session.id);
        const listed = manager.sessionsOf('alice');
        expect(await saving).toBe('saved');
        expect(await revoking).toBe(true);
        expect(await listed).toEqual([]);
      } finally {
        await manager.close();
      }
    });
  });
});

describe('LevelStore: the directory deleted while the store is open', () => {
  /** Rejects with ERR_STORE_IO whose message names `path` and which keeps a cause. */
  async function expectDeleted(promise: Promise<unknown>, path: string): Promise<void> {
    const error = await rejection(promise);
    expect(isSessionError(error), String(error)).toBe(true);
    expect(error).toMatchObject({ code: 'ERR_STORE_IO' });
    expect((error as Error).message).toContain(path);
    expect((error as Error).cause).toBeDefined();
  }

  it('set, touch, delete and sweep reject naming the directory; nothing is written; close resolves', async () => {
    const path = freshPath();
    const store = await LevelStore.open({ path });
    const known = generateSessionId();
    await store.set(known, record('before'));
    rmSync(path, { recursive: true, force: true });

    const fresh = generateSessionId();
    await expectDeleted(store.set(fresh, record('after')), path);
    await expectDeleted(store.set(known, record('after'), { only: 'present' }), path);
    await expectDeleted(store.touch(known, Date.now() + 2 * HOUR_MS), path);
    await expectDeleted(store.delete(known), path);
    await expectDeleted(store.sweep({ now: Date.now() + 2 * HOUR_MS }), path);
    await expectDeleted(store.clear(), path);
    // Reads answer from what LevelDB holds open, and show none of the refused writes.
    expect(text(await store.get(known))).toBe('before');
    expect(await store.get(fresh)).toBeUndefined();
    await store.close();
  });

  it('with the directory renamed, writes go on and are found at the new path', async () => {
    const path = freshPath();
    const store = await LevelStore.open({ path });
    const id = generateSessionId();
    const moved = `${path}-moved`;
    renameSync(path, moved);
    await store.set(id, record('after'));
    await store.close();
    const reopened = await LevelStore.open({ path: moved });
    try {
      expect(text(await reopened.get(id))).toBe('after');
    } finally {
      await reopened.close();
    }
  });
});

describe('LevelStore: closed', () => {
  it('repairIndex rejects with ERR_STORE_CLOSED after close()', async () => {
    const store = await LevelStore.open({ path: freshPath() });
    await store.close();
    expect(isSessionError(await rejection(store.repairIndex()), 'ERR_STORE_CLOSED')).toBe(true);
  });

  it('close() stops a repairIndex in flight at its next batch, which resolves with what it did', async () => {
    const path = freshPath();
    const store = await LevelStore.open({ path });
    const ids = Array.from({ length: 3_000 }, () => generateSessionId());
    await Promise.all(ids.map((id) => store.set(id, record('x'))));
    const repairing = store.repairIndex();
    await store.close();
    const stopped = await repairing;
    expect(stopped.scanned).toBeLessThan(ids.length);
    const again = await LevelStore.open({ path });
    try {
      expect(await again.repairIndex()).toEqual({ scanned: ids.length, repaired: 0, removed: 0 });
    } finally {
      await again.close();
    }
  });
});

describe('LevelStore: every asynchronous API rejects, never throws', () => {
  type Expected = typeof TypeError | SessionErrorCode;

  /**
   * Calls `call` from a plain (non-async) function, as a caller without try/catch around the
   * call would, and resolves to what its promise rejected with.
   */
  function rejectionOf(label: string, call: () => unknown): Promise<unknown> {
    let returned: unknown;
    try {
      returned = call();
    } catch (error) {
      throw new Error(`${label} threw synchronously instead of returning a rejected promise`, {
        cause: error,
      });
    }
    expect(returned, label).toBeInstanceOf(Promise);
    return (returned as Promise<unknown>).then(
      () => {
        throw new Error(`${label} resolved instead of rejecting`);
      },
      (error: unknown) => error,
    );
  }

  async function expectAllReject(cases: [string, () => unknown, Expected][]): Promise<void> {
    const outcomes = await Promise.all(cases.map(([label, call]) => rejectionOf(label, call)));
    for (const [i, [label, , expected]] of cases.entries()) {
      const error = outcomes[i];
      if (typeof expected === 'string') {
        expect(isSessionError(error, expected), `${label}: ${String(error)}`).toBe(true);
      } else {
        expect(error, label).toBeInstanceOf(expected);
      }
    }
  }

  it('LevelStore.open with bad or unknown options', async () => {
    const db = new ClassicLevel(freshPath());
    const file = join(root, `plain-file-${++dirs}`);
    writeFileSync(file, 'plain file');
    const open = (options: unknown) => () => LevelStore.open(options as never);
    try {
      await expectAllReject([
        ['no options', open(undefined), TypeError],
        ['null options', open(null), TypeError],
        ['a string for options', open('./sessions'), TypeError],
        ['a number for options', open(42), TypeError],
        ['neither path nor db', open({}), TypeError],
        ['both path and db', open({ path: freshPath(), db }), TypeError],
        ['a number for path', open({ path: 42 }), TypeError],
        ['an empty path', open({ path: '' }), TypeError],
        ['null for db', open({ db: null }), TypeError],
        ['a plain object for db', open({ db: {} }), TypeError],
        ['a number for sublevel', open({ db, sublevel: 42 }), TypeError],
        ['an empty sublevel', open({ db, sublevel: '' }), TypeError],
        ["a sublevel with '!'", open({ db, sublevel: 'a!b' }), TypeError],
        ['maxRecordBytes 0', open({ path: freshPath(), maxRecordBytes: 0 }), TypeError],
        ['maxRecordBytes as a string', open({ path: freshPath(), maxRecordBytes: '1' }), TypeError],
        ['syncReads as a string', open({ path: freshPath(), syncReads: 'yes' }), TypeError],
        ['an unknown option', open({ path: freshPath(), syncRead: true }), TypeError],
        ['an unknown option with db', open({ db, sublevels: 'x' }), TypeError],
        ['a path that is a regular file', open({ path: file }), 'ERR_STORE_IO'],
      ]);
    } finally {
      await db.close();
    }
  });

  it('every method with bad arguments, and after close()', async () => {
    const store = await LevelStore.open({ path: freshPath(), maxRecordBytes: 8 });
    const id = generateSessionId();
    const data = new Uint8Array(4);
    const later = Date.now() + HOUR_MS;
    const bad = store as unknown as Record<string, (...args: unknown[]) => unknown>;
    const call =
      (method: string, ...args: unknown[]) =>
      () =>
        bad[method]?.(...args);
    try {
      await expectAllReject([
        ['get without an id', call('get'), 'ERR_INVALID_SESSION_ID'],
        ['get with a number', call('get', 42), 'ERR_INVALID_SESSION_ID'],
        ['get with a short id', call('get', 'abc'), 'ERR_INVALID_SESSION_ID'],
        [
          'set with a bad id',
          call('set', 'a b', { data, expiresAt: later }),
          'ERR_INVALID_SESSION_ID',
        ],
        ['set without a record', call('set', id), TypeError],
        ['set with null', call('set', id, null), TypeError],
        ['set with string data', call('set', id, { data: 'x', expiresAt: later }), TypeError],
        ['set with NaN expiresAt', call('set', id, { data, expiresAt: Number.NaN }), TypeError],
        [
          'set with a bad only',
          call('set', id, { data, expiresAt: later }, { only: 'sometimes' }),
          TypeError,
        ],
        [
          'set with too much data',
          call('set', id, { data: new Uint8Array(9), expiresAt: later }),
          'ERR_RECORD_TOO_LARGE',
        ],
        ['touch with a bad id', call('touch', {}, later), 'ERR_INVALID_SESSION_ID'],
        ['touch without expiresAt', call('touch', id), TypeError],
        ['touch with a string', call('touch', id, 'soon'), TypeError],
        ['touch with Infinity', call('touch', id, Number.POSITIVE_INFINITY), TypeError],
        ['delete with a bad id', call('delete', null), 'ERR_INVALID_SESSION_ID'],
        ['sweep with null', call('sweep', null), TypeError],
        ['sweep with a string now', call('sweep', { now: 'now' }), TypeError],
        ['sweep with limit 0', call('sweep', { limit: 0 }), TypeError],
        ['sweep with a negative budget', call('sweep', { budgetMs: -1 }), TypeError],
        ['sweep with a bad signal', call('sweep', { signal: {} }), TypeError],
        ['repairIndex with null', call('repairIndex', null), TypeError],
        ['repairIndex with a number', call('repairIndex', 42), TypeError],
        ['repairIndex with a bad signal', call('repairIndex', { signal: 'stop' }), TypeError],
        [
          'repairIndex with a misspelt signal',
          call('repairIndex', { signl: AbortSignal.abort() }),
          TypeError,
        ],
      ]);
    } finally {
      await store.close();
    }
    const ids = () => store.ids()[Symbol.asyncIterator]().next();
    await expectAllReject([
      ['get after close', call('get', id), 'ERR_STORE_CLOSED'],
      ['set after close', call('set', id, { data, expiresAt: later }), 'ERR_STORE_CLOSED'],
      ['touch after close', call('touch', id, later), 'ERR_STORE_CLOSED'],
      ['delete after close', call('delete', id), 'ERR_STORE_CLOSED'],
      ['sweep after close', call('sweep'), 'ERR_STORE_CLOSED'],
      ['count after close', call('count'), 'ERR_STORE_CLOSED'],
      ['clear after close', call('clear'), 'ERR_STORE_CLOSED'],
      ['repairIndex after close', call('repairIndex'), 'ERR_STORE_CLOSED'],
      ['ids after close', ids, 'ERR_STORE_CLOSED'],
    ]);
  });
});

describe('LevelStore: a full disk', () => {
  const mounts: string[] = [];
  afterAll(() => {
    for (const dir of mounts.splice(0)) unmountSmallFilesystem(dir);
  });

  /** Mounts a tmpfs of `size` on a new directory. The test fails with the reason when that is refused. */
  function smallFilesystem(size: string): string {
    const dir = mountSmallFilesystem(size);
    mounts.push(dir);
    return dir;
  }

  /** Writes a file into `dir` until at most `leave` bytes are free there; returns its path. */
  function fill(dir: string, leave = 0): string {
    const file = join(dir, 'filler');
    const { bavail, bsize } = statfsSync(dir);
    let left = bavail * bsize - leave;
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    const fd = openSync(file, 'w');
    try {
      while (left > 0) left -= writeSync(fd, chunk, 0, Math.min(chunk.length, left));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
    } finally {
      closeSync(fd);
    }
    return file;
  }

  /** Sets records until one fails; resolves to that error. */
  async function writeUntilFailure(
    write: (id: string, i: number) => Promise<void>,
    failed: Set<string>,
  ): Promise<unknown> {
    for (let i = 0; i < 20_000; i++) {
      const id = generateSessionId();
      try {
        await write(id, i);
      } catch (error) {
        failed.add(id);
        return error;
      }
    }
    throw new Error('the disk never filled up');
  }

  function expectNoSpaceError(error: unknown, path: string): void {
    expect(isSessionError(error, 'ERR_STORE_IO'), String(error)).toBe(true);
    const { message, cause } = error as Error;
    expect(message).toContain(path);
    expect(message).toMatch(/No space left on device/);
    expect(cause).toMatchObject({ code: 'LEVEL_IO_ERROR' });
  }

  /**
   * Reopens the directory and checks that every acknowledged write is there as written, that
   * nothing else is (but a write that failed, intact), and that each record has one index entry.
   */
  async function expectIntact(
    path: string,
    acknowledged: Map<string, string>,
    failed: Set<string>,
  ): Promise<void> {
    const store = await LevelStore.open({ path });
    try {
      for (const [id, value] of acknowledged) expect(text(await store.get(id))).toBe(value);
      const present = await collect(store.ids());
      for (const id of present) expect(acknowledged.has(id) || failed.has(id)).toBe(true);
      expect(present.length).toBeGreaterThanOrEqual(acknowledged.size);
      expect(await store.count()).toBe(present.length);
      expect((await indexedIds(store)).sort()).toEqual([...present].sort());
      expect(await store.repairIndex()).toEqual({
        scanned: present.length,
        repaired: 0,
        removed: 0,
      });
    } finally {
      await store.close();
    }
  }

  it('after ENOSPC reads go on, and once space is freed writes work again without reopening the store, losing nothing', async () => {
    const dir = smallFilesystem('4m');
    const path = join(dir, 'db');
    const acknowledged = new Map<string, string>();
    const failed = new Set<string>();
    const store = await LevelStore.open({ path });
    const write = async (id: string, value: string, expiresAt?: number) => {
      await store.set(id, record(value, expiresAt));
      acknowledged.set(id, value);
    };
    try {
      for (let i = 0; i < 50; i++) await write(generateSessionId(), `earlier ${i}`);
      const filler = fill(dir);

      const error = await writeUntilFailure(
        (id, i) => write(id, `while full ${i} ${'x'.repeat(400)}`),
        failed,
      );
      expectNoSpaceError(error, path);
      // Every write keeps failing cleanly while the disk is full...
      const [first, second] = acknowledged.keys();
      if (first === undefined || second === undefined) throw new Error('fewer than two writes');
      const more = generateSessionId();
      failed.add(more);
      const attempts = await Promise.all(
        [
          store.set(more, record('more')),
          store.touch(first, Date.now() + 2 * HOUR_MS),
          store.delete(second),
          store.clear(),
        ].map(rejection),
      );
      for (const attempt of attempts) expectNoSpaceError(attempt, path);
      // ...and every earlier session stays readable.
      for (const [id, value] of acknowledged) expect(text(await store.get(id))).toBe(value);
      expect(await store.count()).toBe(acknowledged.size);
      expect((await collect(store.ids())).sort()).toEqual([...acknowledged.keys()].sort());

      rmSync(filler);
      // Writes, reads and scans made at once: the first write reopens the database underneath,
      // the rest wait for it or fail cleanly, and none hangs.
      const fresh = Array.from({ length: 40 }, () => generateSessionId());
      const earlier = [...acknowledged].slice(0, 20);
      const [writes, reads, scans] = await Promise.all([
        Promise.allSettled(fresh.map((id, i) => write(id, `after ${i}`))),
        Promise.allSettled(earlier.map(([id]) => store.get(id))),
        Promise.allSettled([store.count(), store.sweep({ now: 0 }), collect(store.ids())]),
      ]);
      expect(writes.every((outcome) => outcome.status === 'fulfilled')).toBe(true);
      for (const [i, outcome] of reads.entries()) {
        expect(outcome.status).toBe('fulfilled');
        if (outcome.status === 'fulfilled') expect(text(outcome.value)).toBe(earlier[i]?.[1]);
      }
      for (const outcome of scans) {
        if (outcome.status === 'rejected') {
          expect(isSessionError(outcome.reason, 'ERR_STORE_IO'), String(outcome.reason)).toBe(true);
        }
      }

      // The store works as before: touch, delete, and a sweep that finds what is due.
      expect(await store.touch(first, Date.now() + 2 * HOUR_MS)).toBe(true);
      expect(await store.delete(second)).toBe(true);
      acknowledged.delete(second);
      const start = Date.now();
      const due = generateSessionId();
      await store.set(due, record('due', start + 60_000));
      expect(await store.sweep({ now: start + 120_000 })).toEqual({
        removed: 1,
        scanned: 1,
        done: true,
      });
      expect(await store.count()).toBe(acknowledged.size);
    } finally {
      await store.close();
    }
    await expectIntact(path, acknowledged, failed);
  }, 60_000);

  it('when the reopen itself fails, every operation rejects cleanly and a later one reopens', async () => {
    const dir = smallFilesystem('4m');
    const path = join(dir, 'db');
    const moved = join(dir, 'moved');
    const acknowledged = new Map<string, string>();
    const failed = new Set<string>();
    const store = await LevelStore.open({ path });
    const write = acknowledgingWrites(store, acknowledged);
    try {
      for (let i = 0; i < 20; i++) await write(generateSessionId(), `earlier ${i}`);
      const filler = fill(dir);
      expectNoSpaceError(await writeUntilFailure((id, i) => write(id, `full ${i}`), failed), path);
      rmSync(filler);
      // The directory is gone when the store reopens it: the reopen fails, and the store
      // neither hangs nor creates an empty database in its place.
      renameSync(path, moved);
      const [first] = acknowledged.keys();
      if (first === undefined) throw new Error('no write was acknowledged');
      // The write closes the database to reopen it and cannot open it again; reads made after
      // that fail too, each trying the reopen again.
      const attempts = [await rejection(store.set(generateSessionId(), record('lost')))];
      attempts.push(await rejection(store.get(first)), await rejection(store.count()));
      for (const error of attempts) {
        expect(isSessionError(error, 'ERR_STORE_IO'), String(error)).toBe(true);
        expect((error as Error).message).toMatch(/reopening the database failed/);
        expect((error as Error).message).toContain(path);
      }
      // LevelDB leaves a LOCK and a LOG in the directory it looked for, but no database.
      expect(existsSync(join(path, 'CURRENT'))).toBe(false);
      rmSync(path, { recursive: true });
      // Back in place: the next operation reopens it.
      renameSync(moved, path);
      expect(text(await store.get(first))).toBe(acknowledged.get(first));
      await write(generateSessionId(), 'after');
      expect(await store.count()).toBe(acknowledged.size);
    } finally {
      await store.close();
    }
    await expectIntact(path, acknowledged, failed);
  }, 60_000);

  it('a reopen that fails keeps its own failure as the cause, not the write error before it', async () => {
    const dir = smallFilesystem('4m');
    const path = join(dir, 'db');
    const moved = join(dir, 'moved');
    const acknowledged = new Map<string, string>();
    const failed = new Set<string>();
    const store = await LevelStore.open({ path });
    const write = acknowledgingWrites(store, acknowledged);
    let holder: ClassicLevel | undefined;
    /** The reopen's failure, deepest cause first in `why`, with the ENOSPC still in the message. */
    const expectReopenFailure = (error: unknown, why: RegExp) => {
      expect(isSessionError(error, 'ERR_STORE_IO'), String(error)).toBe(true);
      const { message, cause } = error as Error;
      expect(message).toContain(path);
      expect(message).toMatch(/No space left on device.*reopening the database failed/);
      expect(cause).toMatchObject({ code: 'LEVEL_DATABASE_NOT_OPEN' });
      expect(deepestMessage(cause)).toMatch(why);
    };
    try {
      for (let i = 0; i < 20; i++) await write(generateSessionId(), `earlier ${i}`);
      const filler = fill(dir);
      expectNoSpaceError(await writeUntilFailure((id, i) => write(id, `full ${i}`), failed), path);
      rmSync(filler);
      const [first] = acknowledged.keys();
      if (first === undefined) throw new Error('no write was acknowledged');
      // Gone when the store reopens it.
      renameSync(path, moved);
      const missing = await rejection(store.set(generateSessionId(), record('lost')));
      expectReopenFailure(missing, /does not exist \(create_if_missing is false\)/);
      rmSync(path, { recursive: true });
      renameSync(moved, path);
      // Back in place, but another database holds it: the next reopen fails on its lock.
      holder = new ClassicLevel(path);
      await holder.open();
      const held = await rejection(store.get(first));
      expectReopenFailure(held, /LOCK/);
      expect((held as Error).cause).toMatchObject({ cause: { code: 'LEVEL_LOCKED' } });
      await holder.close();
      holder = undefined;
      expect(text(await store.get(first))).toBe(acknowledged.get(first));
      await write(generateSessionId(), 'after');
    } finally {
      await holder?.close();
      await store.close();
    }
    await expectIntact(path, acknowledged, failed);
  }, 60_000);

  it('a scan that the reopen cuts short rejects with ERR_STORE_IO, and a new one sees everything', async () => {
    const dir = smallFilesystem('4m');
    const path = join(dir, 'db');
    const store = await LevelStore.open({ path });
    try {
      const ids = Array.from({ length: 600 }, () => generateSessionId());
      await Promise.all(ids.map((id) => store.set(id, record('x'))));
      const filler = fill(dir);
      await writeUntilFailure(async (id) => {
        await store.set(id, record('full'));
        ids.push(id);
      }, new Set());

      // Started while the database is damaged: the first batch of ids comes from it.
      const scan = store.ids()[Symbol.asyncIterator]();
      expect((await scan.next()).done).toBe(false);
      rmSync(filler);
      const later = generateSessionId();
      await store.set(later, record('after'));
      // The reopen closed the scan's iterator.
      let error: unknown;
      try {
        for (let step = await scan.next(); !step.done; step = await scan.next());
      } catch (caught) {
        error = caught;
      }
      expect(isSessionError(error, 'ERR_STORE_IO'), String(error)).toBe(true);
      expect((error as Error).message).toContain(
        `ids on ${path} was interrupted: the store reopened`,
      );
      expect((await collect(store.ids())).sort()).toEqual([...ids, later].sort());
    } finally {
      await store.close();
    }
  }, 60_000);

  it('a store opened with a relative path recovers in its own directory after the process changed directory', async () => {
    const dir = smallFilesystem('4m');
    const path = join(dir, 'db');
    const elsewhere = freshPath();
    mkdirSync(elsewhere);
    const origin = process.cwd();
    const acknowledged = new Map<string, string>();
    const failed = new Set<string>();
    process.chdir(dir);
    try {
      const store = await LevelStore.open({ path: 'db' });
      // As a daemon does once started: the relative path now names another directory.
      process.chdir(elsewhere);
      const write = acknowledgingWrites(store, acknowledged);
      try {
        for (let i = 0; i < 20; i++) await write(generateSessionId(), `earlier ${i}`);
        const filler = fill(dir);
        expectNoSpaceError(
          await writeUntilFailure((id, i) => write(id, `full ${i}`), failed),
          path,
        );
        rmSync(filler);
        // The reopen finds the database where the store opened it.
        await write(generateSessionId(), 'after');
        expect(await store.count()).toBe(acknowledged.size);
      } finally {
        await store.close();
      }
    } finally {
      process.chdir(origin);
    }
    expect(existsSync(join(elsewhere, 'db'))).toBe(false);
    await expectIntact(path, acknowledged, failed);
  }, 60_000);

  it("after LevelDB's sticky background error (a table it could not write), writes work again once space is freed", async () => {
    const dir = smallFilesystem('16m');
    const path = join(dir, 'db');
    const acknowledged = new Map<string, string>();
    const failed = new Set<string>();
    const store = await LevelStore.open({ path });
    const write = acknowledgingWrites(store, acknowledged);
    try {
      for (let i = 0; i < 20; i++) await write(generateSessionId(), `earlier ${i}`);
      // Room for LevelDB's 4 MiB write buffer in the log, but not for the table it becomes.
      const filler = fill(dir, 6 * 1024 * 1024);
      const error = await writeUntilFailure(
        (id) => write(id, randomBytes(3000).toString('base64')),
        failed,
      );
      expectNoSpaceError(error, path);
      for (const [id, value] of acknowledged) expect(text(await store.get(id))).toBe(value);

      rmSync(filler);
      for (let i = 0; i < 40; i++) await write(generateSessionId(), `after ${i}`);
      expect(await store.count()).toBe(acknowledged.size);
    } finally {
      await store.close();
    }
    await expectIntact(path, acknowledged, failed);
  }, 60_000);
});
