import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mountSmallFilesystem, unmountSmallFilesystem } from '@sessile/conformance';
import {
  generateSessionId,
  isSessionError,
  manual,
  type SessionError,
  SessionManager,
} from '@sessile/core';
import { afterEach, describe, expect, it } from 'vitest';
import {
  decodeHeader,
  FORMAT_VERSION,
  HEADER_REGION_BYTES,
  JOURNAL_HEAD_BYTES,
  JOURNAL_OFFSET,
} from '../src/format.js';
import { DbmStore, type DbmStoreOptions, type DbmSweepMode, sessionStripe } from '../src/index.js';
import { agreeOnStripes } from '../src/open-file.js';
import { applyOp, ID_POOL_SIZE, OWNERS, opAt, opOfPayload, poolId } from './fixtures/crash-ops.mjs';
import { openFilesIn, useTestPaths } from './helpers.js';

const HOUR_MS = 3_600_000;
const { newPath, children } = useTestPaths('test');

function payload(seed: number, size: number): Uint8Array {
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i++) data[i] = (seed * 131 + i) & 0xff;
  return data;
}

async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const all: string[] = [];
  for await (const id of iterable) all.push(id);
  return all;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'ok';
  } catch (error) {
    return isSessionError(error) ? (error as SessionError).code : String(error);
  }
}

/** The SessionError `promise` rejects with; fails the test when it resolves or throws anything else. */
async function sessionErrorOf(promise: Promise<unknown>): Promise<SessionError> {
  try {
    await promise;
  } catch (error) {
    if (isSessionError(error)) return error;
    throw error;
  }
  throw new Error('expected a rejection');
}

function fixture(name: string): string {
  return fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
}

function spawn(script: string, args: string[]): ChildProcess {
  const child = fork(fixture(script), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(child);
  return child;
}

function nextMessage(child: ChildProcess, type: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: { type: string }) => {
      if (message.type !== type) return;
      child.off('message', onMessage);
      resolve();
    };
    child.on('message', onMessage);
    child.once('exit', (code, signal) =>
      reject(new Error(`child exited early (${code ?? signal})`)),
    );
  });
}

/** Resolves once the child has exited and every message it sent has been delivered. */
function closed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => child.once('close', () => resolve()));
}

