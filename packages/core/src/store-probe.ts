import { constants, type Stats } from 'node:fs';
import { access, lstat, readdir, readlink, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { errorMessage, fileKindOf, pseudoFilesystemOf } from './util.js';

/**
 * What a store class's static `probe(options)` found where those options point, having created
 * and changed nothing there:
 * - `'present'`: a store is there, which `open()` opens as it is;
 * - `'absent'`: no store is there yet, and `open()` would make one; `reason` says what is there;
 * - `'refused'`: `open()` would fail; `reason` says why, and `cause` keeps the error behind it.
 *
 * Each `reason` names the path or the table. A tool that must not create a store (a command that
 * only reads, a dry run) asks this first: the store's own rules answer, not a copy of them.
 */
export type StoreProbe =
  | { readonly state: 'present' }
  | { readonly state: 'absent'; readonly reason: string }
  | { readonly state: 'refused'; readonly reason: string; readonly cause?: unknown };

/** The root of a new ext4 filesystem holds it; no store counts it as another file. */
const LOST_AND_FOUND = 'lost+found';

function errnoOf(error: unknown): string {
  return (error as NodeJS.ErrnoException | undefined)?.code ?? 'EIO';
}

function insideAFile(path: string, cause?: unknown): StoreProbe {
  const reason = `${path} is inside a file, not a directory`;
  return cause === undefined ? { state: 'refused', reason } : { state: 'refused', reason, cause };
}

/** A refusal for a filesystem call that failed at `path`, naming it and the errno. */
function failedAt(path: string, error: unknown): StoreProbe {
  const code = errnoOf(error);
  const why =
    code === 'EACCES' || code === 'EPERM'
      ? 'permission denied'
      : code === 'EROFS'
        ? 'a read-only filesystem'
        : errorMessage(error);
  return { state: 'refused', reason: `${path}: ${why} (${code})`, cause: error };
}

/** Whether this process may make entries in the directory `path`; a refusal naming it if not. */
async function writableDirectory(path: string): Promise<StoreProbe | undefined> {
  try {
    await access(path, constants.W_OK | constants.X_OK);
    return undefined;
  } catch (error) {
    return failedAt(path, error);
  }
}

/**
 * Where a recursive `mkdir(path)` would make directories: `'absent'` when the nearest directory
 * above `path` that is there may be written, else why it may not (a file in the way, no right,
 * a read-only filesystem).
 */
async function creatableDirectory(path: string): Promise<StoreProbe> {
  for (let at = dirname(resolve(path)); ; at = dirname(at)) {
    let stats: Stats;
    try {
      stats = await stat(at);
    } catch (error) {
      const code = errnoOf(error);
      if (code === 'ENOTDIR') return insideAFile(path, error);
      if (code !== 'ENOENT' || dirname(at) === at) return failedAt(at, error);
      continue;
    }
    if (!stats.isDirectory()) return insideAFile(path);
    return (await writableDirectory(at)) ?? { state: 'absent', reason: `${path} does not exist` };
  }
}

/** Refuses a path on a kernel pseudo-filesystem, as every store's `open()` does. */
function onPseudoFilesystem(path: string): StoreProbe | undefined {
  const pseudo = pseudoFilesystemOf(path);
  if (pseudo === undefined) return undefined;
  return {
    state: 'refused',
    reason: `${path} is on a ${pseudo} filesystem, whose files are kernel interfaces, not storage`,
  };
}

/** How a store kept in a directory tells its own directory, for `probeStoreDirectory`. */
export interface StoreDirectoryRules {
  /** What the store is, for reasons: `'a file store'`, `'a LevelDB database'`. */
  kind: string;
  /** True when the directory's entries show a store is there. */
  isStore(names: readonly string[]): boolean;
  /** True for an entry the store's own creation leaves (an interrupted one): not another file. */
  isOwnFile?(name: string): boolean;
}

/**
 * The files in a directory, whose entries are `names`, that are not the store's: `undefined` when
 * the entries show the store is there, or hold nothing but its own files (an interrupted
 * creation) and `lost+found`; else the first three of the others in order, for a message (a
 * name that may hold a session id by its start and length only). A
 * store's `open()` refuses such a directory, as its `probe` does, before making a store among an
 * app's files, where removing the sessions would remove them too.
 */
export function otherFilesIn(
  names: readonly string[],
  rules: StoreDirectoryRules,
): string | undefined {
  if (rules.isStore(names)) return undefined;
  const others = names
    .filter((name) => name !== LOST_AND_FOUND && !(rules.isOwnFile?.(name) ?? false))
    .sort();
  if (others.length === 0) return undefined;
  return others.slice(0, 3).map(shownName).join(', ') + (others.length > 3 ? ', …' : '');
}

/** 24 or more characters a session id is made of, in a row: a name that may hold one. */
const ID_LIKE = /[A-Za-z0-9_-]{24}/;

/**
 * A file name as a message shows it: one that may hold a session id (another store's session
 * file, `<id>.json`) by its start and length only, as ids are never quoted in messages.
 */
function shownName(name: string): string {
  return ID_LIKE.test(name) ? `${name.slice(0, 4)}… (${name.length} characters)` : name;
}

/**
 * `probe` for a store kept in a directory that its `open()` makes, with its parents, where it is
 * missing, and takes where it is empty or holds only the store's own files: refused where the
 * path is not a directory, the directory holds other files, or this process may not write in it
 * (a read-only filesystem, no permission), store or not.
 */
export async function probeStoreDirectory(
  path: string,
  rules: StoreDirectoryRules,
): Promise<StoreProbe> {
  const pseudo = onPseudoFilesystem(path);
  if (pseudo !== undefined) return pseudo;
  let names: string[];
  try {
    const stats = await stat(path);
    if (!stats.isDirectory()) {
      return { state: 'refused', reason: `${path} is ${fileKindOf(stats)}, not a directory` };
    }
    names = await readdir(path);
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return creatableDirectory(path);
    if (errnoOf(error) === 'ENOTDIR') return insideAFile(path, error);
    return failedAt(path, error);
  }
  // Opening a store writes in its directory (a lock, a log, a probe file) as making one does.
  if (rules.isStore(names)) return (await writableDirectory(path)) ?? { state: 'present' };
  const shown = otherFilesIn(names, rules);
  if (shown !== undefined) {
    return {
      state: 'refused',
      reason: `${path} holds other files (${shown}) and is not ${rules.kind}`,
    };
  }
  return (
    (await writableDirectory(path)) ?? {
      state: 'absent',
      reason: `${path} is an empty directory, not ${rules.kind} yet`,
    }
  );
}

/**
 * `probe` for a store kept in one file that its `open()` creates in a directory that is there:
 * `'absent'` when `path` is missing and its directory may be written. `undefined` when a regular
 * file is there, which the store examines itself; refused for anything else.
 */
export async function probeStoreFile(path: string): Promise<StoreProbe | undefined> {
  const pseudo = onPseudoFilesystem(path);
  if (pseudo !== undefined) return pseudo;
  try {
    const stats = await stat(path);
    if (stats.isFile()) return undefined;
    return { state: 'refused', reason: `${path} is ${fileKindOf(stats)}, not a regular file` };
  } catch (error) {
    if (errnoOf(error) === 'ENOTDIR') return insideAFile(path, error);
    if (errnoOf(error) !== 'ENOENT') return failedAt(path, error);
  }
  const directory = dirname(resolve(path));
  try {
    const stats = await stat(directory);
    if (!stats.isDirectory()) {
      return { state: 'refused', reason: `${directory} is ${fileKindOf(stats)}, not a directory` };
    }
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') {
      return {
        state: 'refused',
        reason: `its directory ${directory} does not exist`,
        cause: error,
      };
    }
    return failedAt(directory, error);
  }
  return (
    (await writableDirectory(directory)) ?? { state: 'absent', reason: `${path} does not exist` }
  );
}

/**
 * Why a missing directory at `path` cannot be made when a symbolic link to a missing directory
 * is at it or above it (a recursive `mkdir` does not make a link's target; it reports ENOENT),
 * or `undefined`. The nearest thing there decides.
 */
export async function danglingLinkAbove(path: string): Promise<string | undefined> {
  for (let at = resolve(path); dirname(at) !== at; at = dirname(at)) {
    const entry = await lstat(at).catch(() => undefined);
    if (entry === undefined) continue;
    if (!entry.isSymbolicLink() || (await stat(at).catch(() => undefined)) !== undefined) {
      return undefined;
    }
    return `${at} is a symbolic link to a missing directory (${await readlink(at)})`;
  }
  return undefined;
}
