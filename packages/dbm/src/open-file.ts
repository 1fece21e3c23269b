import { randomBytes } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants,
  fstatSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  realpathSync,
  type Stats,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { isSessionError, type SessionError } from '@sessile/core';
import { errorCode, errorMessage, fileKindOf, pseudoFilesystemOf } from '@sessile/core/store';
import { cannotOpen } from './errors.js';
import { MAX_STRIPES } from './options.js';
import { STRIPES_DIRECTORY } from './striped-file-locks.js';

const OPEN_FLAGS = constants.O_RDWR | constants.O_NONBLOCK;

/** Why `open` refuses a symbolic link to a missing file, and `probe` with it. */
export const DANGLING_LINK = 'it is a symbolic link to a missing file';

/**
 * Opens the database file for reading and writing, creating it (mode 0600) when missing. Before
 * a byte is read, refuses with `ERR_STORE_IO` naming the path whatever cannot hold a database:
 * anything but a regular file (a directory, a device, a FIFO, a socket), a file on a kernel
 * pseudo-filesystem such as `/proc`, and a missing file whose directory is missing, on such a
 * filesystem, or not writable. The type is checked with `stat` before opening, so no device is
 * ever opened, and again with `fstat` on the descriptor (opened `O_NONBLOCK`), so a file swapped
 * in between is refused too. Returns the descriptor.
 */
export function openDatabaseFile(path: string): number {
  for (let attempt = 0; ; attempt++) {
    const existing = statIfPresent(path);
    let fd: number;
    if (existing !== undefined) {
      assertRegularFile(path, existing);
      assertStorage(path, path);
      try {
        fd = openSync(path, OPEN_FLAGS);
      } catch (error) {
        if (errorCode(error) === 'ENOENT' && attempt === 0) continue;
        throw cannotOpen(path, errorMessage(error), error);
      }
    } else {
      assertCreatable(path);
      try {
        fd = openSync(path, OPEN_FLAGS | constants.O_CREAT | constants.O_EXCL, 0o600);
      } catch (error) {
        // Another process created it since, or the path is a symbolic link to a missing file.
        if (errorCode(error) === 'EEXIST' && attempt === 0) continue;
        const reason = isDanglingLink(path) ? DANGLING_LINK : errorMessage(error);
        throw cannotOpen(path, reason, error);
      }
    }
    try {
      assertRegularFile(path, fstatSync(fd));
      return fd;
    } catch (error) {
      closeSync(fd);
      throw isSessionError(error) ? error : cannotOpen(path, errorMessage(error), error);
    }
  }
}

/**
 * The path of the file open as `fd`, symlinks resolved, named as `path` was. Refused when `path`
 * no longer names that file (replaced since it was opened).
 */
export function realPathOf(path: string, fd: number): string {
  let real: string;
  let stats: Stats;
  try {
    real = realpathSync(path);
    stats = statSync(real);
  } catch (error) {
    throw cannotOpen(path, errorMessage(error), error);
  }
  const opened = fstatSync(fd);
  if (stats.ino !== opened.ino || stats.dev !== opened.dev) {
    throw cannotOpen(path, 'it was replaced by another file while it was being opened');
  }
  return real;
}

/** True when `directory` exists and is a directory. */
export function isDirectory(directory: string): boolean {
  try {
    return statSync(directory).isDirectory();
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return false;
    throw error;
  }
}

/**
 * Creates the lock directory of the file at `path` unless it exists. Not recursive: the file's
 * own directory exists, and Node's recursive `mkdir` never returns on some `/proc` paths.
 */
export function ensureLockDirectory(path: string, directory: string): void {
  try {
    // Only the file's owner may use the file (0o600), so only it may take or watch its locks.
    mkdirSync(directory, { mode: DIRECTORY_MODE });
  } catch (error) {
    if (errorCode(error) !== 'EEXIST') {
      throw cannotOpen(path, `cannot create its lock directory: ${errorMessage(error)}`, error);
    }
    if (!isDirectory(directory)) throw notADirectory(path, directory);
  }
}

/** Where the lock directory records the stripe count that every process on the file uses. */
export const STRIPE_COUNT_FILE = 'stripe-count';
/** Where the holder files of the lock directory's guards and leases go. */
export const HOLDERS_DIRECTORY = 'holders';

