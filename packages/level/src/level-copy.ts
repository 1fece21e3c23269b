import { copyFile, link, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { AbstractLevel } from 'abstract-level';
import { ClassicLevel } from 'classic-level';
import { LEVELDB_FILE } from './open-path.js';

type Bytes = Uint8Array<ArrayBufferLike>;

/** LevelDB's own lock and its log of messages: a copy needs neither. */
const NOT_COPIED = new Set(['LOCK', 'LOG', 'LOG.old']);

/**
 * The most a copy of a database's files may take where they cannot be linked: a store of
 * millions of sessions must not be copied whole into a temporary directory held in memory.
 */
export const MAX_COPIED_BYTES = 64 * 1024 * 1024;

/**
 * Runs `read` on a copy of the LevelDB database at `path`, which stays as it was: opening a
 * LevelDB database writes in its directory (a new log, a new manifest, the message log), so
 * reading its keys without a change takes a copy. The copy links the files, as LevelDB never
 * changes a file it has written: in the temporary directory, or where that is on another
 * filesystem, in a hidden directory beside the database. Where neither can link, the files are
 * copied into the temporary directory when they come to at most `MAX_COPIED_BYTES`; otherwise
 * `read` is not run and the answer is `undefined`. The copy is removed afterwards.
 */
export async function readCopyOf<T>(
  path: string,
  read: (db: AbstractLevel<unknown, Bytes, Bytes>) => Promise<T>,
): Promise<T | undefined> {
  const names = (await readdir(path)).filter(
    (name) => !NOT_COPIED.has(name) && LEVELDB_FILE.test(name),
  );
  const places = [tmpdir(), dirname(path)];
  for (const place of places) {
    const copied = await inCopy(path, names, place, false, read);
    if (copied !== NOT_LINKED) return copied;
  }
  let bytes = 0;
  for (const name of names)
    bytes += (await stat(join(path, name)).catch(() => undefined))?.size ?? 0;
  if (bytes > MAX_COPIED_BYTES) return undefined;
  const copied = await inCopy(path, names, tmpdir(), true, read);
  return copied === NOT_LINKED ? undefined : copied;
}

const NOT_LINKED = Symbol('not linked');

/** `read` on a copy of `names` in a new directory in `place`, or `NOT_LINKED` where a file could not be linked there (and `copy` is false) or no directory could be made. */
async function inCopy<T>(
  path: string,
  names: readonly string[],
  place: string,
  copy: boolean,
  read: (db: AbstractLevel<unknown, Bytes, Bytes>) => Promise<T>,
): Promise<T | typeof NOT_LINKED> {
  const copyDirectory = await mkdtemp(join(place, '.sessile-level-copy-')).catch(() => undefined);
  if (copyDirectory === undefined) return NOT_LINKED;
  try {
    for (const name of names) {
      if (!(await linkOrCopy(join(path, name), join(copyDirectory, name), copy))) return NOT_LINKED;
    }
    const db = new ClassicLevel<Bytes, Bytes>(copyDirectory, {
      createIfMissing: false,
      keyEncoding: 'view',
      valueEncoding: 'view',
    });
    await db.open();
    try {
      return await read(db as unknown as AbstractLevel<unknown, Bytes, Bytes>);
    } finally {
      await db.close();
    }
  } finally {
    await rm(copyDirectory, { recursive: true, force: true });
  }
}

/** Links `from` to `to`, or copies it when `copy` is true; false where it could not be linked. */
async function linkOrCopy(from: string, to: string, copy: boolean): Promise<boolean> {
  try {
    await link(from, to);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // A compaction of the process that holds the database removed a file it no longer needs.
    if (code === 'ENOENT') return true;
    if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK' && code !== 'EACCES') throw error;
    if (!copy) return false;
    await copyFile(from, to);
    return true;
  }
}
