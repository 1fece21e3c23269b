import { execFile, execFileSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { isSessionError } from '@sessile/core';
import { SqliteStore } from '@sessile/sqlite';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const OPEN_PATHS = fileURLToPath(new URL('./fixtures/open-paths.mjs', import.meta.url));
const PACKAGE = fileURLToPath(new URL('..', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'sessile-sqlite-paths-'));
const mounts: string[] = [];
afterAll(() => {
  for (const mount of mounts) execFileSync('umount', [mount]);
  rmSync(root, { recursive: true, force: true });
});

interface Outcome {
  path: string;
  code: string;
  message: string;
}

/** Opens each path in a child, which is killed (failing the test) if an open never settles. */
async function openInChild(paths: string[], uid?: number): Promise<Outcome[]> {
  const ids = uid === undefined ? {} : { uid, gid: uid };
  const { stdout } = await run(process.execPath, [OPEN_PATHS, ...paths], {
    timeout: 30_000,
    killSignal: 'SIGKILL',
    ...ids,
  });
  return JSON.parse(stdout) as Outcome[];
}

async function openError(path: string): Promise<Error> {
  try {
    const store = await SqliteStore.open({ path });
    await store.close();
  } catch (error) {
    if (isSessionError(error, 'ERR_STORE_IO')) return error;
    throw error;
  }
  throw new Error(`expected opening ${path} to fail`);
}

describe('SqliteStore: where a database cannot be opened', () => {
  it("without better-sqlite3's compiled module (an install with --ignore-scripts): says so and how to build it, and writes nothing", async () => {
    // An app's node_modules as a skipped build leaves it: the packages, no build/ in better-sqlite3.
    const app = join(root, 'unbuilt-app');
    const modules = join(app, 'node_modules');
    const betterSqlite = realpathSync(join(PACKAGE, 'node_modules', 'better-sqlite3'));
    cpSync(join(PACKAGE, 'dist'), join(modules, '@sessile', 'sqlite', 'dist'), { recursive: true });
    cpSync(join(PACKAGE, 'package.json'), join(modules, '@sessile', 'sqlite', 'package.json'));
    symlinkSync(
      realpathSync(join(PACKAGE, 'node_modules', '@sessile', 'core')),
      join(modules, '@sessile', 'core'),
    );
    for (const part of ['package.json', 'lib']) {
      cpSync(join(betterSqlite, part), join(modules, 'better-sqlite3', part), { recursive: true });
    }
    // better-sqlite3's own dependencies sit beside it in pnpm's store.
    for (const dependency of readdirSync(dirname(betterSqlite))) {
      if (dependency === 'better-sqlite3' || dependency.startsWith('@')) continue;
      symlinkSync(join(dirname(betterSqlite), dependency), join(modules, dependency));
    }
    cpSync(OPEN_PATHS, join(app, 'open-paths.mjs'));
    const path = join(app, 'sessions.db');
    const { stdout } = await run(process.execPath, [join(app, 'open-paths.mjs'), path], {
      timeout: 30_000,
      killSignal: 'SIGKILL',
    });
    const [outcome] = JSON.parse(stdout) as Outcome[];
    expect(outcome?.code).toBe('ERR_STORE_IO');
    expect(outcome?.message).toContain(path);
    expect(outcome?.message).toMatch(
      /better-sqlite3's native module is not built .*npm rebuild better-sqlite3/,
    );
    expect(existsSync(path)).toBe(false);
  });

  it('on a read-only filesystem: names the path and the read-only directory, for an existing and a new file', async () => {
    const directory = join(root, 'read-only');
    mkdirSync(directory);
    // A failed mount fails the test with the reason.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', directory]);
    mounts.push(directory);
    const existing = join(directory, 'sessions.db');
    const created = await SqliteStore.open({ path: existing });
    await created.close();
    execFileSync('mount', ['-o', 'remount,ro', directory]);

    const error = await openError(existing);
    expect(error.message).toContain(
      `Cannot open SQLite database ${existing}: its directory ${directory} is on a read-only filesystem, and SQLite must create its -wal and -shm files there`,
    );
    const fresh = join(directory, 'fresh.db');
    expect((await openError(fresh)).message).toContain(
      `Cannot open SQLite database ${fresh}: its directory ${directory} is on a read-only filesystem, and SQLite must create the database and its -wal and -shm files there`,
    );
    expect(await SqliteStore.probe({ path: existing })).toMatchObject({
      state: 'refused',
      reason: expect.stringContaining(`its directory ${directory} is on a read-only filesystem`),
    });
    expect(await SqliteStore.probe({ path: fresh })).toMatchObject({
      state: 'refused',
      reason: `${directory}: a read-only filesystem (EROFS)`,
    });
    // Node's recursive mkdir says ENOENT there, as if a parent were missing.
    const deeper = join(directory, 'new', 'sessions.db');
    const refusal = {
      state: 'refused',
      reason: `${directory}: a read-only filesystem (EROFS)`,
      cause: expect.objectContaining({ code: 'EROFS' }),
    };
    expect(await SqliteStore.probe({ path: deeper })).toEqual(refusal);
    const uncreatable = await openError(deeper);
    expect(uncreatable.message).toBe(
      `Cannot open SQLite database ${deeper}: cannot create its directory ${join(directory, 'new')}: ${refusal.reason}`,
    );
    expect(uncreatable.cause).toMatchObject({ code: 'EROFS' });
    expect(readdirSync(directory)).toEqual(['sessions.db']);
  });

  it("probe on an app's connection: absent until open adds the table, present after", async () => {
    const path = join(root, 'app-connection.db');
    const database = new Database(path);
    try {
      database.exec('CREATE TABLE users (id INTEGER PRIMARY KEY)');
      expect(await SqliteStore.probe({ database })).toEqual({
        state: 'absent',
        reason: "the database has no 'sessions' table",
      });
      expect(await SqliteStore.probe({ database, table: 'users' })).toMatchObject({
        state: 'refused',
        reason: expect.stringContaining('users'),
      });
      await (await SqliteStore.open({ database })).close();
      expect(await SqliteStore.probe({ database })).toEqual({ state: 'present' });
    } finally {
      database.close();
    }
  });

  it('in missing directories: probe answers absent creating nothing, and open makes them', async () => {
    const top = join(root, 'made');
    const path = join(top, 'by', 'open', 'sessions.db');
    expect(await SqliteStore.probe({ path })).toEqual({
      state: 'absent',
      reason: `${path} does not exist, nor does its directory ${join(top, 'by', 'open')}`,
    });
    expect(existsSync(top)).toBe(false);
    const store = await SqliteStore.open({ path });
    await store.set('made-by-open-0000', {
      data: Buffer.from('x'),
      expiresAt: Date.now() + 60_000,
    });
    await store.close();
    const reopened = await SqliteStore.open({ path });
    expect(await reopened.count()).toBe(1);
    await reopened.close();
    expect(await SqliteStore.probe({ path })).toEqual({ state: 'present' });
  });

  it('missing directories it cannot make: probe and open refuse, naming the path and the reason, with the cause', async () => {
    const target = join(root, 'nowhere');
    const link = join(root, 'dangling');
    symlinkSync(target, link);
    const path = join(link, 'sub', 'sessions.db');
    const reason = `${link} is a symbolic link to a missing directory (${target})`;
    expect(await SqliteStore.probe({ path })).toEqual({ state: 'refused', reason });
    const error = await openError(path);
    expect(error.message).toBe(
      `Cannot open SQLite database ${path}: cannot create its directory ${join(link, 'sub')}: ${reason}`,
    );
    expect(error.cause).toMatchObject({ code: 'ENOTDIR' });
    expect(existsSync(target)).toBe(false);
  });

  it('a symbolic link (or a chain) to a file in a missing directory: probe and open refuse, naming the link and its target', async () => {
    const target = join(root, 'nowhere-too', 'sessions.db');
    const link = join(root, 'link-to-nowhere.db');
    const chain = join(root, 'link-to-link.db');
    symlinkSync(target, link);
    symlinkSync(link, chain);
    for (const path of [link, chain]) {
      const reason = `it is a symbolic link to ${target}, whose directory ${dirname(target)} does not exist`;
      expect(await SqliteStore.probe({ path })).toEqual({
        state: 'refused',
        reason: `${path}: ${reason}`,
        cause: expect.objectContaining({ code: 'ENOENT' }),
      });
      // SQLite follows the link and says only "unable to open database file".
      const error = await openError(path);
      expect(error.message).toBe(`Cannot open SQLite database ${path}: ${reason}`);
      expect(error.cause).toMatchObject({ code: 'ENOENT' });
    }
    expect(existsSync(dirname(target))).toBe(false);
  });

  it('under a file: names the path and the directory', async () => {
    const file = join(root, 'a-file');
    writeFileSync(file, 'not a directory');
    const underFile = join(file, 'sessions.db');
    expect((await openError(underFile)).message).toContain(
      `Cannot open SQLite database ${underFile}: ${file} is not a directory`,
    );
    const deeper = join(file, 'sub', 'sessions.db');
    expect((await openError(deeper)).message).toContain(
      `Cannot open SQLite database ${deeper}: its directory ${join(file, 'sub')} does not exist: part of it is a file`,
    );
  });

  it.runIf(process.getuid?.() === 0)(
    'in a directory this process may not write to: names the path and the permission',
    async () => {
      chmodSync(root, 0o755);
      const directory = join(root, 'root-only');
      mkdirSync(directory, { mode: 0o755 });
      const path = join(directory, 'sessions.db');
      // nobody: root's directory is readable but not writable to it.
      const [outcome] = await openInChild([path], 65534);
      expect(outcome).toEqual({
        path,
        code: 'ERR_STORE_IO',
        message: expect.stringContaining(
          `Cannot open SQLite database ${path}: its directory ${directory} is read-only to this process (permission denied)`,
        ),
      });
    },
    60_000,
  );

  it.runIf(process.getuid?.() === 0)(
    'missing directories under one this process may not write to: probe and open refuse, naming the permission',
    async () => {
      chmodSync(root, 0o755);
      const directory = join(root, 'root-only-above');
      mkdirSync(directory, { mode: 0o755 });
      const path = join(directory, 'new', 'sessions.db');
      const reason = `${directory}: permission denied (EACCES)`;
      const [outcome] = await openInChild([path], 65534);
      expect(outcome).toEqual({
        path,
        code: 'ERR_STORE_IO',
        message: `Cannot open SQLite database ${path}: cannot create its directory ${join(directory, 'new')}: ${reason}`,
      });
      expect(readdirSync(directory)).toEqual([]);
    },
    60_000,
  );

  it.runIf(process.getuid?.() === 0)(
    'a file this process may not write: refused at open, naming the path and the permission, by path and as an app connection',
    async () => {
      chmodSync(root, 0o755);
      // The directory is writable to everyone, so only the file itself is read-only to nobody.
      const directory = join(root, 'shared');
      mkdirSync(directory);
      chmodSync(directory, 0o777);
      const path = join(directory, 'sessions.db');
      const created = await SqliteStore.open({ path });
      await created.close();
      chmodSync(path, 0o644);
      // SQLite opens such a file read-only without a word; the store's first write would fail.
      const given = [path, `database:${path}`];
      const outcomes = await openInChild(given, 65534);
      expect(outcomes).toEqual(
        given.map((as) => ({
          path: as,
          code: 'ERR_STORE_IO',
          message: expect.stringContaining(
            `Cannot open SQLite database ${path}: this process may not read and write it (permission denied)`,
          ),
        })),
      );
    },
    60_000,
  );

  it.runIf(process.platform === 'linux')(
    'paths under /proc and /sys, a FIFO and a device end in ERR_STORE_IO naming the path, creating nothing',
    async () => {
      const fifo = join(root, 'fifo');
      execFileSync('mkfifo', [fifo]);
      const expected: [path: string, reason: string][] = [
        ['/proc/self/status', 'it is on a proc filesystem'],
        ['/proc/self/sessions.db', 'it is on a proc filesystem'],
        ['/proc/sessions/sessions.db', 'it is on a proc filesystem'],
        ['/sys/kernel/sessions.db', 'it is on a sysfs filesystem'],
        // Opening a FIFO for reading waits for a writer forever.
        [fifo, 'it is a FIFO, not a regular file'],
        ['/dev/null', 'it is a character device, not a regular file'],
      ];
      const outcomes = await openInChild(expected.map(([path]) => path));
      expect(outcomes).toEqual(
        expected.map(([path, reason]) => ({
          path,
          code: 'ERR_STORE_IO',
          message: expect.stringContaining(`Cannot open SQLite database ${path}: ${reason}`),
        })),
      );
      expect(readdirSync(root).filter((name) => name.startsWith('fifo'))).toEqual(['fifo']);
    },
    60_000,
  );
});
