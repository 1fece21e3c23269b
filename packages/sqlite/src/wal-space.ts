import { statfsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * With less free space than this on its filesystem (counting the WAL file itself, which a
 * restart gives back) the store keeps its WAL small, at some cost in latency: on a roomy disk a
 * burst may grow the WAL to tens of MiB, which on a nearly full one is the rest of the disk.
 */
export const LOW_SPACE_BYTES = 64 * 1024 * 1024;

/**
 * Low on space, the WAL is restarted at this length: by the store's connection right after the
 * commit that crosses it, and by the checkpoint worker when writes pause (1 MiB at 4 KiB pages).
 */
export const LOW_SPACE_WAL_PAGES = 256;

/** How far SQLite cuts the WAL file back when it restarts the WAL, by free space. */
export function walSizeLimitBytes(lowSpace: boolean): number {
  return lowSpace ? 1024 * 1024 : 64 * 1024 * 1024;
}

/** The size of the database's WAL file, 0 when there is none. */
export function walFileBytes(path: string): number {
  try {
    return statSync(`${path}-wal`).size;
  } catch {
    return 0;
  }
}

/** True when the filesystem of the database at `path` has less than `LOW_SPACE_BYTES` free. */
export function lowOnSpace(path: string, walBytes = walFileBytes(path)): boolean {
  try {
    const { bavail, bsize } = statfsSync(dirname(path));
    return bavail * bsize + walBytes < LOW_SPACE_BYTES;
  } catch {
    return false;
  }
}