describe('DbmStore file format', () => {
  it('100,000 records survive close and reopen, each byte for byte', async () => {
    const path = newPath();
    const ids = Array.from({ length: 100_000 }, () => generateSessionId());
    const expiresAt = Date.now() + 10 * HOUR_MS;
    const store = await DbmStore.open({ path });
    for (let i = 0; i < ids.length; i += 500) {
      await Promise.all(
        ids
          .slice(i, i + 500)
          .map((id, k) => store.set(id, { data: payload(i + k, (i + k) % 700), expiresAt })),
      );
    }
    const grown = await store.info();
    await store.close();

    const reopened = await DbmStore.open({ path });
    try {
      expect(await reopened.info()).toEqual(grown);
      expect(grown.buckets).toBeGreaterThan(1000);
      expect(await reopened.count()).toBe(100_000);
      let mismatches = 0;
      for (let i = 0; i < ids.length; i++) {
        const record = await reopened.get(ids[i] as string);
        const expected = payload(i, i % 700);
        if (
          record?.expiresAt !== expiresAt ||
          !Buffer.from(record.data).equals(Buffer.from(expected))
        )
          mismatches++;
      }
      expect(mismatches).toBe(0);
      const listed = await collect(reopened.ids());
      expect(listed.length).toBe(100_000);
      expect(new Set(listed)).toEqual(new Set(ids));
    } finally {
      await reopened.close();
    }
  }, 600_000);

  it('ids() and count() see each record once while inserts split buckets under them', async () => {
    const store = await DbmStore.open({ path: newPath() });
    try {
      const expiresAt = Date.now() + HOUR_MS;
      const before = Array.from({ length: 6000 }, () => generateSessionId());
      for (const id of before) await store.set(id, { data: payload(1, 20), expiresAt });
      const bucketsBefore = (await store.info()).buckets;
      const listed: string[] = [];
      let inserted = false;
      for await (const id of store.ids()) {
        listed.push(id);
        if (!inserted) {
          inserted = true;
          for (let i = 0; i < 9000; i++) {
            await store.set(generateSessionId(), { data: payload(2, 20), expiresAt });
          }
        }
      }
      expect((await store.info()).buckets).toBeGreaterThan(2 * bucketsBefore);
      expect(new Set(listed).size).toBe(listed.length);
      const seen = new Set(listed);
      expect(before.filter((id) => !seen.has(id))).toEqual([]);
      expect(await store.count()).toBe(15_000);
    } finally {
      await store.close();
    }
  }, 120_000);

  it('freed space is reused: the file stops growing under steady churn', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path });
    const sizes: number[] = [];
    try {
      for (let round = 0; round < 12; round++) {
        const ids = Array.from({ length: 1000 }, () => generateSessionId());
        const expiresAt = Date.now() + HOUR_MS;
        // The same mix of sizes every round, including records too large to journal.
        const sizeOf = (k: number) => (k % 50 === 0 ? 60_000 + k : (k * 37) % 3000);
        for (let k = 0; k < ids.length; k++) {
          await store.set(ids[k] as string, { data: payload(k, sizeOf(k)), expiresAt });
        }
        for (let k = 0; k < ids.length; k++) {
          await store.set(ids[k] as string, { data: payload(k, sizeOf(k + 7)), expiresAt });
        }
        for (const id of ids) expect(await store.delete(id)).toBe(true);
        expect(await store.count()).toBe(0);
        // The allocated end: the file's length also depends on how full its last extent is.
        const { fileBytes } = await store.info();
        expect(statSync(path).size).toBeLessThanOrEqual(fileBytes);
        sizes.push(fileBytes);
      }
    } finally {
      await store.close();
    }
    expect(sizes[11]).toBe(sizes[3]);
  }, 300_000);

  it.each([
    ['text', Buffer.from('not a database, just some text that must not be overwritten')],
    // A disk image or a preallocated file: zeros where a dbm file has its header and journal.
    [
      'zeros, then text',
      Buffer.concat([Buffer.alloc(32 * 1024), Buffer.from('the payload after the zeros')]),
    ],
    [
      'zeros, then a page of text',
      Buffer.concat([Buffer.alloc(2 * 1024 * 1024), payload(3, 4096)]),
    ],
  ])(
    'a file that is not a dbm file (%s) is refused with ERR_STORE_IO naming it, left as it was, with nothing created beside it',
    async (_name, content) => {
      const path = newPath();
      writeFileSync(path, content);
      const error = await sessionErrorOf(DbmStore.open({ path }));
      expect(error.code).toBe('ERR_STORE_IO');
      expect(error.message).toContain(path);
      expect(error.message).toMatch(/not a sessile dbm file/);
      expect(readFileSync(path).equals(content)).toBe(true);
      expect(readdirSync(dirname(path))).toEqual(['sessions.dbm']);
    },
  );

  it.each([
    ['cut within its header', (bytes: Buffer) => bytes.subarray(0, 8)],
    ['cut just past its version', (bytes: Buffer) => bytes.subarray(0, 12)],
  ])('a file %s is damaged (ERR_STORE_IO), not of another version', async (_name, damage) => {
    const path = newPath();
    const store = await DbmStore.open({ path });
    await store.set(generateSessionId(), { data: payload(1, 10), expiresAt: Date.now() + HOUR_MS });
    await store.close();
    writeFileSync(path, damage(readFileSync(path)));
    const error = await sessionErrorOf(DbmStore.open({ path }));
    expect(error.code).toBe('ERR_STORE_IO');
    expect(error.message).toMatch(/is damaged: bad header checksum/);
  });

  it('a file of a newer format version is refused with ERR_UNSUPPORTED naming the path and both versions', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path });
    await store.set(generateSessionId(), { data: payload(1, 10), expiresAt: Date.now() + HOUR_MS });
    await store.close();
    const fd = openSync(path, 'r+');
    const version = Buffer.alloc(4);
    version.writeUInt32LE(FORMAT_VERSION + 1, 0);
    writeSync(fd, version, 0, 4, 8);
    closeSync(fd);
    const before = readFileSync(path);

    // Its lock directory exists: the file is judged under the global lock.
    const error = await sessionErrorOf(DbmStore.open({ path }));
    expect(error.code).toBe('ERR_UNSUPPORTED');
    expect(error.message).toContain(path);
    expect(error.message).toMatch(
      new RegExp(`format version ${FORMAT_VERSION + 1}\\b.*format version ${FORMAT_VERSION}\\b`),
    );

    // A copy without one is refused before anything is created beside it.
    const copy = join(dirname(newPath()), 'copy.dbm');
    copyFileSync(path, copy);
    const copyError = await sessionErrorOf(DbmStore.open({ path: copy }));
    expect(copyError.code).toBe('ERR_UNSUPPORTED');
    expect(copyError.message).toContain(copy);
    expect(readdirSync(dirname(copy))).toEqual(['copy.dbm']);
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it("with durability: 'full', records are written through and read back after reopening", async () => {
    const path = newPath();
    const id = generateSessionId();
    const store = await DbmStore.open({ path, durability: 'full' });
    await store.set(id, { data: payload(5, 5000), expiresAt: Date.now() + HOUR_MS });
    await store.touch(id, Date.now() + 2 * HOUR_MS);
    await store.close();
    const reopened = await DbmStore.open({ path, durability: 'full' });
    try {
      expect(
        Buffer.from((await reopened.get(id))?.data ?? []).equals(Buffer.from(payload(5, 5000))),
      ).toBe(true);
    } finally {
      await reopened.close();
    }
  });

  it('misuse of options throws TypeError before anything touches the disk', async () => {
    const path = newPath();
    const cases: [unknown, RegExp][] = [
      [undefined, /DbmStore\.open needs an options object/],
      [{ path: '' }, /^options\.path must be a non-empty string naming a file, got ''/],
      [{ path: `${path}\0.bak` }, /^options\.path must not contain a NUL character/],
      [{ path, stripes: 1 }, /^stripes must be an integer from 2 to 65536, got 1/],
      [
        { path, sweepMode: 'sometimes' },
        /^sweepMode must be 'incremental' or 'full-scan', got 'sometimes'/,
      ],
      [{ path, durability: 'paranoid' }, /^durability must be 'normal' or 'full', got 'paranoid'/],
      [{ path, durability: true }, /^durability must be 'normal' or 'full', got true/],
      [{ path, globalLockLeaseMs: 0 }, /^globalLockLeaseMs must be a number of milliseconds/],
      [{ path, globalLockLeaseMs: Number.NaN }, /^globalLockLeaseMs must be/],
      // A live holder's lock would be taken over in the middle of its writes.
      [{ path, globalLockLeaseMs: 1 }, /^globalLockLeaseMs must be at least 1000 ms/],
      [{ path, globalLockLeaseMs: 999 }, /^globalLockLeaseMs must be at least 1000 ms/],
      [{ path, globalLockWaitMs: -1 }, /^globalLockWaitMs must be a number of milliseconds/],
      [{ path, globalLockWaitMs: 2 ** 31 }, /^globalLockWaitMs must be/],
      [{ path, maxRecordBytes: 2 ** 31 }, /^maxRecordBytes must be at most/],
      [{ path, maxRecordBytes: 1.5 }, /^maxRecordBytes must be a positive integer/],
      [
        { path, sweepmode: 'full-scan' },
        /^DbmStore\.open: unknown option 'sweepmode'; did you mean 'sweepMode'\?$/,
      ],
      [
        { path, globalLockWait: 10 },
        /unknown option 'globalLockWait'; did you mean 'globalLockWaitMs'\?/,
      ],
      [
        { path, cleanup: 'full-scan' },
        /^DbmStore\.open: unknown option 'cleanup'; it is now 'sweepMode'/,
      ],
      [
        { path, fsync: true },
        /^DbmStore\.open: unknown option 'fsync'; it is now durability: 'full'/,
      ],
    ];
    for (const [options, message] of cases) {
      const opening = DbmStore.open(options as DbmStoreOptions);
      await expect(opening, JSON.stringify(options)).rejects.toThrow(TypeError);
      await expect(opening, JSON.stringify(options)).rejects.toThrow(message);
    }
    expect(readdirSync(dirname(path))).toEqual([]);
  });

  it('stats() and the store report the sweep mode', async () => {
    const store = await DbmStore.open({ path: newPath(), sweepMode: 'full-scan' });
    try {
      expect(store.sweepMode).toBe('full-scan');
      expect(store.stats().sweepMode).toBe('full-scan');
      await store.sweep();
      expect(store.stats().lastSweep?.sweepMode).toBe('full-scan');
    } finally {
      await store.close();
    }
  });
});