/** What `checkLockDirectory` found: whether the directory is there, and the count to use if recorded. */
export interface LockDirectoryState {
  exists: boolean;
  stripes: number | undefined;
}

/**
 * Whether `open` may use `directory` as the lock directory of the file at `path` with `stripes`
 * (`given` false when that is only the default), read without creating or changing anything:
 * refuses with `open`'s own error a lock directory, or a directory of its lock files, that is
 * not a directory, one this process may not create or write in, and a recorded stripe count it
 * cannot read or that differs. `open` runs it before it makes or records anything there, and
 * `probe` runs it alone, so the two refuse alike.
 */
export function checkLockDirectory(
  path: string,
  directory: string,
  stripes: number,
  given: boolean,
): LockDirectoryState {
  let stats: Stats;
  try {
    stats = statSync(directory);
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') {
      throw cannotOpen(path, `cannot read its lock directory: ${errorMessage(error)}`, error);
    }
    assertWritable(path, dirname(directory), 'cannot create its lock directory');
    return { exists: false, stripes: undefined };
  }
  if (!stats.isDirectory()) throw notADirectory(path, directory);
  for (const name of [HOLDERS_DIRECTORY, STRIPES_DIRECTORY]) {
    const inside = join(directory, name);
    const found = statIfPresent(inside);
    if (found !== undefined && !found.isDirectory()) throw notADirectory(path, inside);
  }
  assertWritable(path, directory, 'cannot write in its lock directory');
  const file = join(directory, STRIPE_COUNT_FILE);
  const text = recordedStripes(path, file);
  return {
    exists: true,
    stripes: text === undefined ? undefined : agreedStripes(path, file, text, stripes, given),
  };
}

/**
 * The stripe count every process on the file uses: `stripes` is recorded when none is yet; a
 * recorded count is judged as `checkLockDirectory` judges it. Two processes with different
 * counts map one session to two lock files, and both would hold its lock.
 */
export function agreeOnStripes(
  path: string,
  directory: string,
  stripes: number,
  given: boolean,
): number {
  const file = join(directory, STRIPE_COUNT_FILE);
  // Read first: a count recorded already needs no draft, whose write fails on a full disk.
  const found = recordedStripes(path, file) ?? recordStripes(path, directory, file, stripes);
  return found === undefined ? stripes : agreedStripes(path, file, found, stripes, given);
}

/**
 * The count to use given the `text` of a stripe count file: it must be `stripes`, or any valid
 * count when `stripes` is only the default (`given` false).
 */
function agreedStripes(
  path: string,
  file: string,
  text: string,
  stripes: number,
  given: boolean,
): number {
  const trimmed = text.trim();
  const recorded = Number(trimmed);
  if (recorded === stripes) return stripes;
  if (!given && /^\d+$/.test(trimmed) && recorded >= 2 && recorded <= MAX_STRIPES) return recorded;
  throw cannotOpen(
    path,
    `it is used with stripes: ${trimmed} (${file}), not ${stripes}; every process on one file must use the same count`,
  );
}

/** The stripe count file's text, or undefined when there is none yet. */
function recordedStripes(path: string, file: string): string | undefined {
  try {
    return readFileSync(file, 'latin1');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw cannotOpen(path, `cannot read its stripe count: ${errorMessage(error)}`, error);
  }
}

/**
 * Records `stripes` as the file's count, linked into place whole so no process reads it
 * half-written; undefined when this call recorded it, else the count another process recorded
 * first.
 */
function recordStripes(
  path: string,
  directory: string,
  file: string,
  stripes: number,
): string | undefined {
  const draft = join(
    directory,
    `${STRIPE_COUNT_FILE}.${process.pid}.${randomBytes(6).toString('hex')}`,
  );
  try {
    writeFileSync(draft, `${stripes}\n`, { mode: 0o600 });
    try {
      linkSync(draft, file);
      return undefined;
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') throw error;
    } finally {
      unlinkSync(draft);
    }
  } catch (error) {
    throw cannotOpen(path, `cannot record its stripe count: ${errorMessage(error)}`, error);
  }
  return readFileSync(file, 'latin1');
}

