import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { rename } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mountSmallFilesystem, unmountSmallFilesystem } from '@sessile/conformance';
import { generateSessionId, manual, SessionManager } from '@sessile/core';
import { assertDuration, HostGuards } from '@sessile/core/store';
import {
  FileStore,
  type FileStoreOptions,
  FORMAT_VERSION,
  HEADER_BYTES,
  SHARD_LENGTH,
} from '@sessile/file';
import { afterEach, describe, expect, it } from 'vitest';
// Internals of the sweep, from the build the package's entry point also loads.
import { FileLocks } from '../dist/file-locks.js';
import { syncFileSystem } from '../dist/fs.js';
import { MIN_STEP_ENTRIES, RecordFiles, uniqueSuffix } from '../dist/record-files.js';
import type { RecordFilesSettings, SweepStepRequest } from '../dist/sweep-protocol.js';
import { WorkerSweeper } from '../dist/sweeper.js';
import { codeOf, HOUR_MS, recordOf, testDirectories, textOf } from './helpers.js';

const { root, stores, children, freshPath } = testDirectories('sessile-file-store-');

async function openStore(options: Partial<FileStoreOptions> = {}): Promise<FileStore> {
  const store = await FileStore.open({ path: freshPath(), ...options });
  stores.push(store);
  return store;
}

async function reopen(
  store: FileStore,
  options: Partial<FileStoreOptions> = {},
): Promise<FileStore> {
  await store.close();
  const again = await FileStore.open({ path: store.path, ...options });
  stores.push(again);
  return again;
}

function fileOf(store: FileStore, id: string): string {
  return join(store.path, id.slice(0, SHARD_LENGTH), id);
}

/** Ids that all land in one shard, so a test can plant things in that shard first. */
function idsInShard(shard: string, count: number): string[] {
  return Array.from({ length: count }, () => shard + generateSessionId().slice(shard.length));
}

function filesIn(directory: string): string[] {
  return existsSync(directory) ? readdirSync(directory) : [];
}

interface ChildMessage {
  type: string;
  removed?: number;
  writes?: number;
  message?: string;
  touched?: string[];
}