describe('DbmStore refuses paths that cannot hold a database', () => {
  it('a directory is refused with ERR_STORE_IO naming it, creating nothing', async () => {
    const directory = dirname(newPath());
    mkdirSync(join(directory, 'sub'));
    const asDirectory = await sessionErrorOf(DbmStore.open({ path: join(directory, 'sub') }));
    expect(asDirectory.code).toBe('ERR_STORE_IO');
    expect(asDirectory.message).toContain(join(directory, 'sub'));
    expect(asDirectory.message).toMatch(/is a directory/);
    expect(readdirSync(directory)).toEqual(['sub']);
  });

  it('a missing file in missing directories is created with them and its lock directory, mode 0700, as probe foretells', async () => {
    const directory = dirname(newPath());
    const path = join(directory, 'var', 'lib', 'app', 'sessions.dbm');
    const probed = await DbmStore.probe({ path });
    expect(probed.state).toBe('absent');
    expect(readdirSync(directory)).toEqual([]);

    const store = await DbmStore.open({ path });
    const id = generateSessionId();
    await store.set(id, { data: payload(1, 10), expiresAt: Date.now() + HOUR_MS });
    await store.close();
    for (const made of ['var', 'var/lib', 'var/lib/app', 'var/lib/app/sessions.dbm.locks']) {
      const stats = statSync(join(directory, made));
      expect(stats.isDirectory(), made).toBe(true);
      expect(stats.mode & 0o777, made).toBe(0o700);
    }
    expect(readdirSync(dirname(path)).sort()).toEqual(['sessions.dbm', 'sessions.dbm.locks']);
    expect(await DbmStore.probe({ path })).toEqual({ state: 'present' });
    const reopened = await DbmStore.open({ path });
    expect(Buffer.from((await reopened.get(id))?.data ?? []).equals(payload(1, 10))).toBe(true);
    await reopened.close();
  });

  it('directories that cannot be made are refused by open and probe alike, naming why, creating nothing', async () => {
    const directory = dirname(newPath());
    writeFileSync(join(directory, 'file'), 'not a directory');
    symlinkSync(join(directory, 'gone'), join(directory, 'link'));
    const cases = [
      { path: join(directory, 'file', 'sub', 'sessions.dbm'), why: /not a directory/ },
      {
        path: join(directory, 'link', 'sub', 'sessions.dbm'),
        why: /link is a symbolic link to a missing directory/,
      },
    ];
    for (const { path, why } of cases) {
      const error = await sessionErrorOf(DbmStore.open({ path }));
      expect(error.code, path).toBe('ERR_STORE_IO');
      expect(error.message, path).toContain(path);
      expect(error.message, path).toMatch(why);
      const probed = await DbmStore.probe({ path });
      expect(probed.state, path).toBe('refused');
      expect(probed.state === 'refused' && probed.reason, path).toMatch(why);
    }
    expect(readdirSync(directory).sort()).toEqual(['file', 'link']);
  });

  // In a child process, so that a regression which blocks the event loop fails this test
  // (the child never answers) instead of stalling the whole run.
  it.skipIf(process.platform !== 'linux')(
    'devices, FIFOs and paths under /proc end in ERR_STORE_IO naming the path, creating nothing',
    async () => {
      const directory = dirname(newPath());
      const fifo = join(directory, 'fifo');
      execFileSync('mkfifo', [fifo]);
      const paths = [
        '/proc/self/status',
        '/proc/1/mem',
        '/proc/self',
        '/proc/self/sessions.dbm',
        '/proc/self/missing/sessions.dbm',
        '/proc/self/status/sessions.dbm',
        '/dev/null',
        '/dev/zero',
        fifo,
      ];
      const child = spawn('open-paths.mjs', paths);
      const results = await new Promise<{ path: string; code: string; message: string }[]>(
        (resolve, reject) => {
          child.once('message', (message: { results: [] }) => resolve(message.results));
          child.once('close', (code, signal) =>
            reject(new Error(`child exited without answering (${code ?? signal})`)),
          );
        },
      );
      for (const [k, path] of paths.entries()) {
        const result = results[k];
        expect(result?.code, path).toBe('ERR_STORE_IO');
        expect(result?.message, path).toContain(path);
        expect(existsSync(`${path}.locks`), path).toBe(false);
      }
      expect(readdirSync(directory)).toEqual(['fifo']);
    },
    60_000,
  );
});

describe('DbmStore global lock', () => {
  it('an operation that waits past globalLockWaitMs rejects with ERR_STORE_BUSY, not ERR_LOCK_TIMEOUT', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path, globalLockWaitMs: 50 });
    const lockPath = join(`${path}.locks`, '0.lock');
    // A holder that is alive (this process) with a long lease: nobody may break its lock.
    const holder = { token: 'another-holder', expiresAt: Date.now() + 60_000, pid: process.pid };
    writeFileSync(lockPath, JSON.stringify({ ...holder, host: hostname().slice(0, 64) }));
    try {
      const error = await sessionErrorOf(store.get(generateSessionId()));
      expect(error.code).toBe('ERR_STORE_BUSY');
      expect(error.message).toContain(lockPath);
      expect(error.message).toMatch(/globalLockWaitMs/);
      expect(await codeOf(DbmStore.open({ path, globalLockWaitMs: 0 }))).toBe('ERR_STORE_BUSY');
    } finally {
      rmSync(lockPath);
    }
    try {
      expect(await store.get(generateSessionId())).toBeUndefined();
    } finally {
      await store.close();
    }
  });
});

describe('DbmStore close', () => {
  it('close() while an ids() listing claims the global lock leaves no holder file behind, and none heartbeating', async () => {
    const path = newPath();
    const holders = join(`${path}.locks`, 'holders');
    const ids = Array.from({ length: 300 }, () => generateSessionId());
    const first = await DbmStore.open({ path });
    for (const id of ids)
      await first.set(id, { data: payload(1, 40), expiresAt: Date.now() + HOUR_MS });
    await first.close();
    // The race comes only now and then: over 30 rounds a leak all but surely shows.
    for (let round = 0; round < 30; round++) {
      const store = await DbmStore.open({ path });
      // close() does not wait for a listing, whose next batch may be claiming the global lock.
      const listing = codeOf(collect(store.ids()));
      await store.close();
      expect(['ok', 'ERR_STORE_CLOSED']).toContain(await listing);
      expect(readdirSync(holders)).toEqual([]);
    }
    // Nor does a claim still in flight make one later.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(readdirSync(holders)).toEqual([]);
  });
});

describe('DbmStore damaged records', () => {
  it("set with only: 'absent' replaces a record whose data fails its checksum, as get rejects it", async () => {
    const path = newPath();
    const store = await DbmStore.open({ path });
    try {
      const id = generateSessionId();
      const expiresAt = Date.now() + HOUR_MS;
      await store.set(id, { data: payload(1, 40), expiresAt, owner: 'u1' });
      // Flips a byte of the stored data, as a bad disk would.
      const bytes = readFileSync(path);
      const at = bytes.indexOf(Buffer.from(id, 'latin1')) + id.length + 'u1'.length + 3;
      const fd = openSync(path, 'r+');
      try {
        writeSync(fd, Buffer.from([(bytes[at] ?? 0) ^ 0xff]), 0, 1, at);
      } finally {
        closeSync(fd);
      }
      expect(await codeOf(store.get(id))).toBe('ERR_CORRUPT_RECORD');

      expect(await store.set(id, { data: payload(2, 40), expiresAt }, { only: 'absent' })).toBe(
        true,
      );
      expect(Buffer.from((await store.get(id))?.data ?? [])).toEqual(Buffer.from(payload(2, 40)));
      expect(await store.ownedBy('u1')).toEqual([]);
    } finally {
      await store.close();
    }
  });
});

