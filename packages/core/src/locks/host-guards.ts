import { randomBytes } from 'node:crypto';
import { constants as fsConstants, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import { SessionError } from '../errors.js';
import { KeyedQueue } from '../keyed-queue.js';
import { assertDuration, sleep } from '../util.js';
import {
  encodeHolder,
  errorCode,
  GUARD_STALE_MS,
  HOST,
  type LockFileSystem,
  unless,
} from './lock-files.js';

const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fsConstants;

/**
 * How long a guard wait goes on once acquiring stopped: a guard covers a few system calls and
 * an fsync, so a holder that keeps it longer is stalled, not about to let go.
 */
export const STOPPED_GUARD_WAIT_MS = 1000;

export interface HostGuardsInit {
  /** Where this instance's holder file lives, `<store path>/.guards`. */
  directory: string;
  /** A guard whose holder has not heartbeaten for this long belongs to a dead process. */
  staleMs: number;
  fileMode: number;
  directoryMode: number;
  /** How the calls are made (thread pool or event loop). */
  fs: LockFileSystem;
  /** A unique name for a file moved aside next to `file`. Default `<file>.<random>.tmp`. */
  asideName?(file: string): string;
}

/**
 * The host-wide mutex of the file and dbm stores: short critical sections on one file, for
 * every process on the host. An in-process FIFO per key comes first, so this process never
 * spins against itself; then a guard file `<file>.lock` made by hard-linking this instance's
 * holder file (`link(2)` fails if the name exists, atomically, NFS included). Taking and
 * dropping a guard is one `link` and one `unlink`. The holder file's mtime is a heartbeat,
 * refreshed every `staleMs / 4` while the store is open, so a guard whose inode has not been
 * refreshed for `staleMs` belongs to a process that died (or stalled) and is taken over.
 *
 * The holder files of this instance's leases (`LeaseFiles`) sit beside its holder, named
 * `<holder>.<n>`, so the one heartbeat also tells when they are orphans.
 */
export class HostGuards {
  /** The in-process half of every guard: calls on one file queue here before taking its lock. */
  readonly #queue = new KeyedQueue();
  readonly staleMs: number;
  readonly #init: HostGuardsInit;
  readonly #fs: LockFileSystem;
  /** This instance's holder file, named once: `<pid>-<random>`. */
  readonly holderPath: string;
  #holder: string | undefined;
  #creatingHolder: Promise<string> | undefined;
  #lastBeatMs = 0;
  #beatTimer: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  /** When `stopAcquiring` was called, in ms since the epoch. */
  #stoppedAt: number | undefined;

  constructor(init: HostGuardsInit) {
    // It paces a heartbeat timer, and NaN would make no guard ever stale nor any wait end.
    assertDuration(init.staleMs, 'HostGuards: staleMs');
    this.#init = init;
    this.#fs = init.fs;
    this.staleMs = Math.max(init.staleMs, GUARD_STALE_MS);
    this.holderPath = join(init.directory, `${process.pid}-${randomBytes(8).toString('hex')}`);
  }

  get directory(): string {
    return this.#init.directory;
  }

  /** Creates this instance's holder file (and its directory) if it is not there yet. */
  async ensureHolder(): Promise<void> {
    await this.#freshHolder();
  }

  /**
   * Forgets this instance's holder file when it is gone with its directory (removed by hand),
   * so that the next `ensureHolder` makes both again; but not when the directory above is gone
   * too (the store itself was deleted), which nothing here should bring back.
   */
  async recheckHolder(): Promise<void> {
    const holder = this.#holder;
    if (holder === undefined) return;
    const stats = await unless(['ENOENT'], undefined, () => this.#fs.lstat(holder));
    if (stats !== undefined) return;
    const parent = await unless(['ENOENT'], undefined, () =>
      this.#fs.lstat(dirname(this.#init.directory)),
    );
    if (parent !== undefined && this.#holder === holder) this.#holder = undefined;
  }

  /**
   * Runs `body` while holding the cross-process guard of `file` (the in-process order is the
   * caller's job, through `serialize`). Waits while another live process holds it.
   */
  async hold<T>(file: string, body: () => Promise<T>): Promise<T> {
    const guard = `${file}.lock`;
    await this.#acquire(guard);
    try {
      return await body();
    } finally {
      await unless(['ENOENT'], undefined, () => this.#fs.unlink(guard));
    }
  }

  /** Runs `body` alone for `file` in this process only. */
  serialize<T>(file: string, body: () => Promise<T>): Promise<T> {
    return this.#queue.run(file, body);
  }

  /** Every file some call in this process holds or waits for. */
  busyKeys(): string[] {
    return this.#queue.keys();
  }

  /** `serialize` plus `hold`: one writer for `file` across this process and the host. */
  run<T>(file: string, body: () => Promise<T>): Promise<T> {
    return this.serialize(file, () => this.hold(file, body));
  }

  /** True when a guard (or holder) with these stats has missed its heartbeat for `staleForMs`. */
  isStale(stats: Stats, staleForMs = this.staleMs): boolean {
    return stats.mtimeMs < Date.now() - staleForMs;
  }

  /**
   * The first half of `close()`, called when the store's `close()` begins: a guard wait ends
   * with `ERR_STORE_CLOSED` once another live process has kept the guard `STOPPED_GUARD_WAIT_MS`
   * past this call (or past the wait's start), instead of waiting it out. Guards free now or
   * soon are still taken, so the writes in flight finish.
   */
  stopAcquiring(): void {
    this.#stoppedAt ??= Date.now();
  }

  /** Stops the heartbeat and removes the holder file; guards must all be released first. */
  async close(): Promise<void> {
    this.stopAcquiring();
    this.#closed = true;
    if (this.#beatTimer !== undefined) clearInterval(this.#beatTimer);
    this.#beatTimer = undefined;
    const holder = this.#holder ?? (await this.#creatingHolder?.catch(() => undefined));
    this.#holder = undefined;
    // Gone, or its directory replaced by hand (ENOTDIR): nothing is left to remove.
    if (holder !== undefined) {
      await unless(['ENOENT', 'ENOTDIR'], undefined, () => this.#fs.unlink(holder));
    }
  }

  async #acquire(guard: string): Promise<void> {
    // A holder is stale only `staleMs` after its last heartbeat, so a guard taken now lasts at least that.
    const startedAt = Date.now();
    const deadline = startedAt + 3 * this.staleMs + 5000;
    let delayMs = 1;
    for (;;) {
      const holder = await this.#freshHolder();
      try {
        await this.#fs.link(holder, guard);
        return;
      } catch (error) {
        const code = errorCode(error);
        if (code === 'ENOENT') {
          // Our holder file was removed (by hand?): make a new one; else the directory is gone.
          const holderStats = await unless(['ENOENT'], undefined, () => this.#fs.lstat(holder));
          if (holderStats !== undefined) throw error;
          if (this.#holder === holder) this.#holder = undefined;
          continue;
        }
        // EMLINK: the holder is linked as too many guards at once; wait until some are released.
        if (code !== 'EEXIST' && code !== 'EMLINK') throw error;
        if (code === 'EEXIST' && (await this.removeIfStale(guard))) continue;
      }
      const stoppedAt = this.#stoppedAt;
      if (
        stoppedAt !== undefined &&
        Date.now() > Math.max(stoppedAt, startedAt) + STOPPED_GUARD_WAIT_MS
      ) {
        throw new SessionError(
          'ERR_STORE_CLOSED',
          `The store closed while waiting for a write guard in ${dirname(guard)}: another process holds it`,
        );
      }
      if (Date.now() > deadline) {
        // The directory, not the guard: a guard's name may hold a session id.
        // A live holder kept it all along: busy, as a store-internal lock wait that runs out is.
        throw new SessionError(
          'ERR_STORE_BUSY',
          `Timed out waiting for a write guard in ${dirname(guard)}: another process held it throughout`,
        );
      }
      await sleep(delayMs * (0.5 + Math.random()));
      delayMs = Math.min(delayMs * 2, 25);
    }
  }

  /**
   * Removes `guard` when its holder missed its heartbeat. It is renamed aside first and the
   * moved inode compared with the one judged stale, so a guard just taken by a live process
   * is put back, never deleted. Resolves true when the caller should try again at once.
   */
  async removeIfStale(guard: string, staleForMs = this.staleMs): Promise<boolean> {
    const stats = await unless(['ENOENT'], undefined, () => this.#fs.lstat(guard));
    if (stats === undefined) return true;
    // Only a file made by link(2) is a guard; anything else in the way is not ours to remove.
    if (!stats.isFile() || !this.isStale(stats, staleForMs)) return false;
    const aside = this.#init.asideName?.(guard) ?? `${guard}.${randomBytes(6).toString('hex')}.tmp`;
    const moved = await unless(['ENOENT'], false, async () => {
      await this.#fs.rename(guard, aside);
      return true;
    });
    if (!moved) return true;
    const movedStats = await this.#fs.lstat(aside);
    if (movedStats.ino !== stats.ino || !this.isStale(movedStats, staleForMs)) {
      // A live holder took the guard in between: give it back.
      await unless(['EEXIST'], undefined, () => this.#fs.link(aside, guard));
      await unless(['ENOENT'], undefined, () => this.#fs.unlink(aside));
      return false;
    }
    await unless(['ENOENT'], undefined, () => this.#fs.unlink(aside));
    return true;
  }

  /** This instance's holder file, created on first use, its heartbeat no older than a quarter of `staleMs`. */
  async #freshHolder(): Promise<string> {
    for (;;) {
      const holder = this.#holder ?? (await this.#createHolder());
      if (Date.now() - this.#lastBeatMs <= this.staleMs / 4) return holder;
      // A blocked event loop may have delayed the timer: beat now, before the guard is visible.
      try {
        await this.#beat(holder);
        return holder;
      } catch (error) {
        if (errorCode(error) !== 'ENOENT') throw error;
      }
    }
  }

  #createHolder(): Promise<string> {
    this.#creatingHolder ??= (async () => {
      // A holder made once `close` began would outlive it, heartbeating for the process's life.
      if (this.#closed) throw new SessionError('ERR_STORE_CLOSED', 'The store is closed');
      const { directory, fileMode, directoryMode } = this.#init;
      // A holder removed from under us (by hand) is made again under the same name.
      await unless(['ENOENT'], undefined, () => this.#fs.unlink(this.holderPath));
      // Only the guards' own directory: a store directory removed with it stays removed.
      await unless(['EEXIST'], undefined, () => this.#fs.mkdir(directory, { mode: directoryMode }));
      const holder = this.holderPath;
      const fd = await this.#fs.open(holder, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, fileMode);
      try {
        const record = encodeHolder({ pid: process.pid, host: HOST });
        // The text only tells a person who holds a guard; the inode and its mtime are the guard.
        // On a full disk an empty holder still lets this process delete, which frees space.
        await unless(['ENOSPC', 'EDQUOT'], 0, () =>
          this.#fs.write(fd, record, 0, record.length, 0),
        );
      } catch (error) {
        await this.#fs.close(fd).catch(() => {});
        await unless(['ENOENT'], undefined, () => this.#fs.unlink(holder));
        throw error;
      }
      await this.#fs.close(fd);
      if (this.#closed) {
        await unless(['ENOENT'], undefined, () => this.#fs.unlink(holder));
        throw new SessionError('ERR_STORE_CLOSED', 'The store is closed');
      }
      this.#lastBeatMs = Date.now();
      this.#holder = holder;
      this.#beatTimer ??= setInterval(() => {
        const current = this.#holder;
        if (current !== undefined) this.#beat(current).catch(() => {});
      }, this.staleMs / 4);
      this.#beatTimer.unref();
      return holder;
    })();
    const creating = this.#creatingHolder;
    creating
      .finally(() => {
        if (this.#creatingHolder === creating) this.#creatingHolder = undefined;
      })
      .catch(() => {});
    return creating;
  }

  async #beat(holder: string): Promise<void> {
    const nowMs = Date.now();
    try {
      await this.#fs.lutimes(holder, nowMs / 1000, nowMs / 1000);
    } catch (error) {
      // Removed from under us: the next guard makes a new holder file.
      if (errorCode(error) === 'ENOENT' && this.#holder === holder) this.#holder = undefined;
      throw error;
    }
    this.#lastBeatMs = nowMs;
  }

  /**
   * Removes the holder files of instances that stopped heartbeating `staleForMs` ago (their
   * process died without closing the store), and their lease holders. Never this instance's.
   */
  async removeDeadHolders(staleForMs: number): Promise<void> {
    const { directory } = this.#init;
    const names = await unless(['ENOENT', 'ENOTDIR'], [] as string[], () =>
      this.#fs.readdir(directory),
    );
    const ours = this.holderPath.slice(directory.length + 1);
    const dead = new Set<string>();
    const live = new Set<string>([ours]);
    for (const name of names) {
      if (name.includes('.') || name === ours) continue;
      const stats = await unless(['ENOENT'], undefined, () =>
        this.#fs.lstat(join(directory, name)),
      );
      if (stats?.isFile() && this.isStale(stats, staleForMs)) dead.add(name);
      else live.add(name);
    }
    for (const name of names) {
      const instance = name.split('.')[0] as string;
      if (dead.has(instance) || (name !== instance && !live.has(instance))) {
        await unless(['ENOENT'], undefined, () => this.#fs.unlink(join(directory, name)));
      }
    }
  }
}
