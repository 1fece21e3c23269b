import type { Stats } from 'node:fs';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type FileSystem, freeFile, O_NOFOLLOW, O_WRONLY, unless } from './fs.js';
import { TEMP_SUFFIX, uniqueSuffix } from './record-files.js';

/** The most spare files one store keeps; past it, a replaced record's inode is freed as before. */
const MAX_SPARES = 1024;

interface Spare {
  /** The spare's name: a `.tmp` name in the shard directory of the record it replaced. */
  file: string;
  /** `performance.now()` just after the record was replaced. */
  since: number;
}

/** A spare opened for writing: nothing else links to its inode. */
export interface OpenSpare {
  file: string;
  fd: number;
  /** Its size before this write, so the writer knows whether to cut the file down. */
  size: number;
}

export interface SpareFilesInit {
  fs: FileSystem;
  /** How long a replaced record's inode rests before another write goes into it. */
  reuseAfterMs: number;
  /**
   * Spares older than this are freed. Kept well under the sweep's grace period, which removes
   * `.tmp` files by their ctime, so the sweep never removes a spare a write is about to use.
   * Greater than `reuseAfterMs` (the store uses no spares otherwise).
   */
  keepForMs: number;
}

/**
 * Inodes of replaced records, kept for later writes in the same shard directory.
 *
 * Replacing a record by `rename(2)` frees the old inode, and the next write allocates a new
 * one. On ext4 both are dear: freeing gives back a data block (a discard on `discard` mounts)
 * and, without a journal, each allocation skips every inode freed in the last seconds. So
 * before the rename the writer links the old inode to a spare name, and a later write in that
 * directory goes into the spare (write, cut, rename) instead of a new file.
 *
 * A reader that opened the old record may still be reading it. Spares are therefore written
 * only `reuseAfterMs` after they were replaced, and a read that took longer than that checks
 * that its file is still the record's before it trusts the bytes (`FileStore` does).
 *
 * Spares are freed through the thread pool whatever the store's `io` (see `freeFile`).
 */
export class SpareFiles {
  readonly #reuseAfterMs: number;
  readonly #keepForMs: number;
  readonly #fs: FileSystem;
  /** Per shard directory, oldest first. */
  readonly #pools = new Map<string, Spare[]>();
  #count = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #trimming: Promise<void> | undefined;
  /** Spares `open` dropped, being freed without the write that dropped them waiting. */
  readonly #freeing = new Set<Promise<void>>();
  #closed = false;

  constructor(init: SpareFilesInit) {
    this.#fs = init.fs;
    this.#reuseAfterMs = init.reuseAfterMs;
    this.#keepForMs = init.keepForMs;
  }

  /** A new spare name for the inode now at `file`, or undefined when no more spares are kept. */
  nameFor(file: string): string | undefined {
    if (this.#closed || this.#count >= MAX_SPARES) return undefined;
    return `${file}.${uniqueSuffix()}${TEMP_SUFFIX}`;
  }

  /** Adds `file`, a name from `nameFor` just linked to a replaced record's inode, to its directory's pool. */
  keep(file: string): void {
    const directory = dirname(file);
    let pool = this.#pools.get(directory);
    if (pool === undefined) {
      pool = [];
      this.#pools.set(directory, pool);
    }
    pool.push({ file, since: performance.now() });
    this.#count++;
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => {
        this.#trimming ??= this.#trim().finally(() => (this.#trimming = undefined));
      }, this.#keepForMs);
      this.#timer.unref();
    }
  }

  /**
   * Renames the record at `file` to a spare name and keeps it: a removal that frees no blocks.
   * False, with nothing done, when no more spares are kept. Rejects as rename does (ENOENT).
   */
  async takeOver(file: string): Promise<boolean> {
    const spare = this.nameFor(file);
    if (spare === undefined) return false;
    await this.#fs.rename(file, spare);
    this.keep(spare);
    return true;
  }

  /**
   * Opens the oldest spare of `directory` that has rested long enough, for writing. A spare
   * that vanished (the sweep, a hand) is skipped; one that has another name too is never written.
   */
  async open(directory: string): Promise<OpenSpare | undefined> {
    const pool = this.#pools.get(directory);
    while (pool !== undefined && pool.length > 0) {
      const oldest = pool[0] as Spare;
      const age = performance.now() - oldest.since;
      if (age < this.#reuseAfterMs) return undefined;
      pool.shift();
      this.#count--;
      if (age >= this.#keepForMs) {
        this.#discardLater(oldest.file);
        continue;
      }
      const fd = await unless(['ENOENT', 'ELOOP'], undefined, () =>
        this.#fs.open(oldest.file, O_WRONLY | O_NOFOLLOW),
      );
      if (fd === undefined) continue;
      let stats: Stats;
      try {
        stats = await this.#fs.fstat(fd);
      } catch (error) {
        await this.#fs.close(fd);
        throw error;
      }
      if (stats.isFile() && stats.nlink === 1) return { file: oldest.file, fd, size: stats.size };
      await this.#fs.close(fd);
      this.#discardLater(oldest.file);
    }
    return undefined;
  }

  /** Frees every spare (at close). */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#trimming;
    await this.#discardWhere(() => true);
    await Promise.all(this.#freeing);
  }

  /** Frees spares that are too old to reuse; stops the timer once none are left. */
  async #trim(): Promise<void> {
    const now = performance.now();
    await this.#discardWhere((spare) => now - spare.since >= this.#keepForMs);
    if (this.#count === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  async #discardWhere(old: (spare: Spare) => boolean): Promise<void> {
    const doomed: string[] = [];
    for (const [directory, pool] of this.#pools) {
      // Oldest first: the first spare that is not old ends that directory's old ones.
      let cut = 0;
      while (cut < pool.length && old(pool[cut] as Spare)) cut++;
      for (const spare of pool.splice(0, cut)) doomed.push(spare.file);
      if (pool.length === 0) this.#pools.delete(directory);
    }
    this.#count -= doomed.length;
    for (const file of doomed) await this.#discard(file);
  }

  #discardLater(file: string): void {
    const freeing = this.#discard(file).finally(() => this.#freeing.delete(freeing));
    this.#freeing.add(freeing);
  }

  #discard(file: string): Promise<void> {
    return freeFile(file).catch(() => {});
  }
}
