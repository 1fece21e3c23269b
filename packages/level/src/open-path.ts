import { constants } from 'node:fs';
import { access, mkdir, readdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { SessionError } from '@sessile/core';
import {
  danglingLinkAbove,
  otherFilesIn,
  pseudoFilesystemOf,
  ResourceClaims,
  type StoreDirectoryRules,
} from '@sessile/core/store';
import { describeError, hasCode } from './level-handle.js';

/**
 * Refuses a path on a kernel pseudo-filesystem such as `/proc` before LevelDB creates anything
 * there: its files are not storage, and the recursive `mkdir` LevelDB's open starts with never
 * returns on some of its paths.
 */
export function assertStoragePath(path: string): void {
  const pseudo = pseudoFilesystemOf(path);
  if (pseudo === undefined) return;
  throw new SessionError(
    'ERR_STORE_IO',
    `Cannot open LevelDB directory ${path}: it is on a ${pseudo} filesystem, whose files are kernel interfaces, not storage`,
  );
}

/** The names LevelDB gives its own files (leveldb's `ParseFileName`). */
export const LEVELDB_FILE =
  /^(?:CURRENT|LOCK|LOG|LOG\.old|MANIFEST-\d+|\d+\.(?:log|ldb|sst|dbtmp))$/;

/** How `LevelStore.probe` tells a LevelDB directory. */
export const LEVELDB_DIRECTORY: StoreDirectoryRules = {
  kind: 'a LevelDB database',
  isStore: (names) => names.includes('CURRENT'),
  isOwnFile: (name) => LEVELDB_FILE.test(name),
};

/**
 * Refuses an existing directory that holds other files and is not a LevelDB database, before
 * LevelDB creates one among them (an app's data or home directory), where removing the sessions
 * directory would remove the app's files too. A directory holding only LevelDB's own files is
 * one whose creation was interrupted, or that another process is creating right now.
 */
export async function assertLevelDirectory(path: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(path);
  } catch {
    // Missing, not a directory, or unreadable: LevelDB's open creates it or says why it cannot.
    return;
  }
  const shown = otherFilesIn(names, LEVELDB_DIRECTORY);
  if (shown === undefined) return;
  throw new SessionError(
    'ERR_STORE_IO',
    `Cannot open LevelDB directory ${path}: it holds other files (${shown}) and is not a LevelDB database (no CURRENT file); pass a new or empty directory`,
  );
}

/** The LevelDB directories open stores of this process use, by device and inode. */
const claimed = new ResourceClaims();
const DIRECTORIES = {};

/**
 * Claims the directory at `location` for one open store of this process, making it first as
 * classic-level's open would. LevelDB's own lock never refuses the process that holds it (an
 * fcntl lock) and its in-process check compares path names, so a second store naming the
 * directory through a symbolic link or a bind mount would open it too, and each would delete
 * the other's log and tables. Resolves to the release, or `undefined` when another open store
 * of this process holds the directory; a path that cannot be made a directory claims nothing,
 * and LevelDB's open then says why.
 */
export async function claimDirectory(location: string): Promise<(() => void) | undefined> {
  try {
    await mkdir(location, { recursive: true });
    const stats = await stat(location);
    if (!stats.isDirectory()) return () => {};
    return claimed.claim(DIRECTORIES, `${stats.dev}:${stats.ino}`);
  } catch {
    return () => {};
  }
}

/** The refusal of a directory another open store of this process holds, under any name. */
export function heldInProcess(path: string): SessionError {
  return new SessionError(
    'ERR_STORE_BUSY',
    `LevelDB directory ${path} is locked: another open store in this process holds it (perhaps under another name, through a symbolic link). LevelDB allows one process per directory; use @sessile/sqlite or @sessile/file to share sessions between processes`,
  );
}

/**
 * Names the path and the real reason when LevelDB refuses to open: a directory another process
 * holds, a path that is not a directory, or the deepest cause, which classic-level wraps in a
 * bare "Database failed to open".
 */
export async function openError(error: unknown, path: string): Promise<SessionError> {
  if (hasCode(error, 'LEVEL_LOCKED')) {
    return new SessionError(
      'ERR_STORE_BUSY',
      `LevelDB directory ${path} is locked: another process (or another open store in this process) holds it. LevelDB allows one process per directory; use @sessile/sqlite or @sessile/file to share sessions between processes`,
      { cause: error },
    );
  }
  const reason = describeError(error);
  let missing = false;
  const kind = await stat(path).then(
    (stats) =>
      stats.isDirectory() ? undefined : stats.isFile() ? 'a regular file' : 'a special file',
    (statError: NodeJS.ErrnoException) => {
      missing = statError.code === 'ENOENT';
      return undefined;
    },
  );
  const blocked = missing
    ? ((await danglingLinkAbove(path)) ?? (await uncreatable(path)))
    : undefined;
  const what =
    kind !== undefined
      ? `it is ${kind}, not a directory (${reason})`
      : blocked !== undefined
        ? `${blocked} (${reason})`
        : reason;
  return new SessionError('ERR_STORE_IO', `Cannot open LevelDB directory ${path}: ${what}`, {
    cause: error,
  });
}

/**
 * Why a missing directory at `path` cannot be created, from its nearest existing ancestor, or
 * `undefined`. Node's recursive mkdir reports ENOENT on a read-only filesystem, as if a parent
 * directory were missing.
 */
async function uncreatable(path: string): Promise<string | undefined> {
  let current = resolve(path);
  for (;;) {
    const parent = dirname(current);
    if (parent === current) return undefined;
    current = parent;
    try {
      if (!(await stat(current)).isDirectory()) return undefined;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      return undefined;
    }
    try {
      await access(current, constants.W_OK | constants.X_OK);
      return undefined;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EROFS') {
        return `its parent directory ${current} is on a read-only filesystem, where LevelDB cannot create it`;
      }
      if (code === 'EACCES' || code === 'EPERM') {
        return `this process may not create it in its parent directory ${current} (permission denied)`;
      }
      return undefined;
    }
  }
}