function spawn(
  script: string,
  args: string[],
): { child: ChildProcess; next(type: string): Promise<ChildMessage> } {
  const child = fork(fileURLToPath(new URL(`./fixtures/${script}`, import.meta.url)), args, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.push(child);
  const messages: ChildMessage[] = [];
  const waiters: Array<() => void> = [];
  child.on('message', (message: ChildMessage) => {
    messages.push(message);
    for (const wake of waiters.splice(0)) wake();
  });
  child.on('exit', () => {
    for (const wake of waiters.splice(0)) wake();
  });
  return {
    child,
    async next(type) {
      for (;;) {
        const error = messages.find((message) => message.type === 'error');
        if (error !== undefined) throw new Error(`child failed: ${error.message}`);
        const found = messages.find((message) => message.type === type);
        if (found !== undefined) return found;
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(`child exited before sending ${type}`);
        }
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    },
  };
}

/** Threads started with `worker_threads` that are alive in this process now. */
function workerThreads(): number {
  return (process.report.getReport() as { workers: unknown[] }).workers.length;
}

/** Polls `condition` until it holds; fails after `attempts` polls 50 ms apart. */
async function until(condition: () => boolean, attempts = 400): Promise<void> {
  for (let attempt = 0; !condition(); attempt++) {
    if (attempt >= attempts) throw new Error('the condition never held');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** What the sweep worker is given for the store at `path` (a local disk: mtimes exact). */
function sweepSettings(path: string): RecordFilesSettings {
  return {
    path,
    mtimeExact: true,
    caseSensitive: true,
    statIsEnough: true,
    sweepMode: 'fast',
    graceMs: 60_000,
    maxOpenFiles: 32,
    fileMode: 0o600,
    directoryMode: 0o700,
    fsync: false,
  };
}

/** The record rules of the store at `path` on this thread, as its sweep worker builds them. */
function recordFilesOf(path: string): RecordFiles {
  const guards = new HostGuards({
    directory: join(path, '.guards'),
    staleMs: 5000,
    fileMode: 0o600,
    directoryMode: 0o700,
    fs: syncFileSystem,
    asideName: (file: string) => `${file}.${uniqueSuffix()}.tmp`,
  });
  return new RecordFiles(sweepSettings(path), syncFileSystem, guards);
}

/** The store's `FileLocks`, whose `tryLease` the sweep takes its lease with. */
function fileLocksOf(store: FileStore): FileLocks {
  if (!(store.locks instanceof FileLocks))
    throw new TypeError('expected the store to lock with FileLocks');
  return store.locks;
}

/** The first step of a pass over `shards`, with no budget. */
function firstStep(shards: string[], size: number): SweepStepRequest {
  return {
    shards,
    after: { shard: '', name: '' },
    size,
    now: Date.now(),
    deadline: Number.POSITIVE_INFINITY,
    busy: [],
  };
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

describe('open', () => {
  it('rejects bad options with a TypeError before creating anything', async () => {
    const path = freshPath();
    const bad: Array<Partial<FileStoreOptions>> = [
      { path: '' },
      { path, sweepMode: 'thorough' as 'fast' },
      { path, io: 'threads' as 'sync' },
      { path, graceMs: -1 },
      { path, maxOpenFiles: 0 },
      { path, maxOpenFiles: 2 ** 32 },
      { path, guardStaleMs: '5000' as never },
      { path, fileMode: Number.NaN },
      { path, renameFile: 'rename' as never },
      { path, maxRecordBytes: 0 },
      { path, reuseAfterMs: -1 },
      { path, reuseFiles: 'yes' as never },
      { path, durability: true as never },
      { path, durability: 'fsync' as never },
    ];
    for (const options of bad) {
      await expect(FileStore.open(options as FileStoreOptions)).rejects.toBeInstanceOf(TypeError);
    }
    expect(existsSync(path)).toBe(false);
  });

  it('refuses a path with a NUL character with a TypeError naming the option', async () => {
    const path = freshPath();
    const error = await FileStore.open({ path: `${path}\0x` }).catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(/^options\.path must not contain a NUL character/);
    expect(existsSync(path)).toBe(false);
  });

  it('refuses a fileMode or directoryMode beyond the permission bits with a TypeError, before creating anything', async () => {
    const path = freshPath();
    for (const options of [
      { path, fileMode: 2 ** 32 },
      { path, fileMode: 0o10000 },
      { path, directoryMode: 2 ** 32 },
      { path, directoryMode: 0o40700 },
    ]) {
      const error = await FileStore.open(options).catch((failure: unknown) => failure);
      expect(error).toBeInstanceOf(TypeError);
      expect((error as Error).message).toMatch(/^(fileMode|directoryMode) must be /);
    }
    expect(existsSync(path)).toBe(false);
  });

  it('refuses a fileMode without owner read and write, or a directoryMode without owner read, write and search, with a TypeError naming the option, before creating anything', async () => {
    const path = freshPath();
    for (const [options, message] of [
      [{ path, fileMode: 0o400 }, 'fileMode must let the owner read and write (0o600), got 0o400'],
      [{ path, fileMode: 0o200 }, 'fileMode must let the owner read and write (0o600), got 0o200'],
      [{ path, fileMode: 0 }, 'fileMode must let the owner read and write (0o600), got 0o0'],
      [
        { path, directoryMode: 0o644 },
        'directoryMode must let the owner read, write and search (0o700), got 0o644',
      ],
      [
        { path, directoryMode: 0o500 },
        'directoryMode must let the owner read, write and search (0o700), got 0o500',
      ],
    ] as const) {
      for (const method of ['open', 'probe'] as const) {
        const error = await FileStore[method](options).catch((failure: unknown) => failure);
        expect(error).toBeInstanceOf(TypeError);
        expect((error as Error).message).toBe(message);
      }
    }
    expect(existsSync(path)).toBe(false);
    // Modes that keep those bits open a store whose records read back.
    const store = await openStore({ fileMode: 0o640, directoryMode: 0o750 });
    const id = generateSessionId();
    await store.set(id, recordOf('kept'));
    expect(textOf(await store.get(id))).toBe('kept');
  });

  it('refuses a directory holding files that is not a file store, and leaves them alone', async () => {
    const path = freshPath();
    mkdirSync(join(path, 'a'), { recursive: true });
    writeFileSync(join(path, 'a', 'notes.txt'), 'mine');
    utimesSync(join(path, 'a', 'notes.txt'), 0, 0);
    const error = await FileStore.open({ path }).catch((failure: unknown) => failure);
    expect(error).toMatchObject({
      code: 'ERR_STORE_IO',
      message: `Cannot open the file store: ${path} holds other files (a) and is not a file store (no .guards directory); pass a new or empty directory`,
    });
    expect(readdirSync(path).sort()).toEqual(['a']);
    expect(readFileSync(join(path, 'a', 'notes.txt'), 'utf8')).toBe('mine');

    // An empty directory becomes a store, and a store's directory opens again.
    const empty = freshPath();
    mkdirSync(empty);
    const store = await FileStore.open({ path: empty });
    await store.set(generateSessionId(), recordOf('kept'));
    await store.close();
    const again = await FileStore.open({ path: empty });
    expect(await again.count()).toBe(1);
    await again.close();
  });

  it('opens the root of a new ext4 filesystem, which holds only lost+found, and leaves that alone', async () => {
    const path = freshPath();
    mkdirSync(join(path, 'lost+found'), { recursive: true });
    const store = await FileStore.open({ path });
    await store.set(generateSessionId(), recordOf('kept'));
    expect(await store.sweep({ now: Date.now() + 2 * HOUR_MS })).toMatchObject({ removed: 1 });
    await store.close();
    expect(existsSync(join(path, 'lost+found'))).toBe(true);
  });

  it('several opens of one new or empty directory at once all succeed (cluster workers starting together)', async () => {
    for (let round = 0; round < 10; round++) {
      const path = freshPath();
      if (round % 2 === 1) mkdirSync(path);
      const opened = await Promise.allSettled(
        Array.from({ length: 4 }, () => FileStore.open({ path })),
      );
      for (const result of opened) if (result.status === 'fulfilled') await result.value.close();
      expect(opened.filter((result) => result.status === 'rejected')).toEqual([]);
    }
  });

  it("refuses a bad duration with core's message for durations, whichever bound it misses", async () => {
    const path = freshPath();
    const durations: Array<[keyof FileStoreOptions, unknown, { zero?: boolean }]> = [
      ['graceMs', -1, {}],
      ['graceMs', '60000', {}],
      ['reuseAfterMs', -1, {}],
      ['reuseAfterMs', Number.NaN, {}],
      ['guardStaleMs', -1, {}],
      ['guardStaleMs', Number.POSITIVE_INFINITY, {}],
      ['sweepLeaseMs', -1, { zero: false }],
      ['sweepLeaseMs', 0, { zero: false }],
      ['sweepLeaseMs', 2 ** 31, { zero: false }],
    ];
    for (const [name, value, rule] of durations) {
      let expected = '';
      try {
        assertDuration(value, name, rule);
      } catch (error) {
        expected = (error as Error).message;
      }
      expect(expected).toMatch(new RegExp(`^${name} must be a number of milliseconds`));
      await expect(FileStore.open({ path, [name]: value })).rejects.toThrow(
        new TypeError(expected),
      );
    }
    expect(existsSync(path)).toBe(false);
  });

  it('refuses an unknown option, naming it and the option probably meant, before creating anything', async () => {
    const path = freshPath();
    await expect(FileStore.open({ path, graceMS: 1000 } as FileStoreOptions)).rejects.toThrow(
      new TypeError("FileStore.open: unknown option 'graceMS'; did you mean 'graceMs'?"),
    );
    expect(existsSync(path)).toBe(false);
  });

  it('refuses an fsync option, naming durability instead', async () => {
    const path = freshPath();
    await expect(FileStore.open({ path, fsync: true } as FileStoreOptions)).rejects.toThrow(
      new TypeError(
        "FileStore.open: unknown option 'fsync'; did you mean 'durability' ('full' fsyncs every write)?",
      ),
    );
    expect(existsSync(path)).toBe(false);
  });

  it('probe checks options as open does, and its errors name probe', async () => {
    const path = freshPath();
    for (const [options, message] of [
      [
        { path, graceMS: 1000 },
        "FileStore.probe: unknown option 'graceMS'; did you mean 'graceMs'?",
      ],
      [
        { path, fsync: true },
        "FileStore.probe: unknown option 'fsync'; did you mean 'durability' ('full' fsyncs every write)?",
      ],
      [null, 'FileStore.probe needs an options object with a path'],
      [
        { path, durability: 'fast' },
        "durability must be 'normal' or 'full', got 'fast' (a string)",
      ],
    ] as const) {
      await expect(FileStore.probe(options as never)).rejects.toThrow(new TypeError(message));
    }
    // open's own errors still name open.
    await expect(FileStore.open({ path, graceMS: 1000 } as FileStoreOptions)).rejects.toThrow(
      new TypeError("FileStore.open: unknown option 'graceMS'; did you mean 'graceMs'?"),
    );
    expect(existsSync(path)).toBe(false);
  });

  it('rejects a path that is a file with ERR_STORE_IO', async () => {
    const path = freshPath();
    writeFileSync(path, 'not a directory');
    expect(await codeOf(FileStore.open({ path }))).toBe('ERR_STORE_IO');
    await expect(FileStore.open({ path })).rejects.toThrow(
      `Cannot open the file store: ${path} is not a directory`,
    );
  });
});

describe('on-disk layout', () => {
  /** A fresh store holding one record of `text`, live for an hour. */
  async function storeWithRecord(text: string) {
    const store = await openStore();
    const id = generateSessionId();
    const expiresAt = Date.now() + HOUR_MS;
    await store.set(id, recordOf(text, expiresAt));
    return { store, id, expiresAt, file: fileOf(store, id) };
  }

  it('writes <path>/<shard>/<id> with a versioned header, mode 0600 in 0700 directories, mtime = expiresAt', async () => {
    const { store, id, expiresAt, file } = await storeWithRecord('hello');
    const bytes = readFileSync(file);
    expect(bytes.subarray(0, 4).toString('latin1')).toBe('SESF');
    expect(bytes[4]).toBe(FORMAT_VERSION);
    expect(bytes.readDoubleLE(8)).toBe(expiresAt);
    expect(bytes.subarray(HEADER_BYTES, HEADER_BYTES + id.length).toString('latin1')).toBe(id);
    expect(bytes.subarray(HEADER_BYTES + id.length).toString()).toBe('hello');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(store.path, id.slice(0, SHARD_LENGTH))).mode & 0o777).toBe(0o700);
    expect(statSync(store.path).mode & 0o777).toBe(0o700);
    expect(Math.round(statSync(file).mtimeMs)).toBe(expiresAt);
    // Nothing else is left in the shard: no temp file, no guard lockfile.
    expect(filesIn(join(store.path, id.slice(0, SHARD_LENGTH)))).toEqual([id]);
  });

  it('a read leaves the file untouched: no atime update, though the mtime (the expiry) is in the future', async () => {
    const { store, id, expiresAt, file } = await storeWithRecord('kept');
    const longAgo = new Date('2020-01-01T00:00:00Z');
    // relatime would update an atime older than the mtime on every read.
    utimesSync(file, longAgo, new Date(expiresAt));
    expect(textOf(await store.get(id))).toBe('kept');
    expect(statSync(file).atimeMs).toBe(longAgo.getTime());
  });

  it('creates shard directories only when a record needs one', async () => {
    const store = await openStore();
    await store.get(generateSessionId());
    await store.delete(generateSessionId());
    await store.touch(generateSessionId(), Date.now() + HOUR_MS);
    expect(filesIn(store.path).filter((name) => !name.startsWith('.'))).toEqual([]);
  });

  it('touch that extends moves only the mtime; one that shortens rewrites the header; get sees both exactly', async () => {
    const store = await openStore();
    const id = generateSessionId();
    const written = Date.now() + HOUR_MS;
    await store.set(id, recordOf('x', written));
    const file = fileOf(store, id);

    const extended = written + HOUR_MS;
    expect(await store.touch(id, extended)).toBe(true);
    expect(readFileSync(file).readDoubleLE(8)).toBe(written);
    expect(Math.round(statSync(file).mtimeMs)).toBe(extended);
    expect((await store.get(id))?.expiresAt).toBe(extended);

    const shortened = Date.now() + 60_000;
    expect(await store.touch(id, shortened)).toBe(true);
    expect(readFileSync(file).readDoubleLE(8)).toBe(shortened);
    expect((await store.get(id))?.expiresAt).toBe(shortened);

    const fractional = Date.now() + 90_000.25;
    expect(await store.touch(id, fractional)).toBe(true);
    expect((await store.get(id))?.expiresAt).toBe(fractional);
    expect(await store.count()).toBe(1);
  });

  it("writes with durability 'full' read back the same records", async () => {
    const store = await openStore({ durability: 'full' });
    const id = generateSessionId();
    expect(await store.set(id, recordOf('durable'), { only: 'absent' })).toBe(true);
    expect(await store.touch(id, Date.now() + 2 * HOUR_MS)).toBe(true);
    const again = await reopen(store, { durability: 'full' });
    expect(textOf(await again.get(id))).toBe('durable');
    expect(await again.delete(id)).toBe(true);
  });
});

describe("io 'sync': calls on the event loop", () => {
  it('calls waiting for a turn of the event loop start in the order they were made', async () => {
    const store = await openStore({ io: 'sync' });
    const [id, other] = [generateSessionId(), generateSessionId()];
    await store.set(id, recordOf('first'));
    // Calls on the event loop for longer than a turn allows: the next calls wait for one.
    const until = performance.now() + 5;
    while (performance.now() < until) {}
    const read = store.get(other);
    const earlier = store.set(id, recordOf('earlier'));
    await read;
    // Made after `earlier`, so written after it.
    await store.set(id, recordOf('later'));
    await earlier;
    expect(textOf(await store.get(id))).toBe('later');
  });

  it("a closed loop of awaited calls with io 'sync' still lets timers and I/O run in between", async () => {
    // Calls made on the event loop settle in microtasks: a bulk import, or a loop of locked
    // cycles, would otherwise hold every timer (a lock's keep-alive) and every request back.
    const store = await openStore({ io: 'sync' });
    const ids = Array.from({ length: 20 }, () => generateSessionId());
    for (const kind of ['set', 'get', 'touch', 'delete', 'lock'] as const) {
      let turns = 0;
      setImmediate(() => turns++);
      for (let i = 0; i < 400; i++) {
        const id = ids[i % ids.length] as string;
        if (kind === 'set') await store.set(id, recordOf(`value ${i}`));
        else if (kind === 'get') await store.get(id);
        else if (kind === 'touch') await store.touch(id, Date.now() + HOUR_MS + i);
        else if (kind === 'delete') await store.delete(id);
        else await (await store.locks.acquire(id)).release();
      }
      expect({ kind, turned: turns > 0 }).toEqual({ kind, turned: true });
    }
  });
});

describe('directory containment', () => {
  it('refuses a shard directory that is a symlink leading outside the store', async () => {
    const store = await openStore();
    const outside = mkdtempSync(join(root, 'outside-'));
    const [victim, other] = idsInShard('A', 2) as [string, string];
    // A valid record for `victim` sits outside; the planted link would lead reads to it.
    const elsewhere = await FileStore.open({ path: join(outside, 'elsewhere') });
    await elsewhere.set(victim, recordOf('outside secret'));
    await elsewhere.close();
    symlinkSync(join(outside, 'elsewhere', 'A'), join(store.path, 'A'));

    expect(await codeOf(store.get(victim))).toBe('ERR_STORE_IO');
    expect(await codeOf(store.set(other, recordOf('leak')))).toBe('ERR_STORE_IO');
    expect(await codeOf(store.touch(victim, Date.now() + 2 * HOUR_MS))).toBe('ERR_STORE_IO');
    expect(await codeOf(store.delete(victim))).toBe('ERR_STORE_IO');
    expect(filesIn(join(outside, 'elsewhere', 'A'))).toEqual([victim]);
    // Listing does not follow it either.
    expect(await store.count()).toBe(0);
  });

  it('never follows a record file that is a symlink: reads ignore it, writes replace the link, not the target', async () => {
    const store = await openStore({ graceMs: 0 });
    const outside = mkdtempSync(join(root, 'outside-'));
    const [planted, written] = idsInShard('C', 2) as [string, string];
    const elsewhere = await FileStore.open({ path: outside });
    await elsewhere.set(planted, recordOf('target', Date.now() + HOUR_MS));
    await elsewhere.close();
    const target = join(outside, 'C', planted);
    const targetBytes = readFileSync(target);
    const targetMtime = statSync(target).mtimeMs;

    await store.set(written, recordOf('real'));
    symlinkSync(target, fileOf(store, planted));
    expect(await store.get(planted)).toBeUndefined();
    expect(await store.touch(planted, Date.now() + 5 * HOUR_MS)).toBe(false);
    expect(statSync(target).mtimeMs).toBe(targetMtime);
    expect(await store.count()).toBe(1);

    expect(await store.set(planted, recordOf('mine'))).toBe(true);
    expect(lstatSync(fileOf(store, planted)).isSymbolicLink()).toBe(false);
    expect(textOf(await store.get(planted))).toBe('mine');
    expect(readFileSync(target)).toEqual(targetBytes);

    // A link planted again is removed by the sweep (after the grace period), its target kept.
    rmSync(fileOf(store, planted));
    symlinkSync(target, join(store.path, 'C', 'planted-link'));
    await store.sweep();
    expect(filesIn(join(store.path, 'C'))).toEqual([written]);
    expect(readFileSync(target)).toEqual(targetBytes);
  });

  it('resolves a store path given through a symlink to the real directory', async () => {
    const real = freshPath();
    mkdirSync(real);
    const alias = `${real}-alias`;
    symlinkSync(real, alias);
    const store = await FileStore.open({ path: alias });
    stores.push(store);
    expect(store.path).toBe(real);
    const id = generateSessionId();
    await store.set(id, recordOf('via alias'));
    expect(existsSync(join(real, id.slice(0, SHARD_LENGTH), id))).toBe(true);
  });
});

describe('rename retry', () => {
  it('retries a rename that fails with EPERM, EBUSY or EACCES, then writes', async () => {
    const failures = ['EPERM', 'EBUSY', 'EACCES'];
    let calls = 0;
    // Without reuse an update leaves no spare file beside the record.
    const store = await openStore({
      reuseFiles: false,
      renameFile: async (from, to) => {
        calls++;
        const code = failures.shift();
        if (code !== undefined)
          throw Object.assign(new Error(`${code}: simulated sharing violation`), { code });
        await rename(from, to);
      },
    });
    const id = generateSessionId();
    // A new id is linked into place; replacing it is the rename.
    await store.set(id, recordOf('first'));
    expect(calls).toBe(0);
    await store.set(id, recordOf('second'));
    expect(calls).toBe(4);
    expect(textOf(await store.get(id))).toBe('second');
    expect(filesIn(join(store.path, id.slice(0, SHARD_LENGTH)))).toEqual([id]);
  });

  it('gives up after a bounded number of attempts, keeps the old record and leaves no temp file', async () => {
    let failing = false;
    let calls = 0;
    const store = await openStore({
      renameFile: async (from, to) => {
        if (failing) {
          calls++;
          throw Object.assign(new Error('EBUSY: still locked'), { code: 'EBUSY' });
        }
        await rename(from, to);
      },
    });
    const id = generateSessionId();
    await store.set(id, recordOf('old'));
    failing = true;
    expect(await codeOf(store.set(id, recordOf('new')))).toBe('ERR_STORE_IO');
    expect(calls).toBe(10);
    expect(textOf(await store.get(id))).toBe('old');
    expect(filesIn(join(store.path, id.slice(0, SHARD_LENGTH)))).toEqual([id]);
  });

  it('does not retry other errors', async () => {
    let calls = 0;
    const store = await openStore({
      renameFile: async () => {
        calls++;
        throw Object.assign(new Error('EXDEV: cross-device link'), { code: 'EXDEV' });
      },
    });
    const id = generateSessionId();
    await store.set(id, recordOf('old'));
    expect(await codeOf(store.set(id, recordOf('new')))).toBe('ERR_STORE_IO');
    expect(calls).toBe(1);
    expect(textOf(await store.get(id))).toBe('old');
  });
});

describe('file reuse', () => {
  /** The names in a shard that are not records: spares, temp files, guards. */
  function nonRecords(store: FileStore, shard: string): string[] {
    return filesIn(join(store.path, shard)).filter((name) => name.includes('.'));
  }

  it('an update writes into the file a record of its shard left behind, and cuts it to size', async () => {
    const store = await openStore({ reuseAfterMs: 0 });
    const [first, second] = idsInShard('r', 2) as [string, string];
    await store.set(first, recordOf('one'.repeat(200)));
    await store.set(second, recordOf('two'));
    const replaced = lstatSync(fileOf(store, first)).ino;
    // The first record's file is kept aside, then receives the second record's next value.
    await store.set(first, recordOf('one again'));
    expect(nonRecords(store, 'r')).toHaveLength(1);
    await store.set(second, recordOf('two again'));
    expect(lstatSync(fileOf(store, second)).ino).toBe(replaced);
    expect(textOf(await store.get(first))).toBe('one again');
    expect(textOf(await store.get(second))).toBe('two again');
  });

  it('a deleted record is gone at once, and its file receives the next write of its shard', async () => {
    const store = await openStore({ reuseAfterMs: 0 });
    const [gone, next] = idsInShard('r', 2) as [string, string];
    await store.set(gone, recordOf('logged out'));
    const freed = lstatSync(fileOf(store, gone)).ino;
    expect(await store.delete(gone)).toBe(true);
    expect(await store.get(gone)).toBeUndefined();
    expect(await store.delete(gone)).toBe(false);
    expect(nonRecords(store, 'r')).toHaveLength(1);
    await store.set(next, recordOf('new'));
    expect(lstatSync(fileOf(store, next)).ino).toBe(freed);
    expect(textOf(await store.get(next))).toBe('new');
    expect(await store.get(gone)).toBeUndefined();
    expect(nonRecords(store, 'r')).toEqual([]);
  });

  it('a replaced file rests for reuseAfterMs before a write goes into it', async () => {
    // Under the 10 s a spare is kept at most, so the first file is kept but not yet reused.
    const store = await openStore({ reuseAfterMs: 5000 });
    const [first, second] = idsInShard('r', 2) as [string, string];
    await store.set(first, recordOf('one'));
    await store.set(second, recordOf('two'));
    const replaced = lstatSync(fileOf(store, first)).ino;
    await store.set(first, recordOf('one again'));
    await store.set(second, recordOf('two again'));
    expect(lstatSync(fileOf(store, second)).ino).not.toBe(replaced);
    expect(nonRecords(store, 'r')).toHaveLength(2);
  });

  it('close frees the kept files; reuseFiles: false keeps none', async () => {
    const store = await openStore();
    const [id] = idsInShard('r', 1) as [string];
    await store.set(id, recordOf('one'));
    await store.set(id, recordOf('two'));
    expect(nonRecords(store, 'r')).toHaveLength(1);
    const closed = await reopen(store, { reuseFiles: false });
    expect(nonRecords(closed, 'r')).toEqual([]);
    await closed.set(id, recordOf('three'));
    expect(nonRecords(closed, 'r')).toEqual([]);
    expect(textOf(await closed.get(id))).toBe('three');
  });

  for (const io of ['sync', 'async'] as const) {
    it(`reads stay whole and of the right record while another process rewrites them and reuses their files (io '${io}')`, async () => {
      // Both sides reuse files at once (reuseAfterMs 0), the worst case for a reader: a file it
      // opened can be rewritten for another id of the shard while it reads.
      const store = await openStore({ io, reuseAfterMs: 0 });
      const ids = idsInShard('q', 4);
      for (const id of ids) await store.set(id, recordOf(`${id}:0:`));
      const updater = spawn('updater.mjs', [store.path, ids.join(',')]);
      await updater.next('ready');
      const deadline = Date.now() + 1500;
      let reads = 0;
      const reader = async () => {
        while (Date.now() < deadline) {
          const id = ids[reads % ids.length] as string;
          reads++;
          const text = textOf(await store.get(id)) ?? '';
          const [name, length, filler] = text.split(':');
          expect(name).toBe(id);
          expect(filler).toHaveLength(Number(length));
        }
      };
      const writer = async () => {
        for (let n = 0; Date.now() < deadline; n++) {
          const id = ids[n % ids.length] as string;
          await store.set(id, recordOf(`${id}:${n % 50}:${'y'.repeat(n % 50)}`));
        }
      };
      await Promise.all([reader(), reader(), reader(), writer()]);
      updater.child.send('stop');
      expect((await updater.next('done')).writes).toBeGreaterThan(0);
      expect(reads).toBeGreaterThan(0);
    }, 30_000);
  }
});

describe('damaged and leftover files', () => {
  it('closes when its guards directory was replaced by a file by hand, freeing what it holds', async () => {
    const store = await FileStore.open({ path: freshPath() });
    await (await store.locks.acquire(generateSessionId())).release();
    const guards = join(store.path, '.guards');
    rmSync(guards, { recursive: true, force: true });
    writeFileSync(guards, 'not a directory');
    await expect(store.close()).resolves.toBeUndefined();
    expect(store.closed).toBe(true);
  });

  it.each(['sync', 'async'] as const)(
    'a store whose directory was emptied by hand while open goes on writing, locking and listing owners (io %s)',
    async (io) => {
      const store = await openStore({ io });
      const ids = Array.from({ length: 40 }, () => generateSessionId());
      for (const id of ids) await store.set(id, { ...recordOf('before'), owner: 'u1' });
      await (await store.locks.acquire(ids[0] as string)).release();
      // `rm -rf <path>/*`: how sessions are often cleared by hand, or by a tmp cleaner.
      for (const name of readdirSync(store.path)) {
        rmSync(join(store.path, name), { recursive: true, force: true });
      }

      for (const id of ids) expect(await store.get(id)).toBeUndefined();
      const [again, fresh, locked] = ids as [string, string, string];
      expect(await store.set(again, { ...recordOf('again'), owner: 'u1' })).toBe(true);
      expect(await store.set(fresh, recordOf('fresh'), { only: 'absent' })).toBe(true);
      expect(await store.delete(ids[3] as string)).toBe(false);
      expect(await store.touch(ids[4] as string, Date.now() + HOUR_MS)).toBe(false);
      const lock = await store.locks.acquire(locked);
      expect(await store.set(locked, recordOf('locked'), { lock })).toBe(true);
      await lock.release();
      expect(textOf(await store.get(again))).toBe('again');
      expect(textOf(await store.get(fresh))).toBe('fresh');
      expect(textOf(await store.get(locked))).toBe('locked');
      expect((await store.ownedBy('u1')).map((session) => session.id)).toEqual([again]);
      expect(await store.delete(again)).toBe(true);
      expect((await collectIds(store)).sort()).toEqual([fresh, locked].sort());
    },
  );

  it.each(['sync', 'async'] as const)(
    'a store whose directory was deleted while open stays deleted: its sweep rejects with ERR_STORE_IO and makes nothing (io %s)',
    async (io) => {
      const store = await openStore({ io });
      await store.set(generateSessionId(), recordOf('before'));
      rmSync(store.path, { recursive: true });
      expect(await codeOf(store.sweep())).toBe('ERR_STORE_IO');
      expect(await codeOf(store.set(generateSessionId(), recordOf('after')))).toBe('ERR_STORE_IO');
      expect(existsSync(store.path)).toBe(false);
    },
  );

  it('a truncated file rejects that id with ERR_CORRUPT_RECORD; conditional writes treat it as absent', async () => {
    const store = await openStore();
    const [damaged, healthy] = [generateSessionId(), generateSessionId()];
    await store.set(damaged, recordOf('x'.repeat(1000)));
    await store.set(healthy, recordOf('fine'));
    truncateSync(fileOf(store, damaged), HEADER_BYTES + 50);
    // Truncating sets the mtime to now, rounded to the millisecond it can land after a call's
    // `now`, and an mtime after `now` says live without the header. Damage is older than that.
    const damagedAt = new Date(Date.now() - 1000);
    utimesSync(fileOf(store, damaged), damagedAt, damagedAt);

    expect(await codeOf(store.get(damaged))).toBe('ERR_CORRUPT_RECORD');
    // Listed, so that a listing reports the damage instead of hiding it.
    expect([await store.count(), (await collectIds(store)).sort()]).toEqual([
      2,
      [damaged, healthy].sort(),
    ]);
    // A touch that shortens reads the header (one that extends moves only the mtime).
    expect(await codeOf(store.touch(damaged, Date.now() + 60_000))).toBe('ERR_CORRUPT_RECORD');
    expect(await store.set(damaged, recordOf('update'), { only: 'present' })).toBe(false);
    expect(textOf(await store.get(healthy))).toBe('fine');
    expect(await store.set(damaged, recordOf('created'), { only: 'absent' })).toBe(true);
    expect(textOf(await store.get(damaged))).toBe('created');
  });

  it('a directory in place of a record fails that write with ERR_STORE_IO whose message names the store, never the id', async () => {
    const store = await openStore();
    const [blocked, healthy] = [generateSessionId(), generateSessionId()];
    mkdirSync(fileOf(store, blocked), { recursive: true });
    let failed: unknown;
    await store.set(blocked, recordOf('x')).catch((error: unknown) => {
      failed = error;
    });
    expect(failed).toMatchObject({ code: 'ERR_STORE_IO' });
    const { message, cause } = failed as Error;
    expect(message).toContain(store.path);
    expect(message).not.toContain(blocked);
    // The cause, for whoever debugs it, keeps the paths, the id in them redacted (core's contract).
    expect(String((cause as Error).message)).toContain(store.path);
    expect(String((cause as Error).message)).not.toContain(blocked);
    expect(await store.set(healthy, recordOf('fine'))).toBe(true);
  });

  it.each(['sync', 'async'] as const)(
    "set with only: 'absent' replaces a record whose payload is damaged though its mtime says live (io %s)",
    async (io) => {
      const store = await openStore({ io });
      const [damaged, owned] = [generateSessionId(), generateSessionId()];
      await store.set(damaged, recordOf('hello world'));
      await store.set(owned, { ...recordOf('hello world'), owner: 'alice' });
      for (const id of [damaged, owned]) {
        // One flipped byte of the payload, the mtime (the expiry, an hour ahead) left as it was.
        const file = fileOf(store, id);
        const { atime, mtime } = statSync(file);
        const bytes = readFileSync(file);
        bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
        writeFileSync(file, bytes);
        utimesSync(file, atime, mtime);
        expect(await codeOf(store.get(id))).toBe('ERR_CORRUPT_RECORD');
      }
      expect(await store.set(damaged, recordOf('created'), { only: 'absent' })).toBe(true);
      expect(textOf(await store.get(damaged))).toBe('created');
      const created = { ...recordOf('created'), owner: 'alice' };
      expect(await store.set(owned, created, { only: 'absent' })).toBe(true);
      const listed = await store.ownedBy('alice');
      expect(listed.map(({ id, record }) => [id, textOf(record)])).toEqual([[owned, 'created']]);
      // A whole record stays.
      expect(await store.set(owned, recordOf('again'), { only: 'absent' })).toBe(false);
      expect(textOf(await store.get(owned))).toBe('created');
    },
  );

  it('a file from an unknown format version is reported as ERR_CORRUPT_RECORD, not misread', async () => {
    const store = await openStore();
    const id = generateSessionId();
    await store.set(id, recordOf('x'));
    const bytes = readFileSync(fileOf(store, id));
    bytes[4] = FORMAT_VERSION + 1;
    writeFileSync(fileOf(store, id), bytes);
    expect(await codeOf(store.get(id))).toBe('ERR_CORRUPT_RECORD');
  });

  it('a header naming the id in other letter case (one flipped bit) is ERR_CORRUPT_RECORD on a case-sensitive filesystem, not an absent session', async () => {
    const store = await openStore();
    const id = `case-${generateSessionId()}`;
    await store.set(id, recordOf('x'));
    const bytes = readFileSync(fileOf(store, id));
    const { atime, mtime } = statSync(fileOf(store, id));
    // The id follows the header; 'c' ^ 0x20 is 'C'.
    bytes[HEADER_BYTES] = (bytes[HEADER_BYTES] ?? 0) ^ 0x20;
    writeFileSync(fileOf(store, id), bytes);
    // A flipped bit leaves the mtime (the expiry) as it was. Rewriting sets it to now, which,
    // rounded, can land after the touch's `now` and say live without the header.
    utimesSync(fileOf(store, id), atime, mtime);
    expect(await codeOf(store.get(id))).toBe('ERR_CORRUPT_RECORD');
    // A touch that shortens reads the header (one that extends moves only the mtime).
    expect(await codeOf(store.touch(id, Date.now() + 60_000))).toBe('ERR_CORRUPT_RECORD');
    // A create may replace the damaged record, as with any other damage.
    expect(await store.set(id, recordOf('created'), { only: 'absent' })).toBe(true);
    expect(textOf(await store.get(id))).toBe('created');
  });

  it.each(['sync', 'async'] as const)(
    'reads ignore temp files and foreign files; sweep removes them only after the grace period (io %s)',
    async (io) => {
      let store = await openStore({ io });
      const [id, live] = idsInShard('E', 2) as [string, string];
      await store.set(live, recordOf('live'));
      const shard = join(store.path, 'E');
      writeFileSync(join(shard, `${id}.0123456789ab.tmp`), 'half a record');
      writeFileSync(join(shard, 'README.txt'), 'not a session');
      // A guard left by a writer that crashed: a file (its holder's inode) named `<id>.lock`.
      writeFileSync(join(shard, `${id}.lock`), '{"pid":4242}');

      expect(await store.get(id)).toBeUndefined();
      expect(await store.count()).toBe(1);
      expect(await collectIds(store)).toEqual([live]);

      // Just written, so within the default grace period: a writer may still be using them.
      await store.sweep();
      expect(filesIn(shard).sort()).toEqual(
        [`${id}.0123456789ab.tmp`, `${id}.lock`, 'README.txt', live].sort(),
      );

      // Past the grace period (0 here), leftovers go and records stay. The guard lockfile's
      // mtime is aged past its staleness, as one left by a crashed writer would be.
      const old = new Date(Date.now() - HOUR_MS);
      utimesSync(join(shard, `${id}.lock`), old, old);
      store = await reopen(store, { graceMs: 0, io });
      const result = await store.sweep();
      expect(result).toMatchObject({ removed: 0, done: true });
      expect(filesIn(shard)).toEqual([live]);
      expect(textOf(await store.get(live))).toBe('live');
      // The leftover guard did not block writes to that id meanwhile.
      expect(await store.set(id, recordOf('new'), { only: 'absent' })).toBe(true);
    },
  );
});

async function collectIds(store: FileStore): Promise<string[]> {
  const ids: string[] = [];
  for await (const id of store.ids()) ids.push(id);
  return ids.sort();
}

describe('sweep', () => {
  it.each(['sync', 'async'] as const)(
    'a fast sweep as of a time past 2038 keeps a record that expires later, whose mtime is capped (io %s)',
    async (io) => {
      const store = await openStore({ io });
      const now = 2_200_000_000_000; // 2039-09-18, past the mtime cap of 2038-01-19
      const later = generateSessionId();
      const earlier = generateSessionId();
      await store.set(later, recordOf('later', 3_000_000_000_000)); // 2065
      await store.set(earlier, recordOf('earlier', 2_100_000_000_000)); // 2036
      expect(await store.sweep({ now })).toMatchObject({ removed: 1, done: true });
      expect(textOf(await store.get(later))).toBe('later');
      expect(await store.get(earlier)).toBeUndefined();
    },
  );

  it.each(['sync', 'async'] as const)(
    'resumes from the cursor saved on disk, across store instances (io %s)',
    async (io) => {
      let store = await openStore({ io });
      const now = Date.now();
      for (let i = 0; i < 12; i++)
        await store.set(generateSessionId(), recordOf('live', now + 10 * HOUR_MS));

      const first = await store.sweep({ limit: 5 });
      expect(first).toEqual({ removed: 0, scanned: 5, done: false });
      store = await reopen(store, { io });
      const second = await store.sweep({ limit: 5 });
      expect(second).toEqual({ removed: 0, scanned: 5, done: false });
      store = await reopen(store, { io });
      // Only the last two entries were left: starting over would scan five again and not finish.
      const third = await store.sweep({ limit: 5 });
      expect(third).toEqual({ removed: 0, scanned: 2, done: true });
    },
  );

  it.each(['sync', 'async'] as const)(
    'removes expired records whose data is on disk and leaves nothing moved aside (io %s)',
    async (io) => {
      // With durability 'full' each record's data is on disk, so freeing it can wait for the device (ext4
      // with `discard` and no journal, as on the benchmark VM): the sweep then frees files
      // through the thread pool while it judges the next entries.
      const store = await openStore({ io, durability: 'full' });
      const expired = idsInShard('x', 40);
      const live = idsInShard('x', 5);
      for (const id of expired) await store.set(id, recordOf(id, Date.now() - 1000));
      for (const id of live) await store.set(id, recordOf(id));

      expect(await store.sweep()).toMatchObject({ removed: 40, done: true });
      expect(filesIn(join(store.path, 'x')).sort()).toEqual([...live].sort());
      for (const id of live) expect(textOf(await store.get(id))).toBe(id);
    },
  );

  it('a pass that left an expired record behind (a write in flight) does not report done', async () => {
    let gate: Promise<void> | undefined;
    let reached: () => void = () => {};
    const store = await openStore({
      renameFile: async (from, to) => {
        reached();
        await gate;
        await rename(from, to);
      },
    });
    const now = Date.now();
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const id = generateSessionId();
      ids.push(id);
      await store.set(id, recordOf('old', now + HOUR_MS));
    }
    // Hold a rewrite of one expired record just before its rename.
    const rewritten = ids[0] as string;
    let openGate: () => void = () => {};
    gate = new Promise((resolve) => (openGate = resolve));
    const atRename = new Promise<void>((resolve) => (reached = resolve));
    const pending = store.set(rewritten, recordOf('new', now + 10 * HOUR_MS));
    await atRename;

    const first = await store.sweep({ now: now + 2 * HOUR_MS });
    // Six records, plus the in-flight write's temp file, its guard lockfile and the spare link
    // it made to the file it replaces (see reuseFiles): all three kept, being fresh.
    expect(first).toEqual({ removed: 5, scanned: 9, done: false });
    openGate();
    expect(await pending).toBe(true);

    // The rewritten record and the spare (kept for reuse) are left.
    const second = await store.sweep({ now: now + 2 * HOUR_MS });
    expect(second).toEqual({ removed: 0, scanned: 2, done: true });
    expect(textOf(await store.get(rewritten))).toBe('new');
  });

  it.each(['sync', 'async'] as const)(
    'a pass resumed with a later now is done only when nothing it passed has expired by then (io %s)',
    async (io) => {
      const store = await openStore({ io });
      const now = Date.now();
      const [first] = idsInShard('A', 1) as [string];
      const [last] = idsInShard('z', 1) as [string];
      for (const id of [first, last]) await store.set(id, recordOf(id, now + 60_000));
      expect(await store.sweep({ now, limit: 1 })).toEqual({ removed: 0, scanned: 1, done: false });

      // Both have expired as of `later`; the pass already went past the first.
      const later = now + 120_000;
      const resumed = await store.sweep({ now: later });
      expect(resumed).toEqual({ removed: 1, scanned: 1, done: false });
      expect(filesIn(join(store.path, 'A'))).toEqual([first]);
      let done = false;
      for (let call = 0; call < 3 && !done; call++) done = (await store.sweep({ now: later })).done;
      expect(done).toBe(true);
      expect(await store.count()).toBe(0);
      expect(filesIn(join(store.path, 'A'))).toEqual([]);

      // Records live as of the later now do not hold a resumed pass back.
      for (const id of [first, last]) await store.set(id, recordOf(id, later + HOUR_MS));
      expect(await store.sweep({ now, limit: 1 })).toMatchObject({ scanned: 1, done: false });
      expect(await store.sweep({ now: later })).toEqual({ removed: 0, scanned: 1, done: true });
    },
  );

  it('a damaged cursor file only restarts the pass', async () => {
    const store = await openStore();
    await store.set(generateSessionId(), recordOf('live'));
    writeFileSync(join(store.path, '.sweep-cursor'), '{"shard": 4');
    expect(await store.sweep()).toEqual({ removed: 0, scanned: 1, done: true });
  });

  it('fast mode trusts the mtime; verify mode reads the header before removing', async () => {
    // Something other than the store (a backup restore, `touch -d`) moved an mtime back.
    let store = await openStore({ sweepMode: 'verify' });
    const id = generateSessionId();
    await store.set(id, recordOf('still live', Date.now() + HOUR_MS));
    const past = new Date(Date.now() - HOUR_MS);
    utimesSync(fileOf(store, id), past, past);
    expect(textOf(await store.get(id))).toBe('still live');
    expect(await store.count()).toBe(1);

    expect(await store.sweep()).toMatchObject({ removed: 0, done: true });
    expect(textOf(await store.get(id))).toBe('still live');

    store = await reopen(store, { sweepMode: 'fast' });
    expect(await store.sweep()).toMatchObject({ removed: 1, done: true });
    expect(await store.get(id)).toBeUndefined();
  });

  it("works under core's cleanup policy, which holds SWEEP_LOCK_ID around its sweep() calls", async () => {
    const store = await openStore();
    const now = Date.now();
    for (let i = 0; i < 10; i++) await store.set(generateSessionId(), recordOf('old', now + 500));
    await store.set(generateSessionId(), recordOf('live'));
    const manager = new SessionManager({ store, cleanup: manual() });
    await new Promise((resolve) => setTimeout(resolve, 600));
    const run = await manager.sweep();
    expect(run).toMatchObject({ outcome: 'swept', removed: 10, done: true });
    await manager.close();
    expect(await store.count()).toBe(1);
  });

  it('a sweep whose lease runs out while it waits to extend it resolves not done; later calls finish', async () => {
    const store = await openStore({ sweepLeaseMs: 3000 });
    const now = Date.now();
    for (let i = 0; i < 600; i++)
      await store.set(generateSessionId(), recordOf('old', now + HOUR_MS));
    // Another holder (as another process would) keeps the guard of the lease file, so an extend waits.
    const other = new HostGuards({
      directory: join(store.path, '.guards'),
      staleMs: 5000,
      fileMode: 0o600,
      directoryMode: 0o700,
      fs: syncFileSystem,
    });
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    // A first call starts the sweep worker, whose start alone can take most of a lease under load.
    let removed = (await store.sweep({ now: now + 2 * HOUR_MS, limit: 1 })).removed;
    const held = other.hold(join(store.path, '.sweep-lease'), () => gate);
    // Once the lease is taken, the event loop stalls for most of it (as on a loaded host), so
    // the first batch ends with less than half the lease left and the sweep extends it.
    const stall = () => {
      if (!existsSync(join(store.path, '.sweep-lease'))) return setImmediate(stall);
      const until = Date.now() + 1800;
      while (Date.now() < until);
      setTimeout(release, 2000);
    };
    setImmediate(stall);
    const first = await store.sweep({ now: now + 2 * HOUR_MS });
    expect(first.done).toBe(false);
    await held;
    await other.close();
    removed += first.removed;
    for (let calls = 0; ; calls++) {
      expect(calls).toBeLessThan(1000);
      const result = await store.sweep({ now: now + 2 * HOUR_MS });
      removed += result.removed;
      if (result.done) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(removed).toBe(600);
  }, 120_000);

  it('a sweep lease whose extend came too late is freed, so the next sweep can take it', async () => {
    const store = await openStore({ io: 'sync' });
    const file = join(store.path, '.sweep-lease');
    const locks = fileLocksOf(store);
    const lease = await locks.tryLease(file, 50);
    // Past the lease end before its timer can run (a stalled event loop): the extend fails.
    const until = Date.now() + 100;
    while (Date.now() < until);
    await expect(lease?.extend()).rejects.toMatchObject({ code: 'ERR_LOCK_LOST' });
    let next = await locks.tryLease(file, 5000);
    for (let tries = 0; next === undefined; tries++) {
      expect(tries).toBeLessThan(100);
      await new Promise((resolve) => setTimeout(resolve, 20));
      next = await locks.tryLease(file, 5000);
    }
    await next.release();
  });

  it('a second sweep in the same process while one runs does nothing', async () => {
    const store = await openStore();
    const now = Date.now();
    for (let i = 0; i < 40; i++)
      await store.set(generateSessionId(), recordOf('old', now + HOUR_MS));
    const [a, b] = await Promise.all([
      store.sweep({ now: now + 2 * HOUR_MS }),
      store.sweep({ now: now + 2 * HOUR_MS }),
    ]);
    expect([a.removed, b.removed].sort((x, y) => x - y)).toEqual([0, 40]);
    expect(await store.count()).toBe(0);
  });
});

describe('sweep: bounded calls, memory returned', () => {
  it.each(['sync', 'async'] as const)(
    'a call with budgetMs 0 examines one small batch, not a whole step; the calls after it finish the pass (io %s)',
    async (io) => {
      const store = await openStore({ io });
      for (let i = 0; i < 200; i++) await store.set(generateSessionId(), recordOf('live'));

      const first = await store.sweep({ budgetMs: 0, limit: 100_000 });
      expect(first.scanned).toBe(MIN_STEP_ENTRIES);
      expect(first.done).toBe(false);
      let scanned = first.scanned;
      for (let done = false; !done; ) {
        const next = await store.sweep({ budgetMs: 0, limit: 100_000 });
        expect(next.scanned).toBeLessThanOrEqual(MIN_STEP_ENTRIES);
        scanned += next.scanned;
        done = next.done;
      }
      expect(scanned).toBe(200);
    },
  );

  it('keeps the sorted names of the shard a pass is in between steps, and none once the pass ends', async () => {
    const store = await openStore();
    for (const id of [...idsInShard('a', 30), ...idsInShard('b', 30)]) {
      await store.set(id, recordOf('live'));
    }
    const files = recordFilesOf(store.path);
    let request = firstStep(['a', 'b'], 20);
    const kept: number[] = [];
    for (;;) {
      const step = await files.sweepStep(request);
      kept.push(files.keptNames);
      if (step.ended || step.last === undefined) break;
      request = { ...request, after: step.last };
    }
    // a[0..20), a[20..30) + b[0..10), b[10..30), then the step that finds the pass's end.
    expect(kept).toEqual([30, 30, 30, 0]);
  });

  it('a step told to stop ends before its next entry, and the next step resumes after its last', async () => {
    const store = await openStore();
    for (const id of idsInShard('a', 40)) await store.set(id, recordOf('live'));
    const files = recordFilesOf(store.path);
    let checks = 0;
    const stop = {
      get aborted() {
        return ++checks > 10;
      },
    };
    const stopped = await files.sweepStep(firstStep(['a'], 500), stop);
    expect(stopped.scanned).toBeGreaterThan(0);
    expect(stopped.scanned).toBeLessThan(10);
    expect(stopped.ended).toBe(false);
    if (stopped.last === undefined) throw new Error('a step that scanned entries names its last');
    const rest = await files.sweepStep({ ...firstStep(['a'], 500), after: stopped.last });
    expect(rest).toMatchObject({ scanned: 40 - stopped.scanned, ended: true });
  });

  it('a step on the sweep worker stops before its first entry when the sweep was aborted; the next step runs', async () => {
    const store = await openStore({ io: 'sync' });
    for (const id of idsInShard('a', 40)) await store.set(id, recordOf('live'));
    const sweeper = new WorkerSweeper({
      settings: sweepSettings(store.path),
      guardsDirectory: join(store.path, '.guards'),
      guardStaleMs: 5000,
      fileMode: 0o600,
      directoryMode: 0o700,
    });
    try {
      const aborted = await sweeper.sweepStep(firstStep(['a'], 500), AbortSignal.abort());
      expect(aborted).toMatchObject({ scanned: 0, ended: false });
      const next = await sweeper.sweepStep(firstStep(['a'], 500), new AbortController().signal);
      expect(next).toMatchObject({ scanned: 40, ended: true });
    } finally {
      await sweeper.close();
    }
  });

  it('the sweep worker exits once idle, so its memory goes back; the next sweep starts another', async () => {
    const store = await openStore({ io: 'sync' });
    await store.set(generateSessionId(), recordOf('live'));
    const before = workerThreads();
    expect(await store.sweep()).toMatchObject({ scanned: 1, done: true });
    expect(workerThreads()).toBe(before + 1);
    await until(() => workerThreads() === before);
    expect(await store.sweep()).toMatchObject({ scanned: 1, done: true });
  }, 30_000);
});

describe('locks', () => {
  it('close() ends an acquire that is waiting on another holder of the lease file', async () => {
    const holderStore = await openStore();
    const waiterStore = await FileStore.open({ path: holderStore.path });
    const id = generateSessionId();
    const held = await holderStore.locks.acquire(id, { leaseMs: 60_000 });
    const waiting = waiterStore.locks.acquire(id, { waitMs: 60_000 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    // Caught from now on: the close rejects it before it resolves itself.
    const waited = codeOf(waiting);
    await waiterStore.close();
    expect(await waited).toBe('ERR_STORE_CLOSED');
    await held.release();
  });

  it('a lock is a lease file holding the token, removed on release', async () => {
    const store = await openStore();
    const id = generateSessionId();
    const lock = await store.locks.acquire(id, { leaseMs: 60_000 });
    const leaseFile = join(store.path, '.locks', id.slice(0, SHARD_LENGTH), id);
    const lease = JSON.parse(readFileSync(leaseFile, 'utf8')) as Record<string, unknown>;
    expect(lease).toEqual({
      token: lock.token,
      expiresAt: lock.expiresAt,
      pid: process.pid,
      host: hostname().slice(0, 64),
    });
    expect(statSync(leaseFile).mode & 0o777).toBe(0o600);
    await lock.extend(120_000);
    expect(JSON.parse(readFileSync(leaseFile, 'utf8')).expiresAt).toBe(lock.expiresAt);
    await lock.release();
    expect(existsSync(leaseFile)).toBe(false);
  });

  it('takes over a lease whose holder left it behind (crashed) once it has ended', async () => {
    const store = await openStore();
    const id = generateSessionId();
    const leaseFile = join(store.path, '.locks', id.slice(0, SHARD_LENGTH), id);
    mkdirSync(join(leaseFile, '..'), { recursive: true });
    writeFileSync(leaseFile, JSON.stringify({ token: 'crashed', expiresAt: Date.now() + 300 }));
    expect(await codeOf(store.locks.acquire(id, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
    const lock = await store.locks.acquire(id, { waitMs: 30_000 });
    expect(JSON.parse(readFileSync(leaseFile, 'utf8')).token).toBe(lock.token);
    await lock.release();
    // A torn lease file (a crash mid-write) holds nothing.
    writeFileSync(leaseFile, '{"token": "torn", "expi');
    const again = await store.locks.acquire(id, { waitMs: 0 });
    await again.release();
  });

  it("a session lease's guard is its record's guard, a link to the store's holder file; one left by a process that died is taken over", async () => {
    const store = await openStore({ guardStaleMs: 2000 });
    const id = generateSessionId();
    const leaseFile = join(store.path, '.locks', id.slice(0, SHARD_LENGTH), id);
    const recordGuard = join(store.path, id.slice(0, SHARD_LENGTH), `${id}.lock`);
    mkdirSync(join(leaseFile, '..'), { recursive: true });
    mkdirSync(join(recordGuard, '..'), { recursive: true });
    // What a process killed while it took over an ended lease leaves: that lease, and its
    // holder file linked as the guard of the session's record, which every takeover needs.
    writeFileSync(leaseFile, JSON.stringify({ token: 'ended', expiresAt: Date.now() - 1000 }));
    const deadHolder = join(store.path, '.guards', '4242-deadbeefdeadbeef');
    mkdirSync(join(deadHolder, '..'), { recursive: true });
    writeFileSync(deadHolder, '{"pid":4242}');
    linkSync(deadHolder, recordGuard);
    const old = new Date(Date.now() - HOUR_MS);
    utimesSync(deadHolder, old, old);

    const lock = await store.locks.acquire(id, { waitMs: 30_000, leaseMs: 60_000 });
    expect(JSON.parse(readFileSync(leaseFile, 'utf8')).token).toBe(lock.token);
    await lock.release();
    expect(filesIn(join(leaseFile, '..'))).toEqual([]);
    expect(filesIn(join(recordGuard, '..'))).toEqual([]);
    // The guard the store took was its own holder's inode, and it let it go.
    expect(statSync(deadHolder).nlink).toBe(1);
  });
  for (const io of ['sync', 'async'] as const) {
    for (const removed of ['the lock directory', 'the one lease file'] as const) {
      it(`a fenced write well inside its lease is refused once ${removed} was removed by hand and another process locked the session (io '${io}')`, async () => {
        const store = await openStore({ io });
        const id = generateSessionId();
        await store.set(id, recordOf('before'));
        const lock = await store.locks.acquire(id, { leaseMs: 60_000 });
        const leaseFile = join(store.path, '.locks', id.slice(0, SHARD_LENGTH), id);
        // An operator clearing what looks like stuck locks.
        rmSync(removed === 'the lock directory' ? join(store.path, '.locks') : leaseFile, {
          recursive: true,
        });
        const other = spawn('lock-holder.mjs', [store.path, id, '60000']);
        await other.next('held');
        const othersToken = JSON.parse(readFileSync(leaseFile, 'utf8')).token;

        expect(await codeOf(store.set(id, recordOf('late'), { lock }))).toBe('ERR_LOCK_LOST');
        expect(await codeOf(store.touch(id, Date.now() + 2 * HOUR_MS, { lock }))).toBe(
          'ERR_LOCK_LOST',
        );
        expect(await codeOf(store.delete(id, { lock }))).toBe('ERR_LOCK_LOST');
        expect(textOf(await store.get(id))).toBe('before');
        expect(await codeOf(lock.release())).toBe('ERR_LOCK_LOST');
        // The other process's lease is left where it is.
        expect(JSON.parse(readFileSync(leaseFile, 'utf8')).token).toBe(othersToken);
      }, 30_000);
    }
  }
});

describe('write guards', () => {
  it("a guard is a hard link to the store instance's holder file, gone after the write; close removes the holder", async () => {
    let seen: { guardIno: number; holderInos: number[]; links: number } | undefined;
    const id = generateSessionId();
    const store = await openStore({
      reuseFiles: false,
      renameFile: async (from, to) => {
        const guard = lstatSync(`${to}.lock`);
        const guardsDirectory = join(to, '..', '..', '.guards');
        seen = {
          guardIno: guard.ino,
          // The instance's holder, not its lease holders (`<holder>.<n>`, made ahead of need).
          holderInos: readdirSync(guardsDirectory)
            .filter((name) => !name.includes('.'))
            .map((name) => lstatSync(join(guardsDirectory, name)).ino),
          links: guard.nlink,
        };
        await rename(from, to);
      },
    });
    await store.set(id, recordOf('first'));
    // Creating a new id needs no guard (link(2) refuses a taken name); replacing takes one.
    expect(seen).toBe(undefined);
    await store.set(id, recordOf('second'));
    expect(seen?.holderInos).toEqual([seen?.guardIno]);
    expect(seen?.links).toBe(2);
    expect(filesIn(join(store.path, id.slice(0, SHARD_LENGTH)))).toEqual([id]);
    await store.close();
    expect(filesIn(join(store.path, '.guards'))).toEqual([]);
  });

  it('a guard whose holder process is alive is never taken over, however long it is held', async () => {
    const store = await openStore({ guardStaleMs: 2000 });
    const id = generateSessionId();
    await store.set(id, recordOf('before'));
    const holder = spawn('guard-holder.mjs', [store.path, id]);
    await holder.next('holding');

    let settled = false;
    const waiting = store.set(id, recordOf('from the parent'), { only: 'present' }).finally(() => {
      settled = true;
    });
    // Well past guardStaleMs: a guard judged by its age alone would have been taken over by now.
    await new Promise((resolve) => setTimeout(resolve, 5000));
    expect(settled).toBe(false);

    holder.child.send('release');
    await holder.next('written');
    expect(await waiting).toBe(true);
    expect(textOf(await store.get(id))).toBe('from the parent');
  }, 60_000);

  it("close() ends a write's wait on a guard another live process holds: ERR_STORE_CLOSED, not the whole guard wait", async () => {
    const store = await openStore({ guardStaleMs: 2000 });
    const id = generateSessionId();
    await store.set(id, recordOf('before'));
    const holder = spawn('guard-holder.mjs', [store.path, id]);
    await holder.next('holding');
    try {
      const waiting = store.set(id, recordOf('from the parent'), { only: 'present' });
      const outcome = waiting.then(
        () => 'resolved',
        (error: unknown) => error,
      );
      // The holder keeps its guard until told below, so close() resolves while it holds.
      // Before close() was wired to the guards, the write waited out every guard wait (about
      // 11 s here), then rejected ERR_STORE_BUSY, and close() waited for it.
      await store.close();
      expect(await outcome).toMatchObject({ code: 'ERR_STORE_CLOSED' });
    } finally {
      holder.child.send('release');
      await holder.next('written');
    }
  }, 60_000);

  it('a guard left by a process that died is taken over, and the sweep removes its holder file', async () => {
    const store = await openStore({ guardStaleMs: 2000, graceMs: 0 });
    const id = generateSessionId();
    await store.set(id, recordOf('before'));
    // What a writer killed inside its guard leaves: its holder file, linked as the guard.
    const deadHolder = join(store.path, '.guards', '4242-deadbeefdeadbeef');
    mkdirSync(join(deadHolder, '..'), { recursive: true });
    writeFileSync(deadHolder, '{"pid":4242}');
    linkSync(deadHolder, `${fileOf(store, id)}.lock`);
    const old = new Date(Date.now() - HOUR_MS);
    utimesSync(deadHolder, old, old);

    expect(await store.set(id, recordOf('after'), { only: 'present' })).toBe(true);
    expect(textOf(await store.get(id))).toBe('after');
    expect(filesIn(join(store.path, id.slice(0, SHARD_LENGTH)))).toEqual([id]);
    expect(await store.delete(id)).toBe(true);

    await store.sweep();
    expect(filesIn(join(store.path, '.guards'))).not.toContain('4242-deadbeefdeadbeef');
  });
});

describe('across processes', () => {
  it('only one process sweeps at a time; a sweeper killed with SIGKILL blocks no longer than its lease', async () => {
    const store = await openStore();
    const now = Date.now();
    for (let i = 0; i < 20; i++)
      await store.set(generateSessionId(), recordOf('old', now + HOUR_MS));
    const holder = spawn('sweeper.mjs', [store.path, 'hold-sweep-lease', '1500']);
    await holder.next('held');

    expect(await store.sweep({ now: now + 2 * HOUR_MS })).toEqual({
      removed: 0,
      scanned: 0,
      done: false,
    });
    expect(await store.count()).toBe(20);

    holder.child.kill('SIGKILL');
    await exited(holder.child);
    let removed = 0;
    for (let calls = 0; ; calls++) {
      expect(calls).toBeLessThan(10_000);
      const result = await store.sweep({ now: now + 2 * HOUR_MS });
      removed += result.removed;
      if (result.done) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(removed).toBe(20);
  }, 120_000);

  it('three processes sweeping one store together remove every expired record exactly once', async () => {
    const store = await openStore();
    const now = Date.now();
    const live = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const id = generateSessionId();
      const isLive = i % 3 === 0;
      if (isLive) live.add(id);
      await store.set(id, recordOf('x', now + (isLive ? 10 : 1) * HOUR_MS));
    }
    const sweepers = Array.from({ length: 3 }, () =>
      spawn('sweeper.mjs', [store.path, 'sweep-until-done', String(now + 2 * HOUR_MS)]),
    );
    const reports = await Promise.all(sweepers.map((sweeper) => sweeper.next('done')));
    expect(reports.reduce((sum, report) => sum + (report.removed ?? 0), 0)).toBe(200);
    expect(new Set(await collectIds(store))).toEqual(live);
  }, 120_000);

  it("a process that sweeps (on the sweep worker, io 'sync') and never closes the store still exits", async () => {
    const store = await openStore();
    const now = Date.now();
    for (let i = 0; i < 40; i++) {
      await store.set(generateSessionId(), recordOf('x', now + (i % 4 === 0 ? 10 : 1) * HOUR_MS));
    }
    const sweeper = spawn('sweeper.mjs', [
      store.path,
      'sweep-and-leave',
      String(now + 2 * HOUR_MS),
    ]);
    expect((await sweeper.next('done')).removed).toBe(30);
    // The worker thread keeps the process alive only while a sweep waits on it.
    await exited(sweeper.child);
    expect(sweeper.child.exitCode).toBe(0);
    expect(await store.count()).toBe(10);
  }, 30_000);

  for (const io of ['sync', 'async'] as const) {
    it(`a record rewritten or touched by another process while the sweep removes it is never lost (io '${io}')`, async () => {
      const store = await openStore({ io });
      const now = Date.now();
      const ids = Array.from({ length: 1000 }, () => generateSessionId());
      await Promise.all(ids.map((id) => store.set(id, recordOf('old', now + HOUR_MS))));
      const sweepNow = now + 2 * HOUR_MS;
      const rewrittenExpiresAt = now + 10 * HOUR_MS;
      const rewriter = spawn('rewriter.mjs', [
        store.path,
        ids.join(','),
        String(rewrittenExpiresAt),
      ]);
      await rewriter.next('ready');
      let finished = false;
      const report = rewriter.next('done').finally(() => {
        finished = true;
      });
      // Sweeps as the other process writes: each old record is expired as of sweepNow.
      while (!finished) await store.sweep({ now: sweepNow, limit: 100 });
      const touched = new Set((await report).touched);
      while (!(await store.sweep({ now: sweepNow })).done);

      for (const [index, id] of ids.entries()) {
        const record = await store.get(id);
        if (index % 2 === 0) expect(textOf(record)).toBe('rewritten');
        else if (touched.has(id)) expect(record?.expiresAt).toBe(rewrittenExpiresAt);
        else expect(record).toBeUndefined();
      }
    }, 120_000);
  }

  it('a writer killed mid-write leaves the old record or the new one, never a torn one', async () => {
    const store = await openStore({ guardStaleMs: 2000, graceMs: 0 });
    const id = generateSessionId();
    await store.set(id, { data: new Uint8Array(100).fill(0), expiresAt: Date.now() + HOUR_MS });
    for (let round = 0; round < 5; round++) {
      const writer = spawn('writer.mjs', [store.path, id]);
      await writer.next('writing');
      await new Promise((resolve) => setTimeout(resolve, 20 + round * 37));
      writer.child.kill('SIGKILL');
      await exited(writer.child);

      const record = await store.get(id);
      expect(record).toBeDefined();
      const data = record?.data ?? new Uint8Array();
      const version = data[0] as number;
      // Every byte carries one version, and the length is the one that version wrote.
      expect(data.every((byte) => byte === version)).toBe(true);
      expect(data.length).toBe(200_000 + (version % 7) * 50_000);
    }
    // The parent can write again (a guard left by the kill is stale after guardStaleMs)...
    expect(await store.set(id, recordOf('after'))).toBe(true);
    expect(textOf(await store.get(id))).toBe('after');
    // ...and the sweep clears temp files the killed writers left.
    await store.sweep();
    expect(filesIn(join(store.path, id.slice(0, SHARD_LENGTH)))).toEqual([id]);
  }, 120_000);
});

describe('a full disk', () => {
  const mounts: string[] = [];
  const images: string[] = [];
  afterEach(() => {
    for (const dir of mounts.splice(0)) unmountSmallFilesystem(dir);
    for (const image of images.splice(0)) rmSync(image, { force: true });
  });

  /** A tmpfs of `size` (needs root): the test fails with the reason when mounting is refused. */
  function smallFilesystem(size: string): string {
    const dir = mountSmallFilesystem(size);
    mounts.push(dir);
    return dir;
  }

  /**
   * A small ext4 in a loop device (needs root, mkfs.ext4 and a free loop device), where a new
   * directory needs a block, so a full disk refuses it while files of no data can still be made.
   */
  function smallExt4(): string {
    const dir = mkdtempSync(join(tmpdir(), 'sessile-file-ext4-'));
    const image = `${dir}.img`;
    try {
      execFileSync('truncate', ['-s', '4M', image], { stdio: 'pipe' });
      execFileSync('mkfs.ext4', ['-q', '-F', image], { stdio: 'pipe' });
      execFileSync('mount', ['-o', 'loop', image, dir], { stdio: 'pipe' });
    } catch (error) {
      rmSync(dir, { recursive: true, force: true });
      rmSync(image, { force: true });
      const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim();
      throw new Error(`an ext4 loop mount on ${dir} was refused: ${stderr || error}`);
    }
    mounts.push(dir);
    images.push(image);
    return dir;
  }

  /** Writes a file as large as the space left on the filesystem of `dir` allows. */
  function fillUp(dir: string): void {
    try {
      execFileSync('dd', ['if=/dev/zero', `of=${join(dir, 'filler')}`, 'bs=1k'], { stdio: 'pipe' });
    } catch {
      // dd stops with ENOSPC, as meant.
    }
  }

  it('a store that has only created sessions deletes and touches them once the disk is full', async () => {
    const path = join(smallExt4(), 'sessions');
    const store = await FileStore.open({ path });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) {
        const id = generateSessionId();
        expect(await store.set(id, recordOf(`session ${i}`))).toBe(true);
        ids.push(id);
      }
      fillUp(path);
      expect(await codeOf(store.set(generateSessionId(), recordOf('x'.repeat(5000))))).toBe(
        'ERR_STORE_IO',
      );
      // Logging out takes a write guard, whose directory a full disk could no longer make.
      for (const id of ids.slice(0, 10)) {
        expect(await store.delete(id)).toBe(true);
        expect(await store.get(id)).toBeUndefined();
      }
      const expiresAt = Date.now() + HOUR_MS + 0.5;
      expect(await store.touch(ids[10] as string, expiresAt)).toBe(true);
      expect((await store.get(ids[10] as string))?.expiresAt).toBe(expiresAt);
    } finally {
      await store.close();
    }
  });

  it('a store that has only created sessions deletes them once the disk has no inode left', async () => {
    const dir = smallExt4();
    const path = join(dir, 'sessions');
    const store = await FileStore.open({ path });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const id = generateSessionId();
        expect(await store.set(id, recordOf(`session ${i}`))).toBe(true);
        ids.push(id);
      }
      for (let i = 0; ; i++) {
        try {
          writeFileSync(join(dir, `empty-${i}`), '', { flag: 'wx' });
        } catch (error) {
          expect((error as NodeJS.ErrnoException).code).toBe('ENOSPC');
          break;
        }
      }
      // A delete takes a write guard: a hard link of the holder file made when the store opened.
      for (const id of ids) {
        expect(await store.delete(id)).toBe(true);
        expect(await store.get(id)).toBeUndefined();
      }
    } finally {
      await store.close();
    }
  });

  it('a store opened on a full disk locks sessions: requests are served, a logout deletes, and another process holding a lock is waited for', async () => {
    const path = join(smallFilesystem('2m'), 'sessions');
    const filling = await FileStore.open({ path });
    const signup = new SessionManager<{ user?: number }>({ store: filling, cleanup: manual() });
    const ids: string[] = [];
    for (let user = 0; user < 3; user++) {
      const session = await signup.open(undefined);
      session.data.user = user;
      expect(await session.commit()).toBe('saved');
      ids.push(session.id);
    }
    await signup.close();
    await filling.close();
    fillUp(path);
    const [readOnly, loggedOut, contended] = ids as [string, string, string];

    // Another process, started on the full disk, holds one session's lock.
    const holder = spawn('lock-holder.mjs', [path, contended, '2000']);
    await holder.next('held');
    // No block for its record: a bare lease, whose end is its mtime.
    expect(statSync(join(path, '.locks', contended.slice(0, SHARD_LENGTH), contended)).size).toBe(
      0,
    );

    // The app restarts: every request locks its session first.
    const store = await FileStore.open({ path }).catch((error) => {
      holder.child.kill('SIGKILL');
      throw error;
    });
    const manager = new SessionManager<{ user?: number }>({ store, cleanup: manual() });
    try {
      const read = await manager.open(readOnly);
      expect(read.data.user).toBe(0);
      expect(await read.commit()).toBe('unchanged');
      const logout = await manager.open(loggedOut);
      expect(logout.isNew).toBe(false);
      await logout.invalidate();
      expect(await logout.commit()).toBe('destroyed');
      expect(await store.get(loggedOut)).toBeUndefined();

      expect(await codeOf(store.locks.acquire(contended, { waitMs: 200 }))).toBe(
        'ERR_LOCK_TIMEOUT',
      );
      // Killed, its bare lease names no process: it is waited out to its end.
      holder.child.kill('SIGKILL');
      const lock = await store.locks.acquire(contended, { waitMs: 30_000, leaseMs: 60_000 });
      expect(await store.delete(contended, { lock })).toBe(true);
      await lock.release();
    } finally {
      holder.child.kill('SIGKILL');
      await manager.close();
      await store.close();
    }
  });

  it('a store opens on a disk with no inode left, and its sweep frees some', async () => {
    const dir = mountSmallFilesystem('8m', { inodes: 200 });
    mounts.push(dir);
    const path = join(dir, 'sessions');
    const filling = await FileStore.open({ path });
    const expiresAt = Date.now() + 500;
    let stored = 0;
    for (;;) {
      const outcome = await codeOf(filling.set(generateSessionId(), recordOf('a', expiresAt)));
      if (outcome !== 'ok') {
        expect(outcome).toBe('ERR_STORE_IO');
        break;
      }
      stored++;
    }
    await filling.close();
    // Inodes the closed store freed (its holder files) go to other files.
    for (let i = 0; ; i++) {
      try {
        writeFileSync(join(dir, `other-${i}`), '');
      } catch {
        break;
      }
    }
    while (Date.now() <= expiresAt) await new Promise((resolve) => setTimeout(resolve, 50));

    // Opening probes the filesystem: it had no inode for its probe file.
    const sweeping = await FileStore.open({ path });
    try {
      expect(await sweeping.sweep({ budgetMs: 60_000 })).toMatchObject({
        removed: stored,
        done: true,
      });
      expect(await sweeping.set(generateSessionId(), recordOf('after'))).toBe(true);
    } finally {
      await sweeping.close();
    }
  });

  it('a store opened once the disk is full sweeps the expired sessions away, so writes work again', async () => {
    const path = join(smallFilesystem('2m'), 'sessions');
    const filling = await FileStore.open({ path });
    const expiresAt = Date.now() + 500;
    let stored = 0;
    for (;;) {
      const outcome = await codeOf(
        filling.set(generateSessionId(), { data: new Uint8Array(3000), expiresAt }),
      );
      if (outcome !== 'ok') {
        expect(outcome).toBe('ERR_STORE_IO');
        break;
      }
      stored++;
    }
    await filling.close();
    expect(stored).toBeGreaterThan(0);
    while (Date.now() <= expiresAt) await new Promise((resolve) => setTimeout(resolve, 50));

    // A fresh store, as a cron job's: it has no holder or lease file yet, and none can be written.
    const sweeping = await FileStore.open({ path });
    try {
      const swept = await sweeping.sweep({ budgetMs: 60_000 });
      expect(swept).toMatchObject({ removed: stored, done: true });
      expect(await sweeping.set(generateSessionId(), recordOf('after'))).toBe(true);
    } finally {
      // Closed here, before the file system is unmounted.
      await sweeping.close();
    }
  });
});

describe('FileStore: a shard directory the sweep may not list', () => {
  it.runIf(process.platform === 'linux')(
    'is skipped: the other shards are swept and the pass reports done: false, until its mode is put back (run as nobody when this process is root)',
    () => {
      const isRoot = process.getuid?.() === 0;
      // Traversable by nobody, who owns it.
      const parent = mkdtempSync(join(tmpdir(), 'sessile-file-shard-mode-'));
      try {
        chmodSync(parent, 0o755);
        if (isRoot) chownSync(parent, 65_534, 65_534);
        const script = fileURLToPath(new URL('./fixtures/unreadable-shard.mjs', import.meta.url));
        const stdout = execFileSync(process.execPath, [script, parent], {
          encoding: 'utf8',
          timeout: 60_000,
          killSignal: 'SIGKILL',
          ...(isRoot ? { uid: 65_534, gid: 65_534 } : {}),
        });
        const outcome = {
          sweeps: [
            { removed: 4, scanned: 4, done: false },
            { removed: 0, scanned: 0, done: false },
          ],
          after: { removed: 2, scanned: 2, done: true },
        };
        expect(JSON.parse(stdout)).toEqual({ sync: outcome, async: outcome });
      } finally {
        rmSync(parent, { recursive: true, force: true });
      }
    },
    90_000,
  );
});

describe('FileStore: a record the sweep must read but may not open', () => {
  it.runIf(process.platform === 'linux')(
    'is put back when only its header could prove it expired, and removed when only its owner was to be read; the sweep resolves (run as nobody when this process is root)',
    () => {
      const isRoot = process.getuid?.() === 0;
      const parent = mkdtempSync(join(tmpdir(), 'sessile-file-record-mode-'));
      try {
        chmodSync(parent, 0o755);
        if (isRoot) chownSync(parent, 65_534, 65_534);
        const script = fileURLToPath(
          new URL('./fixtures/unreadable-record-sweep.mjs', import.meta.url),
        );
        const stdout = execFileSync(process.execPath, [script, parent], {
          encoding: 'utf8',
          timeout: 60_000,
          killSignal: 'SIGKILL',
          ...(isRoot ? { uid: 65_534, gid: 65_534 } : {}),
        });
        expect(JSON.parse(stdout)).toEqual({
          // Its get rejects (ERR_STORE_IO), so the record is still there.
          verify: { sweep: { removed: 0, scanned: 1, done: false }, kept: 'ERR_STORE_IO' },
          owned: { sweep: { removed: 1, scanned: 1, done: true }, kept: false },
        });
      } finally {
        rmSync(parent, { recursive: true, force: true });
      }
    },
    60_000,
  );
});

describe('FileStore: close() during a sweep', () => {
  for (const io of ['sync', 'async'] as const) {
    it(`stops the sweep before its next entry, which resolves done: false, and the next store sweeps the rest (io: '${io}')`, async () => {
      const store = await openStore({ io });
      const expiresAt = Date.now() + 100;
      const ids = Array.from({ length: 1_500 }, () => generateSessionId());
      await Promise.all(ids.map((id) => store.set(id, recordOf('x', expiresAt))));
      await new Promise((resolve) => setTimeout(resolve, 150));
      const sweeping = store.sweep({ limit: Number.POSITIVE_INFINITY, budgetMs: 600_000 });
      await store.close();
      const stopped = await sweeping;
      expect(stopped.done).toBe(false);
      expect(stopped.removed).toBeLessThan(ids.length);
      const again = await FileStore.open({ path: store.path, io });
      stores.push(again);
      const rest = await again.sweep({ limit: Number.POSITIVE_INFINITY, budgetMs: 600_000 });
      expect(rest).toMatchObject({ removed: ids.length - stopped.removed, done: true });
    }, 60_000);
  }
});