function notADirectory(path: string, directory: string): SessionError {
  return cannotOpen(path, `${directory}, where its lock files go, is not a directory`);
}

/** Refuses, as `what`, a directory this process may not make entries in. */
function assertWritable(path: string, directory: string, what: string): void {
  try {
    accessSync(directory, constants.W_OK | constants.X_OK);
  } catch (error) {
    throw cannotOpen(path, `${what}: ${errorMessage(error)}`, error);
  }
}

function statIfPresent(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw cannotOpen(path, errorMessage(error), error);
  }
}

function assertRegularFile(path: string, stats: Stats): void {
  if (!stats.isFile()) throw cannotOpen(path, `it is ${fileKindOf(stats)}, not a regular file`);
}

/** Refuses a path whose file, or the directory it would be created in (`where`), is on a pseudo-filesystem. */
function assertStorage(path: string, where: string): void {
  const pseudo = pseudoFilesystemOf(where);
  if (pseudo !== undefined) {
    throw cannotOpen(
      path,
      `it is on a ${pseudo} filesystem, whose files are kernel interfaces, not storage`,
    );
  }
}

/** Mode of the directories made above a new file: its owner's only, as the file is 0600. */
const DIRECTORY_MODE = 0o700;

/**
 * Refuses to create the file where it could not live or could not be created; makes its
 * directory (mode `DIRECTORY_MODE`, and any missing above it) when that is missing.
 */
function assertCreatable(path: string): void {
  const directory = dirname(path);
  if (missingDirectory(directory)) {
    assertDirectoryCreatable(path, directory);
    try {
      mkdirSync(directory, { recursive: true, mode: DIRECTORY_MODE });
    } catch (error) {
      throw cannotOpen(
        path,
        `it does not exist, and its directory ${directory} cannot be created: ${errorMessage(error)}`,
        error,
      );
    }
  }
  let stats: Stats;
  try {
    stats = statSync(directory);
  } catch (error) {
    throw cannotOpen(
      path,
      `it does not exist, and its directory cannot be read: ${errorMessage(error)}`,
      error,
    );
  }
  if (!stats.isDirectory()) {
    throw cannotOpen(path, `it does not exist, and ${directory} is not a directory`);
  }
  assertStorage(path, directory);
  try {
    accessSync(directory, constants.W_OK | constants.X_OK);
  } catch (error) {
    throw cannotOpen(
      path,
      `it does not exist, and its directory ${directory} is not writable: ${errorMessage(error)}`,
      error,
    );
  }
}

/** True when `directory` is missing; other failures to read it are left to the checks after. */
export function missingDirectory(directory: string): boolean {
  try {
    statSync(directory);
    return false;
  } catch (error) {
    return errorCode(error) === 'ENOENT';
  }
}

/**
 * Refuses, before anything is made, a missing `directory` that `open` could not make: on a kernel
 * pseudo-filesystem (where Node's recursive `mkdir` may never return), below a file or a
 * symbolic link to a missing directory, or where the nearest directory above it that is there
 * may not be written.
 */
export function assertDirectoryCreatable(path: string, directory: string): void {
  assertStorage(path, directory);
  const cannot = `it does not exist, and its directory ${directory} cannot be created`;
  for (let at = dirname(directory); ; at = dirname(at)) {
    let stats: Stats;
    try {
      stats = lstatSync(at);
    } catch (error) {
      if (errorCode(error) === 'ENOENT' && dirname(at) !== at) continue;
      throw cannotOpen(path, `${cannot}: ${errorMessage(error)}`, error);
    }
    if (stats.isSymbolicLink()) {
      const target = statIfPresent(at);
      if (target === undefined) {
        throw cannotOpen(path, `${cannot}: ${at} is a symbolic link to a missing directory`);
      }
      stats = target;
    }
    if (!stats.isDirectory()) throw cannotOpen(path, `${cannot}: ${at} is not a directory`);
    assertWritable(path, at, cannot);
    return;
  }
}

/** Whether `path` is a symbolic link to nothing, which `openDatabaseFile` refuses to create through. */
export function isDanglingLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink() && statIfPresent(path) === undefined;
  } catch {
    return false;
  }
}