describe('DbmStore cut short', () => {
  it('count() counts what ids() lists when the file is cut short, and get rejects the lost record', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path });
    try {
      const expiresAt = Date.now() + HOUR_MS;
      const kept = Array.from({ length: 5 }, () => generateSessionId());
      for (const [i, id] of kept.entries())
        await store.set(id, { data: payload(i, 3000), expiresAt });
      const before = (await store.info()).fileBytes;
      const lost = generateSessionId();
      await store.set(lost, { data: payload(9, 3000), expiresAt });
      // The last record went to the end of the file: cutting the file back loses it whole, as a
      // copy that stopped short or a full disk would, while its bucket entry stays.
      truncateSync(path, before);
      const ids = await collect(store.ids());
      expect(ids.sort()).toEqual([...kept].sort());
      expect(await store.count()).toBe(ids.length);
      expect(await codeOf(store.get(lost))).toBe('ERR_CORRUPT_RECORD');
      for (const id of ids) expect(await store.get(id)).toBeDefined();
    } finally {
      await store.close();
    }
  });
});

describe('DbmStore damaged free lists', () => {
  it('a damaged free-list page is dropped with its list: new records of its size still go in', async () => {
    const path = newPath();
    let store = await DbmStore.open({ path });
    const ids = Array.from({ length: 200 }, () => generateSessionId());
    const sizes = [10, 100, 500, 2000];
    const expiresAt = Date.now() + HOUR_MS;
    for (const [i, id] of ids.entries()) {
      await store.set(id, { data: payload(i, sizes[i % 4] as number), expiresAt });
    }
    // Every other record deleted: each size's free list holds their space.
    for (const id of ids.filter((_, i) => i % 2 === 0)) await store.delete(id);
    await store.close();
    const bytes = readFileSync(path);
    const state = decodeHeader(bytes.subarray(0, HEADER_REGION_BYTES));
    if (state.kind !== 'ok') throw new Error(`header ${state.kind}`);
    const heads = state.header.freeHeads.filter((head) => head !== 0);
    expect(heads.length).toBeGreaterThan(0);
    // One byte of every list's first page's magic flipped.
    const fd = openSync(path, 'r+');
    for (const head of heads)
      writeSync(fd, Buffer.from([(bytes[head + 12] ?? 0) ^ 0xff]), 0, 1, head + 12);
    closeSync(fd);

    store = await DbmStore.open({ path });
    try {
      const fresh = Array.from({ length: 200 }, () => generateSessionId());
      for (const [i, id] of fresh.entries()) {
        await store.set(id, { data: payload(i, sizes[i % 4] as number), expiresAt });
      }
      for (const id of fresh) expect(await store.get(id)).toBeDefined();
      for (const id of ids.filter((_, i) => i % 2 === 1)) expect(await store.get(id)).toBeDefined();
      // Freeing space again starts new lists.
      for (const id of fresh.slice(0, 100)) expect(await store.delete(id)).toBe(true);
      for (const id of fresh.slice(100)) expect(await store.get(id)).toBeDefined();
    } finally {
      await store.close();
    }
  });
});

