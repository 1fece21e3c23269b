import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { generateSessionId, isSessionError } from '@sessile/core';
import { LevelStore } from '@sessile/level';
import { ClassicLevel } from 'classic-level';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = mkdtempSync(join(tmpdir(), 'sessile-level-paths-'));
const mounts: string[] = [];
afterAll(() => {
  // Lazily, each on its own: one still busy after a failed test must not leave the others mounted.
  for (const mount of mounts) execFileSync('umount', ['-l', mount]);
  rmSync(root, { recursive: true, force: true });
});

const fixture = new URL('./fixtures/open-store.mjs', import.meta.url).pathname;

/** Opens `path` in a child, which is killed (failing the test) if the open never settles. */
async function openInChild(path: string): Promise<Record<string, unknown>> {
  const { stdout } = await run(process.execPath, [fixture, path], {
    timeout: 30_000,
    killSignal: 'SIGKILL',
  });
  return JSON.parse(stdout) as Record<string, unknown>;
}

/** What `LevelStore.open({ path })` rejects with, or `undefined` once a store opened (and is closed). */
async function openFailure(path: string): Promise<unknown> {
  try {
    await (await LevelStore.open({ path })).close();
  } catch (error) {
    return error;
  }
  return undefined;
}

describe('LevelStore: paths that cannot hold a database', () => {
  it.runIf(process.platform === 'linux')(
    'a path on /proc or /sys, or reached through a link into /proc, fails with ERR_STORE_IO naming the path and the filesystem',
    async () => {
      const intoProc = join(root, 'into-proc');
      symlinkSync('/proc/self', intoProc);
      const cases: [path: string, filesystem: string][] = [
        // Node's recursive mkdir never returns on these missing /proc paths.
        ['/proc/self/sessions', 'proc'],
        ['/proc/sessions/db', 'proc'],
        [join(intoProc, 'sessions'), 'proc'],
        ['/proc/self/status', 'proc'],
        ['/proc/1', 'proc'],
        ['/sys/kernel/sessions', 'sysfs'],
      ];
      for (const [path, filesystem] of cases) {
        const outcome = await openInChild(path);
        expect(outcome, path).toMatchObject({ opened: false, code: 'ERR_STORE_IO' });
        expect(outcome.message, path).toBe(
          `Cannot open LevelDB directory ${path}: it is on a ${filesystem} filesystem, whose files are kernel interfaces, not storage`,
        );
      }
      expect(existsSync('/proc/self/sessions')).toBe(false);
    },
    120_000,
  );

  it('on a read-only filesystem: names the path and the read-only directory, not a missing one', async () => {
    const directory = join(root, 'read-only');
    mkdirSync(directory);
    // A failed mount fails the test with the reason.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,ro', 'tmpfs', directory]);
    mounts.push(directory);
    for (const path of [join(directory, 'sessions'), join(directory, 'a', 'b', 'sessions')]) {
      const error = await openFailure(path);
      expect(isSessionError(error, 'ERR_STORE_IO'), String(error)).toBe(true);
      // Node's recursive mkdir says ENOENT there, as if the directory were missing.
      expect((error as Error).message).toMatch(
        `Cannot open LevelDB directory ${path}: its parent directory ${directory} is on a read-only filesystem, where LevelDB cannot create it (`,
      );
      expect((error as Error).cause).toBeInstanceOf(Error);
    }
    expect(readdirSync(directory)).toEqual([]);
  });

  it('/proc/self/fd/0, a special file, fails with ERR_STORE_IO naming the path', async () => {
    const outcome = await openInChild('/proc/self/fd/0');
    expect(outcome).toMatchObject({ opened: false, code: 'ERR_STORE_IO' });
    expect(outcome.message).toMatch(/^Cannot open LevelDB directory \/proc\/self\/fd\/0: /);
  }, 60_000);
});

