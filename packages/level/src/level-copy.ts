import { copyFile, link, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AbstractLevel } from 'abstract-level';
import { ClassicLevel } from 'classic-level';
import { LEVELDB_FILE } from './open-path.js';

type Bytes = Uint8Array<ArrayBufferLike>;

/** LevelDB's own lock and its log of messages: a copy needs neither. */
const NOT_COPIED = new Set(['LOCK', 'LOG', 'LOG.old']);

/**
 * Runs `read` on a copy of the LevelDB database at `path`, which stays as it was: opening a
 * LevelDB database writes in its directory (a new log, a new manifest, the message log), so
 * reading its keys without a change takes a copy. The copy links the files where the
 * temporary directory is on the same filesystem, as LevelDB never changes a file it has
 * written, and copies them elsewhere; it is removed afterwards.
 */
export async function readCopyOf<T>(
  path: string,
  read: (db: AbstractLevel<unknown, Bytes, Bytes>) => Promise<T>,
): Promise<T> {
  const copy = await mkdtemp(join(tmpdir(), 'sessile-level-copy-'));
  try {
    for (const name of await readdir(path)) {
      if (NOT_COPIED.has(name) || !LEVELDB_FILE.test(name)) continue;
      await linkOrCopy(join(path, name), join(copy, name));
    }
    const db = new ClassicLevel<Bytes, Bytes>(copy, {
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
    await rm(copy, { recursive: true, force: true });
  }
}

async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // A compaction of the process that holds the database removed a file it no longer needs.
    if (code === 'ENOENT') return;
    if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw error;
    await copyFile(from, to);
  }
}