describe('DbmStore crash safety', () => {
  const expiresAt = Date.now() + HOUR_MS;

  async function writeOne(path: string, id: string, seed: number): Promise<void> {
    const store = await DbmStore.open({ path });
    await store.set(id, { data: payload(seed, 300), expiresAt });
    await store.close();
  }

  it('a writer killed after its journal was complete has its change replayed by the next opener', async () => {
    const path = newPath();
    const [kept, interrupted] = [generateSessionId(), generateSessionId()];
    await writeOne(path, kept, 1);
    const headerBefore = readFileSync(path).subarray(0, HEADER_REGION_BYTES);
    await writeOne(path, interrupted, 2);
    // The header is the last write of a change: putting the old one back is a crash just before it.
    const fd = openSync(path, 'r+');
    writeSync(fd, headerBefore, 0, headerBefore.length, 0);
    closeSync(fd);

    const store = await DbmStore.open({ path });
    try {
      expect(store.stats().journalRecoveries).toBe(1);
      // The replayed header accounts for the interrupted record and the space it uses.
      expect((await store.info()).entries).toBe(2);
      await store.set(generateSessionId(), { data: payload(3, 300), expiresAt });
      expect(
        Buffer.from((await store.get(interrupted))?.data ?? []).equals(
          Buffer.from(payload(2, 300)),
        ),
      ).toBe(true);
      expect(
        Buffer.from((await store.get(kept))?.data ?? []).equals(Buffer.from(payload(1, 300))),
      ).toBe(true);
      expect(await store.count()).toBe(3);
    } finally {
      await store.close();
    }
  });

  it('a writer killed while writing its journal loses that change and nothing else', async () => {
    const path = newPath();
    const [kept, interrupted] = [generateSessionId(), generateSessionId()];
    await writeOne(path, kept, 1);
    const before = readFileSync(path);
    await writeOne(path, interrupted, 2);
    const after = readFileSync(path);
    // Before the journal is complete only unreferenced space has been written: the old file plus
    // the new record's bytes past its end, and a journal whose checksum fails.
    const torn = Buffer.concat([before, after.subarray(before.length)]);
    after.copy(torn, JOURNAL_OFFSET, JOURNAL_OFFSET, JOURNAL_OFFSET + JOURNAL_HEAD_BYTES + 64);
    torn[JOURNAL_OFFSET + JOURNAL_HEAD_BYTES + 40] =
      (torn[JOURNAL_OFFSET + JOURNAL_HEAD_BYTES + 40] ?? 0) ^ 0xff;
    writeFileSync(path, torn);

    const store = await DbmStore.open({ path });
    try {
      expect(store.stats().journalRecoveries).toBe(0);
      expect(await store.get(interrupted)).toBeUndefined();
      expect(
        Buffer.from((await store.get(kept))?.data ?? []).equals(Buffer.from(payload(1, 300))),
      ).toBe(true);
      expect(await store.count()).toBe(1);
      expect(await store.set(interrupted, { data: payload(3, 10), expiresAt })).toBe(true);
      expect(await store.count()).toBe(2);
    } finally {
      await store.close();
    }
  });

  it('kill -9 in the middle of writes, repeated, never leaves the file unreadable or half-written', async () => {
    const path = newPath();
    const seed = 7;
    let committed = 0;
    let model = new Map<string, { op: number; expiresAt: number }>();
    for (let round = 0; round < 8; round++) {
      const child = spawn('crash-writer.mjs', [path, String(seed), String(committed)]);
      let acknowledged = committed - 1;
      child.on('message', (message: { type: string; op?: number }) => {
        if (message.type === 'done' && message.op !== undefined)
          acknowledged = Math.max(acknowledged, message.op);
      });
      await nextMessage(child, 'ready');
      // Some progress first, however loaded the machine, then a kill at a varying point.
      while (acknowledged < committed + 150) {
        expect(child.exitCode, 'the writer is still running').toBeNull();
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      await new Promise((resolve) => setTimeout(resolve, 10 + round * 25));
      child.kill('SIGKILL');
      await closed(child);

      // Opening takes over the dead writer's global lock and replays its journal if it must.
      const store = await DbmStore.open({ path });
      try {
        const actual = new Map<string, { op: number; expiresAt: number }>();
        for (let k = 0; k < ID_POOL_SIZE; k++) {
          const id = poolId(seed, k) as string;
          const record = await store.get(id);
          if (record === undefined) continue;
          const op = opOfPayload(record.data) as number;
          expect(op, 'payload bytes are exactly what one set wrote').toBeGreaterThanOrEqual(0);
          expect(record.owner, 'the owner that set wrote').toBe(opAt(seed, op).owner);
          actual.set(id, { op, expiresAt: record.expiresAt });
        }
        expect(await store.count()).toBe(actual.size);
        expect(new Set(await collect(store.ids()))).toEqual(new Set(actual.keys()));
        // The owner index changed in the same transactions as the records.
        for (const owner of OWNERS) {
          const listed = (await store.ownedBy(owner)).map((session) => session.id);
          expect(listed.length, 'no id listed twice').toBe(new Set(listed).size);
          const expected = [...actual.keys()].filter(
            (id) => opAt(seed, actual.get(id)?.op as number).owner === owner,
          );
          expect(new Set(listed)).toEqual(new Set(expected));
        }

        // The file holds exactly the first m operations, for some m past every acknowledged one.
        let matched: number | undefined;
        const candidate = new Map(model);
        for (let m = committed; m <= acknowledged + 1 + 500; m++) {
          if (m > committed) applyOp(candidate, seed, m - 1);
          if (m >= acknowledged + 1 && sameState(candidate, actual)) {
            matched = m;
            break;
          }
        }
        expect(matched, `state after round ${round} is a prefix of the operations`).toBeDefined();
        committed = matched as number;
        model = candidate;
      } finally {
        await store.close();
      }
    }
    expect(committed).toBeGreaterThanOrEqual(8 * 150);
    // The kills also landed while buckets were splitting and sweeps were running.
    const store = await DbmStore.open({ path });
    expect((await store.info()).buckets).toBeGreaterThan(8);
    await store.close();
  }, 300_000);
});

function sameState(
  expected: Map<string, { op: number; expiresAt: number }>,
  actual: Map<string, { op: number; expiresAt: number }>,
): boolean {
  if (expected.size !== actual.size) return false;
  for (const [id, value] of expected) {
    const other = actual.get(id);
    if (other?.op !== value.op || other.expiresAt !== value.expiresAt) return false;
  }
  return true;
}

describe('DbmStore sweep modes', () => {
  for (const sweepMode of ['incremental', 'full-scan'] as DbmSweepMode[]) {
    it(`'${sweepMode}' is not done while a record written behind its cursor has expired`, async () => {
      const store = await DbmStore.open({ path: newPath(), sweepMode });
      try {
        const start = Date.now();
        for (let i = 0; i < 2000; i++) {
          await store.set(generateSessionId(), {
            data: payload(i, 8),
            expiresAt: start + 10 * HOUR_MS,
          });
        }
        const now = start + HOUR_MS;
        expect((await store.sweep({ now, limit: 500 })).done).toBe(false);
        // Written while the pass is under way: some land in buckets it has passed.
        for (let i = 0; i < 1000; i++) {
          await store.set(generateSessionId(), { data: payload(i, 8), expiresAt: start + 1000 });
        }
        let removed = 0;
        for (let calls = 0; calls < 50; calls++) {
          const result = await store.sweep({ now, limit: 100_000 });
          removed += result.removed;
          if (result.done) break;
        }
        // Done means none is left as of `now`: another sweep finds nothing.
        expect(removed).toBe(1000);
        expect(await store.sweep({ now, limit: 100_000 })).toMatchObject({
          removed: 0,
          done: true,
        });
      } finally {
        await store.close();
      }
    });

    it(`'${sweepMode}' removes exactly the expired records, in bounded calls`, async () => {
      const store = await DbmStore.open({ path: newPath(), sweepMode });
      try {
        const start = Date.now();
        const live: string[] = [];
        const expired: string[] = [];
        for (let i = 0; i < 1500; i++) {
          const id = generateSessionId();
          const expires = i % 3 === 0 ? start + HOUR_MS : start + 10 * HOUR_MS;
          await store.set(id, { data: payload(i, i % 200), expiresAt: expires });
          (expires === start + HOUR_MS ? expired : live).push(id);
        }
        // Touched past the sweep time: must survive. Touched into the past: must go.
        const rescued = expired.splice(0, 20);
        for (const id of rescued) await store.touch(id, start + 10 * HOUR_MS);
        live.push(...rescued);
        const ended = live.splice(0, 20);
        for (const id of ended) await store.touch(id, start + HOUR_MS);
        expired.push(...ended);

        let removed = 0;
        for (let calls = 0; ; calls++) {
          expect(calls).toBeLessThan(1000);
          const result = await store.sweep({ now: start + 2 * HOUR_MS, limit: 150 });
          expect(result.scanned).toBeLessThanOrEqual(150);
          removed += result.removed;
          if (result.done) break;
        }
        expect(removed).toBe(expired.length);
        expect(new Set(await collect(store.ids()))).toEqual(new Set(live));
        for (const id of expired.slice(0, 50)) expect(await store.get(id)).toBeUndefined();
        expect(await store.count()).toBe(live.length);
      } finally {
        await store.close();
      }
    }, 120_000);
  }

  it("'full-scan' holds the global lock once for the whole call; 'incremental' releases it between batches", async () => {
    for (const sweepMode of ['incremental', 'full-scan'] as DbmSweepMode[]) {
      const store = await DbmStore.open({ path: newPath(), sweepMode });
      try {
        for (let i = 0; i < 3000; i++) {
          await store.set(generateSessionId(), {
            data: payload(i, 50),
            expiresAt: Date.now() + HOUR_MS,
          });
        }
        const before = store.stats().globalLock.acquired;
        const result = await store.sweep({
          now: Date.now() + 2 * HOUR_MS,
          limit: Number.POSITIVE_INFINITY,
        });
        const after = store.stats();
        expect(result).toMatchObject({ removed: 3000, done: true });
        expect(after.lastSweep?.batches).toBeGreaterThan(2);
        const holds = after.globalLock.acquired - before;
        expect(holds).toBe(sweepMode === 'full-scan' ? 1 : after.lastSweep?.batches);
      } finally {
        await store.close();
      }
    }
  }, 120_000);

  it('operations called while the global lock is being taken share one hold of it', async () => {
    const store = await DbmStore.open({ path: newPath() });
    try {
      const ids = Array.from({ length: 100 }, () => generateSessionId());
      const expiresAt = Date.now() + HOUR_MS;
      const before = store.stats().globalLock.acquired;
      const written = await Promise.all(
        ids.map((id, i) => store.set(id, { data: payload(i, 50), expiresAt })),
      );
      const found = await Promise.all(ids.map((id) => store.get(id)));
      expect(written.every((wrote) => wrote)).toBe(true);
      found.forEach((record, i) => {
        expect(Buffer.from(record?.data ?? []).equals(Buffer.from(payload(i, 50)))).toBe(true);
      });
      // One hold per operation would be 200.
      expect(store.stats().globalLock.acquired - before).toBeLessThan(2 * ids.length);
    } finally {
      await store.close();
    }
  });

  it("'full-scan' decodes every record, 'incremental' reads only the expiry in the bucket entries", async () => {
    for (const sweepMode of ['incremental', 'full-scan'] as DbmSweepMode[]) {
      const path = newPath();
      const store = await DbmStore.open({ path, sweepMode });
      try {
        const damaged = generateSessionId();
        await store.set(damaged, { data: payload(1, 100), expiresAt: Date.now() + HOUR_MS });
        for (let i = 0; i < 20; i++) {
          await store.set(generateSessionId(), {
            data: payload(i, 100),
            expiresAt: Date.now() + 10 * HOUR_MS,
          });
        }
        flipPayloadByte(path, damaged);
        const result = await store.sweep({ now: Date.now() + 2 * HOUR_MS });
        // The damaged record is expired by its index entry either way, and removed.
        expect(result).toMatchObject({ removed: 1, done: true });
        expect(store.stats().undecodableRecords).toBe(sweepMode === 'full-scan' ? 1 : 0);
        expect(await store.count()).toBe(20);
      } finally {
        await store.close();
      }
    }
  });

  it('the incremental cursor lives in the file: a reopened store resumes where the last sweep stopped', async () => {
    const path = newPath();
    const now = Date.now() + 2 * HOUR_MS;
    const first = await DbmStore.open({ path });
    for (let i = 0; i < 1000; i++) {
      await first.set(generateSessionId(), {
        data: payload(i, 10),
        expiresAt: Date.now() + (i % 2 === 0 ? HOUR_MS : 10 * HOUR_MS),
      });
    }
    const opening = await first.sweep({ now, limit: 300 });
    expect(opening).toMatchObject({ scanned: 300, done: false });
    await first.close();

    const second = await DbmStore.open({ path });
    try {
      let scanned = opening.scanned;
      let removed = opening.removed;
      for (;;) {
        const result = await second.sweep({ now, limit: 300 });
        scanned += result.scanned;
        removed += result.removed;
        if (result.done) break;
      }
      expect(removed).toBe(500);
      expect(scanned).toBe(1000);
    } finally {
      await second.close();
    }
  });
});

function flipPayloadByte(path: string, id: string): void {
  const bytes = readFileSync(path);
  const at = bytes.indexOf(Buffer.from(id, 'latin1'));
  if (at === -1) throw new Error('record not found');
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, Buffer.from([(bytes[at + id.length + 5] ?? 0) ^ 0xff]), 0, 1, at + id.length + 5);
  } finally {
    closeSync(fd);
  }
}