describe('LevelStore: a directory that is not a LevelDB database', () => {
  it('refuses one holding other files with ERR_STORE_IO naming the path, and creates nothing among them', async () => {
    const path = join(root, 'app-data');
    mkdirSync(join(path, 'uploads'), { recursive: true });
    writeFileSync(join(path, 'config.json'), '{}');
    const error = await openFailure(path);
    expect(isSessionError(error, 'ERR_STORE_IO'), String(error)).toBe(true);
    expect((error as Error).message).toBe(
      `Cannot open LevelDB directory ${path}: it holds other files (config.json, uploads) and is not a LevelDB database (no CURRENT file); pass a new or empty directory`,
    );
    expect(readdirSync(path).sort()).toEqual(['config.json', 'uploads']);
  });

  it('opens an empty one, one holding only lost+found or the files of an interrupted create, and a database with its sessions', async () => {
    const empty = join(root, 'empty');
    const volume = join(root, 'volume');
    const interrupted = join(root, 'interrupted');
    mkdirSync(empty);
    mkdirSync(join(volume, 'lost+found'), { recursive: true });
    mkdirSync(interrupted);
    // What LevelDB leaves when a process dies before it wrote CURRENT.
    writeFileSync(join(interrupted, 'LOG'), '');
    writeFileSync(join(interrupted, 'LOCK'), '');
    writeFileSync(join(interrupted, 'MANIFEST-000001'), '');
    const id = generateSessionId();
    const expiresAt = Date.now() + 60_000;
    for (const path of [empty, volume, interrupted]) {
      const store = await LevelStore.open({ path });
      await store.set(id, { data: new Uint8Array([1]), expiresAt });
      await store.close();
      // A database is opened whatever else its directory holds.
      writeFileSync(join(path, 'notes.txt'), '');
      const reopened = await LevelStore.open({ path });
      expect(await reopened.get(id), path).toEqual({ data: new Uint8Array([1]), expiresAt });
      await reopened.close();
    }
  });
});

/** A tmpfs mounted at a new directory under `root`, unmounted after the file's tests. */
function tmpfsAt(name: string, options: string): string {
  const mount = join(root, name);
  mkdirSync(mount, { recursive: true });
  // A failed mount (not root) fails the test with the reason.
  execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', mount]);
  mounts.unshift(mount);
  return mount;
}

/** Runs `body` with `os.tmpdir()` answering `directory`. */
async function withTemporaryDirectory<T>(directory: string, body: () => Promise<T>): Promise<T> {
  const before = process.env.TMPDIR;
  process.env.TMPDIR = directory;
  try {
    return await body();
  } finally {
    if (before === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = before;
  }
}

/** A LevelDB database at `path` of the peer level-session-store's shape, of about `bytes`. */
async function foreignDatabase(path: string, bytes: number): Promise<void> {
  const db = new ClassicLevel<string, Uint8Array>(path, { valueEncoding: 'view' });
  await db.open();
  try {
    await db.put('__length__', new Uint8Array([0x31]));
    for (let written = 0, i = 0; written < bytes; written += 256 * 1024, i++) {
      await db.put(`session-${i}`, randomBytes(256 * 1024));
    }
  } finally {
    // Left open, it would keep its filesystem busy and the unmount after the tests would fail.
    await db.close();
  }
}

describe('LevelStore.probe on another filesystem than the temporary directory', () => {
  it('reads the keys from links beside the database, never copying them into a small temporary directory', async () => {
    const temporary = tmpfsAt('small-tmp', 'size=256k');
    const mount = tmpfsAt('other-filesystem', 'size=32m');
    const storePath = join(mount, 'sessions');
    const store = await LevelStore.open({ path: storePath });
    for (let i = 0; i < 8; i++) {
      await store.set(generateSessionId(), {
        data: randomBytes(64 * 1024),
        expiresAt: Date.now() + 60_000,
      });
    }
    await store.close();
    const foreignPath = join(mount, 'foreign');
    await foreignDatabase(foreignPath, 1024 * 1024);

    const [present, refused] = await withTemporaryDirectory(temporary, async () => [
      await LevelStore.probe({ path: storePath }),
      await LevelStore.probe({ path: foreignPath }),
    ]);
    expect(present).toEqual({ state: 'present' });
    const error = await openFailure(foreignPath);
    expect(isSessionError(error, 'ERR_UNSUPPORTED'), String(error)).toBe(true);
    expect(refused).toEqual({ state: 'refused', reason: (error as Error).message, cause: error });
    expect(readdirSync(mount).sort()).toEqual(['foreign', 'sessions']);
    expect(readdirSync(temporary)).toEqual([]);
  });

  it("judges a database over 64 MiB that it cannot link anywhere by its files, and open still refuses another program's", async () => {
    const temporary = tmpfsAt('small-tmp-2', 'size=256k');
    // The database's own filesystem mounted inside a read-only one: no directory beside it.
    const readOnly = tmpfsAt('read-only-parent', 'size=1m');
    mkdirSync(join(readOnly, 'foreign'));
    execFileSync('mount', ['-o', 'remount,ro', readOnly]);
    // LevelDB holds the log and the tables compacted from it at once: room for both, and more.
    const foreignPath = tmpfsAt('read-only-parent/foreign', 'size=256m');
    await foreignDatabase(foreignPath, 66 * 1024 * 1024);

    const probe = await withTemporaryDirectory(temporary, () =>
      LevelStore.probe({ path: foreignPath }),
    );
    expect(probe).toEqual({ state: 'present' });
    expect(readdirSync(temporary)).toEqual([]);
    const error = await openFailure(foreignPath);
    expect(isSessionError(error, 'ERR_UNSUPPORTED'), String(error)).toBe(true);
  });
});
