import { readdir, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { SessionError } from '@sessile/core';
import { UnlinkGuard } from '@sessile/core/store';
import type { AbstractLevel } from 'abstract-level';

type Keyspace = AbstractLevel<unknown, Uint8Array<ArrayBufferLike>, Uint8Array<ArrayBufferLike>>;

/**
 * Free space asked for on top of the log and MANIFEST files before a reopen: LevelDB writes the
 * logs out as tables and a new MANIFEST as it opens, and the writes after it need room too.
 */
export const REOPEN_HEADROOM_BYTES = 1024 * 1024;

/**
 * `open`: reads and writes go ahead. `damaged`: a write failed, so LevelDB must be reopened
 * before the next write, but reads still work. `reopening`: closing and opening again; every
 * operation waits. `closed`: a reopen failed, so nothing works until one succeeds.
 */
type State = 'open' | 'damaged' | 'reopening' | 'closed';

/**
 * The LevelDB database under a store that opened it from a path, reopened after a write fails.
 *
 * After an I/O error on a write, LevelDB 1.20 cannot take more writes: a failed memtable flush
 * makes every later write fail (its sticky background error, which only a reopen clears), and a
 * failed log append leaves the log writer out of step with the file, so writes that seem to
 * succeed afterwards are lost when the database is next opened. So the first I/O error stops
 * all writes until the same instance is closed and opened again, which replays the logs into
 * tables and starts a new log. Reads keep going to the damaged instance meanwhile: a reopen is
 * tried only when the filesystem has room for it, because a reopen that fails for lack of space
 * would leave nothing open to read from.
 *
 * The caller must run writes one at a time (the store's `GroupedWriter` does), so that none
 * reaches LevelDB while another has failed and the database is not yet reopened.
 */
export class LevelHandle {
  readonly db: Keyspace;
  readonly #path: string | undefined;
  readonly #onReopen: () => void;
  readonly #unlinkGuard: UnlinkGuard | undefined;
  #state: State = 'open';
  #failure: unknown;
  #recovering: Promise<void> | undefined;
  #generation = 0;
  #closed = false;

  /**
   * `path` is set when the store opened the database itself and may reopen it. Without it (an
   * app's database or sublevel) writes go straight through. `onReopen` runs after each reopen.
   */
  constructor(db: Keyspace, path: string | undefined, onReopen: () => void) {
    this.db = db;
    this.#path = path;
    this.#onReopen = onReopen;
    this.#unlinkGuard =
      path === undefined
        ? undefined
        : UnlinkGuard.open(
            path,
            'directory',
            (directory) =>
              `LevelDB directory ${directory} was deleted while the store had it open. A write now would go to files that no later open can find, so the store refuses writes; reads answer from what LevelDB still holds open, or fail with ERR_STORE_IO. Close the store and open it on a directory that exists`,
          );
  }

  /** True when a read may go to `db` now, without waiting. */
  get readable(): boolean {
    return this.#state === 'open' || this.#state === 'damaged';
  }

  /** Counts reopens, so a scan can tell that its iterator was closed by one. */
  get generation(): number {
    return this.#generation;
  }

  /** Waits for a reopen in progress, or tries one when the last failed. Rejects with `ERR_STORE_IO` when `db` cannot be read. */
  async whenReadable(): Promise<void> {
    while (!this.readable) await this.#recover();
  }

  /**
   * Runs `attempt`, which writes to `db`. When the database is damaged it is reopened first,
   * and when `attempt` fails with an I/O error it is reopened and `attempt` runs once more.
   * Rejects with `ERR_STORE_IO` when that cannot be done, without touching a damaged database,
   * and when the directory has been deleted, before anything is written.
   */
  async write<T>(attempt: () => Promise<T>): Promise<T> {
    if (this.#path === undefined) return attempt();
    while (this.#state !== 'open') {
      this.#unlinkGuard?.assertLinked();
      await this.#recover();
    }
    // In the same synchronous section as the call that hands the batch to LevelDB.
    this.#unlinkGuard?.assertLinked();
    try {
      return await attempt();
    } catch (error) {
      if (!hasCode(error, 'LEVEL_IO_ERROR')) throw error;
      this.#damage(error);
    }
    await this.#recover();
    this.#unlinkGuard?.assertLinked();
    try {
      return await attempt();
    } catch (error) {
      if (!hasCode(error, 'LEVEL_IO_ERROR')) throw error;
      this.#damage(error);
      throw new SessionError(
        'ERR_STORE_IO',
        `Writing to LevelDB directory ${this.#path} failed again after reopening the database: ${describeError(error)}`,
        { cause: error },
      );
    }
  }

  /** Closes `db` once a reopen in progress is over; never reopens it after that. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#recovering?.catch(() => {});
    try {
      if (this.#state !== 'closed') await this.db.close();
    } finally {
      this.#unlinkGuard?.close();
    }
  }

  #damage(error: unknown): void {
    if (this.#state !== 'open') return;
    this.#state = 'damaged';
    this.#failure = error;
  }

  // One reopen at a time; every operation waiting meanwhile shares its outcome.
  #recover(): Promise<void> {
    this.#recovering ??= this.#reopen().finally(() => {
      this.#recovering = undefined;
    });
    return this.#recovering;
  }

  async #reopen(): Promise<void> {
    const path = this.#path as string;
    const failure = this.#failure;
    const failed = `Writing to LevelDB directory ${path} failed: ${describeError(failure)}`;
    if (this.#closed) throw new SessionError('ERR_STORE_CLOSED', 'The store is closed');
    if (this.#state === 'open') return;
    const room = await freeSpace(path);
    if (this.#closed) throw new SessionError('ERR_STORE_CLOSED', 'The store is closed');
    if (room !== undefined && room.free < room.needed) {
      const reads = this.#state === 'damaged' ? ', and reads go on meanwhile' : '';
      throw new SessionError(
        'ERR_STORE_IO',
        `${failed}. LevelDB cannot take writes safely again until the database is reopened; the store reopens it by itself once about ${mebibytes(room.needed)} is free there (${mebibytes(room.free)} now)${reads}`,
        { cause: failure },
      );
    }
    if (this.#state === 'damaged') {
      this.#state = 'reopening';
      try {
        await this.db.close();
      } catch (error) {
        this.#state = this.db.status === 'closed' ? 'closed' : 'damaged';
        throw new SessionError(
          'ERR_STORE_IO',
          `${failed}, and closing the database to reopen it failed: ${describeError(error)}`,
          { cause: error },
        );
      }
    }
    this.#state = 'reopening';
    try {
      // Never an empty database in place of one that went missing.
      await this.db.open({ createIfMissing: false });
    } catch (error) {
      this.#state = 'closed';
      throw new SessionError(
        'ERR_STORE_IO',
        `${failed}, and reopening the database failed: ${describeError(error)}. The store tries again on the next operation`,
        { cause: error },
      );
    }
    this.#state = 'open';
    this.#failure = undefined;
    this.#generation++;
    this.#onReopen();
  }
}

/**
 * Free bytes on the filesystem of `path` against what a reopen needs there, or `undefined` when
 * that cannot be told (then the reopen is tried).
 */
async function freeSpace(path: string): Promise<{ free: number; needed: number } | undefined> {
  try {
    const [space, names] = await Promise.all([statfs(path), readdir(path)]);
    const replayed = names.filter((name) => name.endsWith('.log') || name.startsWith('MANIFEST-'));
    const sizes = await Promise.all(
      replayed.map((name) =>
        stat(join(path, name)).then(
          (stats) => stats.size,
          () => 0,
        ),
      ),
    );
    const needed = sizes.reduce((sum, size) => sum + size, REOPEN_HEADROOM_BYTES);
    // Root may also fill the blocks a filesystem such as ext4 reserves for it.
    const blocks = process.getuid?.() === 0 ? space.bfree : space.bavail;
    return { free: blocks * space.bsize, needed };
  } catch {
    return undefined;
  }
}

function mebibytes(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/** True when `error` or one of its causes has `code`. */
export function hasCode(error: unknown, code: string): boolean {
  for (let current = error, depth = 0; depth < 16; depth++) {
    if (typeof current !== 'object' || current === null) return false;
    const { code: found, cause } = current as { code?: unknown; cause?: unknown };
    if (found === code) return true;
    current = cause;
  }
  return false;
}

/**
 * The message of the deepest cause, which says what went wrong ("EEXIST: …", "IO error: …")
 * where the wrappers around it only say "Database failed to open".
 */
export function describeError(error: unknown): string {
  let current = error;
  for (let depth = 0; depth < 16; depth++) {
    const cause = (current as { cause?: unknown } | null | undefined)?.cause;
    if (!(cause instanceof Error)) break;
    current = cause;
  }
  return current instanceof Error ? current.message : String(current);
}