describe('DbmStore session locks', () => {
  it('a store opened with another stripe count than the file is used with is refused: both would hold one lock', async () => {
    const path = newPath();
    const first = await DbmStore.open({ path });
    try {
      const error = await sessionErrorOf(DbmStore.open({ path, stripes: 8 }));
      expect(error.code).toBe('ERR_STORE_IO');
      expect(error.message).toContain(path);
      expect(error.message).toMatch(/used with stripes: 4096 .*not 8/);
      const same = await DbmStore.open({ path, stripes: 4096 });
      await same.close();
    } finally {
      await first.close();
    }
    // Recorded with the file's locks: it holds after every instance closed, too.
    await expect(DbmStore.open({ path, stripes: 8 })).rejects.toMatchObject({
      code: 'ERR_STORE_IO',
    });
  });

  it('a store opened without `stripes` takes the count the file is used with', async () => {
    const path = newPath();
    const first = await DbmStore.open({ path, stripes: 8 });
    const second = await DbmStore.open({ path });
    try {
      expect(second.locks.stats().stripes).toBe(8);
      const [id] = sameStripePair(8);
      const held = await first.locks.acquire(id, { leaseMs: 60_000 });
      await expect(second.locks.acquire(id, { waitMs: 0 })).rejects.toMatchObject({
        code: 'ERR_LOCK_TIMEOUT',
      });
      await held.release();
    } finally {
      await second.close();
      await first.close();
    }
  });

  it('close() with session locks held lets go of every file in the store directory and frees the locks; their holders learn it on their next use', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path, stripes: 64 });
    const [id, other] = [generateSessionId(), generateSessionId()];
    const lock = await store.locks.acquire(id, { leaseMs: 600_000 });
    const otherLock = await store.locks.acquire(other, { leaseMs: 600_000 });
    expect(openFilesIn(dirname(path))).not.toEqual([]);
    await store.close();
    // Nothing open in there: the volume the store is on can be unmounted.
    expect(openFilesIn(dirname(path))).toEqual([]);
    expect(await codeOf(lock.extend())).toBe('ERR_LOCK_LOST');
    expect(
      await codeOf(
        store.set(
          other,
          { data: payload(1, 8), expiresAt: Date.now() + HOUR_MS },
          { lock: otherLock },
        ),
      ),
    ).toBe('ERR_STORE_CLOSED');
    // What a shutdown's request does last: its release resolves, as the lock was freed.
    await otherLock.release();
    const next = await DbmStore.open({ path, stripes: 64 });
    try {
      await (await next.locks.acquire(id, { waitMs: 0 })).release();
      await (await next.locks.acquire(other, { waitMs: 0 })).release();
    } finally {
      await next.close();
    }
  });

  function sameStripePair(stripes: number): [string, string] {
    const byStripe = new Map<number, string>();
    for (;;) {
      const id = generateSessionId();
      const stripe = sessionStripe(id, stripes);
      const other = byStripe.get(stripe);
      if (other !== undefined) return [other, id];
      byStripe.set(stripe, id);
    }
  }

  it('a closed loop of lock acquires and releases still lets timers and I/O run in between', async () => {
    // A claim's file calls are synchronous: awaited in a loop, they settle in microtasks only.
    const store = await DbmStore.open({ path: newPath() });
    try {
      const id = generateSessionId();
      let turns = 0;
      setImmediate(() => turns++);
      for (let i = 0; i < 400; i++) await (await store.locks.acquire(id)).release();
      expect(turns).toBeGreaterThan(0);
    } finally {
      await store.close();
    }
  });

  it('sessions use lock files 1..N-1; file 0 is the global lock', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) seen.add(sessionStripe(generateSessionId(), 8));
    expect([...seen].sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('counts a wait behind a different id on the same stripe as a collision, a same-id wait not', async () => {
    const store = await DbmStore.open({ path: newPath(), stripes: 4 });
    try {
      const [first, second] = sameStripePair(4);
      const held = await store.locks.acquire(first, { leaseMs: 60_000 });
      expect(await codeOf(store.locks.acquire(second, { waitMs: 50 }))).toBe('ERR_LOCK_TIMEOUT');
      expect(store.stats().sessionLocks).toMatchObject({ stripes: 4, waits: 1, collisions: 1 });
      expect(await codeOf(store.locks.acquire(first, { waitMs: 50 }))).toBe('ERR_LOCK_TIMEOUT');
      expect(store.stats().sessionLocks).toMatchObject({ waits: 2, collisions: 1 });
      await held.release();
      const next = await store.locks.acquire(second, { waitMs: 0 });
      await next.release();
      expect(store.stats().sessionLocks).toMatchObject({ acquired: 2, waits: 2, collisions: 1 });
    } finally {
      await store.close();
    }
  });

  it('a session lock held by another process blocks a different id on its stripe, and is counted', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path, stripes: 3 });
    try {
      const [first, second] = sameStripePair(3);
      const holder = spawn('lock-holder.mjs', [path, first, '3']);
      await nextMessage(holder, 'held');
      expect(await codeOf(store.locks.acquire(second, { waitMs: 100 }))).toBe('ERR_LOCK_TIMEOUT');
      expect(store.stats().sessionLocks.collisions).toBe(1);
      // Data operations are not blocked by a session lock, only by the global lock.
      expect(
        await store.set(second, { data: payload(1, 10), expiresAt: Date.now() + HOUR_MS }),
      ).toBe(true);
    } finally {
      await store.close();
    }
  }, 60_000);
});

