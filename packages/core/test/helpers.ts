import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmdirSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSessionError, type SessionLock } from '../src/index.js';
import {
  HostGuards,
  LeaseFiles,
  type LeaseFilesInit,
  LeaseLock,
  syncLockFileSystem,
} from '../src/store.js';

/** `undefined` when `promise` resolves, else its `SessionError` code (or the error as text). */
export async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return isSessionError(error) ? error.code : String(error);
  }
}

/** `HostGuards` with their holder files in `directory`, as the stores make them. */
export function hostGuardsIn(directory: string): HostGuards {
  return new HostGuards({
    directory,
    staleMs: 5000,
    fileMode: 0o600,
    directoryMode: 0o700,
    fs: syncLockFileSystem,
  });
}

/**
 * A `LeaseFiles` on the lease files of `directory`, with guards of its own in `guardsDirectory`,
 * as one process has them; the caller closes both.
 */
export function leaseFilesIn(
  directory: string,
  guardsDirectory: string,
  options: Pick<LeaseFilesInit, 'wakeOnRelease' | 'storeDirectory'> = {},
): { files: LeaseFiles; guards: HostGuards } {
  const guards = hostGuardsIn(guardsDirectory);
  const files = new LeaseFiles({
    guards,
    fs: syncLockFileSystem,
    fileMode: 0o600,
    directoryMode: 0o700,
    pathOf: (key) => join(directory, key),
    ...options,
  });
  return { files, guards };
}

/** `lock` as the `LeaseLock` core's lock managers hand out, for a test that reads its state. */
export function leaseLock(lock: SessionLock): LeaseLock {
  if (!(lock instanceof LeaseLock)) throw new TypeError('expected a LeaseLock');
  return lock;
}

/**
 * Mounts a tmpfs with `options` (`size=1m`, `nr_inodes=64`) on a new directory and returns it;
 * needs root, and throws saying why when the mount is refused. Undo with `unmount`.
 */
export function mountTmpfs(options: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'sessile-core-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (error) {
    rmdirSync(dir);
    const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim();
    throw new Error(`mount -t tmpfs -o ${options} on ${dir} was refused: ${stderr || error}`);
  }
  return dir;
}

/**
 * Mounts a 4 MiB ext4 image with `inodes` inodes through a loop device (needs root and
 * mkfs.ext4). Unlike tmpfs, ext4 takes no inode for a hard link. Undo with `unmount`.
 */
export function mountSmallExt4(inodes: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'sessile-core-ext4-'));
  const image = `${dir}.img`;
  try {
    execFileSync('truncate', ['-s', '4M', image], { stdio: 'pipe' });
    execFileSync('mkfs.ext4', ['-q', '-F', '-N', String(inodes), image], { stdio: 'pipe' });
    execFileSync('mount', ['-o', 'loop', image, dir], { stdio: 'pipe' });
  } catch (error) {
    rmdirSync(dir);
    rmSync(image, { force: true });
    const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim();
    throw new Error(`an ext4 loop mount on ${dir} was refused: ${stderr || error}`);
  }
  return dir;
}

/** Unmounts what `mountTmpfs` or `mountSmallExt4` mounted, and removes its directory (and image). */
export function unmount(dir: string): void {
  execFileSync('umount', [dir]);
  rmdirSync(dir);
  rmSync(`${dir}.img`, { force: true });
}

/** Writes into `dir` until its filesystem has no byte left. */
export function fillWithBytes(dir: string): void {
  const fd = openSync(join(dir, 'filler'), 'w');
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  try {
    for (let size = chunk.length; size >= 1; size = Math.floor(size / 2)) {
      try {
        for (;;) writeSync(fd, chunk, 0, size);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** Creates empty files in `dir` until its filesystem has no inode left. */
export function fillWithFiles(dir: string): void {
  for (let i = 0; ; i++) {
    try {
      closeSync(openSync(join(dir, `empty-${i}`), 'wx'));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
      return;
    }
  }
}