describe('DbmStore paths through symbolic links', () => {
  it('a file opened through a symlink to it, or to its directory, shares the locks of its real path', async () => {
    const path = newPath();
    const id = generateSessionId();
    await (await DbmStore.open({ path, stripes: 3 })).close();
    const holder = spawn('lock-holder.mjs', [path, id, '3']);
    await nextMessage(holder, 'held');
    const linkedFile = join(dirname(path), 'linked.dbm');
    symlinkSync(path, linkedFile);
    const linkedDirectory = `${dirname(path)}-linked`;
    symlinkSync(dirname(path), linkedDirectory);
    try {
      for (const through of [linkedFile, join(linkedDirectory, basename(path))]) {
        const store = await DbmStore.open({ path: through });
        try {
          expect(store.path).toBe(path);
          expect(await codeOf(store.locks.acquire(id, { waitMs: 100 }))).toBe('ERR_LOCK_TIMEOUT');
        } finally {
          await store.close();
        }
      }
      expect(existsSync(`${linkedFile}.locks`)).toBe(false);
    } finally {
      rmSync(linkedDirectory);
    }
  }, 60_000);
});

describe('DbmStore on a full disk', () => {
  const mounts: string[] = [];
  afterEach(() => {
    for (const dir of mounts.splice(0)) unmountSmallFilesystem(dir);
  });

  /** A tmpfs of `size` (needs root): the test fails with the reason when mounting is refused. */
  function smallFilesystem(size: string): string {
    const dir = mountSmallFilesystem(size);
    mounts.push(dir);
    return dir;
  }

  /** Takes the last free blocks of the disk at `dir` with one file, so nothing more fits. */
  function takeTheRest(dir: string): void {
    try {
      writeFileSync(join(dir, 'filler'), Buffer.alloc(2 * 1024 * 1024));
    } catch (error) {
      expect((error as NodeJS.ErrnoException).code).toBe('ENOSPC');
    }
  }

  /** Fills the disk under `store` with records expiring at `expiresAt`; returns how many went in. */
  async function fill(store: DbmStore, expiresAt: number): Promise<number> {
    for (let stored = 0; ; stored++) {
      const error = await sessionErrorOf(
        store.set(generateSessionId(), { data: payload(stored, 3000), expiresAt }),
      ).catch(() => undefined);
      if (error !== undefined) {
        expect(error.code).toBe('ERR_STORE_IO');
        expect(error.message).toContain(store.path);
        expect((error.cause as NodeJS.ErrnoException).code).toBe('ENOSPC');
        return stored;
      }
    }
  }

  it('a record that does not fit gives the disk back the blocks its failed write took', async () => {
    const dir = smallFilesystem('16m');
    const path = join(dir, 'sessions.dbm');
    const store = await DbmStore.open({ path, maxRecordBytes: 32 * 1024 * 1024 });
    try {
      const ids = Array.from({ length: 50 }, () => generateSessionId());
      for (const [i, id] of ids.entries()) {
        await store.set(id, { data: payload(i, 1000), expiresAt: Date.now() + HOUR_MS });
      }
      const error = await sessionErrorOf(
        store.set(generateSessionId(), {
          data: payload(1, 24 * 1024 * 1024),
          expiresAt: Date.now() + HOUR_MS,
        }),
      );
      expect((error.cause as NodeJS.ErrnoException).code).toBe('ENOSPC');
      // Nothing committed lies past the file's end as its header says, so nothing past it is kept.
      expect(statSync(path).size).toBeLessThanOrEqual((await store.info()).fileBytes);
      // Other files on the disk get that room again.
      writeFileSync(join(dir, 'other'), Buffer.alloc(8 * 1024 * 1024));
      for (const [i, id] of ids.entries()) {
        expect(Buffer.from((await store.get(id))?.data ?? []).equals(payload(i, 1000))).toBe(true);
      }
    } finally {
      await store.close();
    }
  });

  it('the sweep and clear() still commit, so they free space and writes work again', async () => {
    const path = join(smallFilesystem('2m'), 'sessions.dbm');
    const store = await DbmStore.open({ path });
    try {
      const expiresAt = Date.now() + 300;
      const stored = await fill(store, expiresAt);
      expect(stored).toBeGreaterThan(0);
      while (Date.now() <= expiresAt) await new Promise((resolve) => setTimeout(resolve, 50));
      // A sweep batch journals more than any set did, into a journal region left sparse.
      expect(await store.sweep({ limit: Number.POSITIVE_INFINITY })).toMatchObject({
        removed: stored,
        done: true,
      });
      const live = Date.now() + HOUR_MS;
      expect(await fill(store, live)).toBeGreaterThan(0);
      // clear() journals eight bucket pages at once.
      await store.clear();
      expect(await store.count()).toBe(0);
      const id = generateSessionId();
      expect(await store.set(id, { data: payload(1, 3000), expiresAt: live })).toBe(true);
      const record = await store.get(id);
      expect(Buffer.from(record?.data ?? []).equals(payload(1, 3000))).toBe(true);
    } finally {
      await store.close();
    }
  }, 60_000);

  it('opens on a full disk and serves locked requests: a read, a logout, and a lock another process holds is waited for', async () => {
    const dir = smallFilesystem('2m');
    const path = join(dir, 'sessions.dbm');
    const stripes = 64;
    const filling = await DbmStore.open({ path, stripes });
    const signup = new SessionManager<{ user?: number }>({ store: filling, cleanup: manual() });
    // Three sessions on three stripes, so only the contended one waits for the other process.
    const byStripe = new Map<number, string>();
    for (let user = 0; byStripe.size < 3; user++) {
      const session = await signup.open(undefined);
      session.data.user = user;
      expect(await session.commit()).toBe('saved');
      byStripe.set(sessionStripe(session.id, stripes), session.id);
    }
    await signup.close();
    await fill(filling, Date.now() + HOUR_MS);
    await filling.close();
    takeTheRest(dir);
    const [readOnly, loggedOut, contended] = [...byStripe.values()] as [string, string, string];

    // Another process, started on the full disk, holds one session's stripe.
    const holder = spawn('lock-holder.mjs', [path, contended, String(stripes), '2000']);
    await nextMessage(holder, 'held');
    // No block for its record: a bare lease, whose end is its mtime.
    const stripe = join(`${path}.locks`, 'stripes', `${sessionStripe(contended, stripes)}.lock`);
    expect(statSync(stripe).size).toBe(0);

    // The app restarts: opening takes the global lock, and every request locks its session.
    const store = await DbmStore.open({ path, stripes }).catch((error) => {
      holder.kill('SIGKILL');
      throw error;
    });
    const manager = new SessionManager<{ user?: number }>({ store, cleanup: manual() });
    try {
      const read = await manager.open(readOnly);
      expect(read.isNew).toBe(false);
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
      holder.kill('SIGKILL');
      const lock = await store.locks.acquire(contended, { waitMs: 30_000, leaseMs: 60_000 });
      expect(await store.delete(contended, { lock })).toBe(true);
      await lock.release();
    } finally {
      holder.kill('SIGKILL');
      await manager.close();
      await store.close();
    }
  }, 60_000);

  it('a bare lease fences writes to its very end, the last second included', async () => {
    const dir = smallFilesystem('2m');
    const path = join(dir, 'sessions.dbm');
    const stripes = 64;
    const filling = await DbmStore.open({ path, stripes });
    const id = generateSessionId();
    expect(await filling.set(id, { data: payload(1, 100), expiresAt: Date.now() + HOUR_MS })).toBe(
      true,
    );
    await fill(filling, Date.now() + HOUR_MS);
    await filling.close();
    takeTheRest(dir);
    // Opened on the full disk, its holder files have no block for a record: the lease is bare.
    const store = await DbmStore.open({ path, stripes });
    try {
      const lock = await store.locks.acquire(id, { leaseMs: 4000 });
      const stripe = join(`${path}.locks`, 'stripes', `${sessionStripe(id, stripes)}.lock`);
      expect(statSync(stripe).size).toBe(0);
      // Inside the last second, where the lease file is read back instead of trusted.
      await new Promise((resolve) => setTimeout(resolve, lock.expiresAt - Date.now() - 700));
      expect(await store.delete(id, { lock })).toBe(true);
      expect(await store.get(id)).toBeUndefined();
      await lock.release();
    } finally {
      await store.close();
    }
  }, 60_000);

  it('a stripe count recorded already is read on a full disk, not written again', async () => {
    const path = join(smallFilesystem('1m'), 'sessions.dbm');
    const directory = `${path}.locks`;
    mkdirSync(directory);
    expect(agreeOnStripes(path, directory, 64, true)).toBe(64);
    takeTheRest(dirname(path));
    expect(agreeOnStripes(path, directory, 4096, false)).toBe(64);
    expect(agreeOnStripes(path, directory, 64, true)).toBe(64);
  });

  it('keeps its lock directory through locked writes that fail on a full disk, and works again once there is room', async () => {
    const dir = smallFilesystem('2m');
    const path = join(dir, 'sessions.dbm');
    const store = await DbmStore.open({ path, stripes: 64 });
    const ballast = join(dir, 'ballast');
    writeFileSync(ballast, Buffer.alloc(256 * 1024));
    try {
      const id = generateSessionId();
      const record = { data: payload(1, 3000), expiresAt: Date.now() + HOUR_MS };
      await fill(store, record.expiresAt);
      takeTheRest(dir);
      const locks = `${path}.locks`;
      const kept = readdirSync(locks).sort();
      for (let round = 0; round < 3; round++) {
        await using lock = await store.locks.acquire(id, { leaseMs: 60_000 });
        const failure = await sessionErrorOf(store.set(id, record, { lock }));
        expect(failure.code).toBe('ERR_STORE_IO');
        expect((failure.cause as NodeJS.ErrnoException).code).toBe('ENOSPC');
      }
      expect(readdirSync(locks).sort()).toEqual(kept);
      const files = ['ballast', 'filler', 'sessions.dbm', 'sessions.dbm.locks'];
      expect(readdirSync(dir).sort()).toEqual(files);

      rmSync(ballast);
      await using lock = await store.locks.acquire(id, { leaseMs: 60_000 });
      expect(await store.set(id, record, { lock })).toBe(true);
      expect(await store.get(id)).toMatchObject({ expiresAt: record.expiresAt });
      expect(readdirSync(locks).sort()).toEqual(kept);
    } finally {
      await store.close();
    }
  }, 60_000);
});
