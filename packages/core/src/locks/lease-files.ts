import { type FSWatcher, constants as fsConstants, lstatSync, type Stats, watch } from 'node:fs';
import { basename, dirname, sep } from 'node:path';
import type { HeldLease } from '../types.js';
import type { HostGuards } from './host-guards.js';
import { lockLost } from './lease.js';
import type { LeaseBackend, LeaseClaim } from './lease-locks.js';
import {
  bareHolder,
  decodeHolder,
  encodeHolder,
  encodeHolderInto,
  errorCode,
  HOLDER_BYTES,
  HOST,
  type HolderRecord,
  type LockFileSystem,
  leaseEnded,
  NO_SPACE,
  unless,
} from './lock-files.js';

const { O_RDWR, O_CREAT, O_EXCL, O_NOFOLLOW } = fsConstants;

/**
 * Idle holder files kept open for the next claims; more are removed once released. An instance
 * keeps at most as many as it once held leases at a time, so this bounds only a burst.
 */
const IDLE_HOLDERS = 256;
/**
 * Holder files made when an instance is created, while the disk has room: claims on a full disk
 * reuse them (a pooled holder is rewritten in place) instead of needing an inode and a block.
 */
const SPARE_HOLDERS = 2;
/** A release or extend this close to the lease end takes the guard: a takeover may be near. */
const SAFE_MARGIN_MS = 1000;

/** Read once: every read of `process.pid` is a `getpid` call, and every claim writes it. */
const PID = process.pid;

/** Numbers holder files; one count for the process, so instances sharing a `HostGuards` never clash. */
let holdersCreated = 0;

/** One of this instance's holder files: linked as at most one lease at a time. */
interface Holder {
  readonly path: string;
  readonly fd: number;
  /** Its inode, read once: a lease file is this holder's link only while it is this inode. */
  readonly ino: number;
  readonly dev: number;
  /** Its record's bytes: a holder carries one lease at a time, so one buffer serves every write. */
  readonly bytes: Buffer;
}

interface Held {
  readonly holder: Holder;
  readonly token: string;
  /** The end other processes read: the holder's mtime may keep less precision than asked for. */
  expiresAt: number;
  readonly leaseMs: number;
  readonly tag: string | undefined;
  /** Its release, once begun: a second one (a late `expired`, `close`) must not free its holder again. */
  releasing?: Promise<boolean>;
}

/** How a claim went: taken from nobody, taken over from a holder whose lease had ended, or refused. */
export type ClaimOutcome = 'claimed' | 'reclaimed' | 'refused';

export interface LeaseFilesInit {
  /** The host-wide mutex; lease holder files live in its directory. */
  guards: HostGuards;
  fs: LockFileSystem;
  fileMode: number;
  directoryMode: number;
  /** The lease file of a `LeaseLocks` key. */
  pathOf(key: string): string;
  /**
   * The directory the lease files are below, at any depth. A claim that finds their directories
   * removed (by an operator, a tmp cleaner) makes them again, but never this one: a store whose
   * own directory was deleted is not brought back. Default: the guards' directory's parent.
   */
  storeDirectory?: string;
  /** What a lease names its session by, so a waiter can tell which session holds a shared key. */
  tagOf?(id: string): string;
  /** Called when a claim is refused, with the lease that holds the key (undefined if unreadable). */
  onRefused?(claim: LeaseClaim, current: HolderRecord | undefined): void;
  /**
   * Wake a waiting claim when its lease file is removed, through a watch (inotify) on the lease
   * files' directory, instead of waiting for its next poll. The directory is watched only while
   * a claim here was refused and still waits; polling stays as the fallback (NFS).
   */
  wakeOnRelease?: boolean;
  /**
   * The file whose guard covers the lease in `leasePath`, when not the lease file itself. A
   * store that takes that guard for its own writes checks the lease inside it (`assertHeld`)
   * instead of calling `fence`, so a fenced write takes one guard, not two.
   */
  guardOf?(leasePath: string): string;
}

/** A waiter registered through `watch`, and its directory watch once a claim was refused. */
interface Waiter {
  readonly wake: () => void;
  unwatch?: () => void;
}

/** One directory watch, and the wakers of each lease file name in it. */
interface DirectoryWatch {
  readonly watcher: FSWatcher;
  readonly wakers: Map<string, Set<() => void>>;
}

/**
 * Leases in files, for every process on the host: a lease is a lease file holding a
 * `HolderRecord` with its token and end. A claim writes the record into one of this instance's
 * holder files and hard-links it as the lease file, so taking a free key is one `pwrite` and
 * one `link`; a release well inside the lease is one `lstat` and one `unlink`. Everything that
 * could meet a takeover (taking over an ended lease, an extend, a release near the end, a fenced
 * write) runs under the lease file's guard (`HostGuards`), so a check of the holder and the
 * change that depends on it never interleave with another process. A release or an extend acts
 * only on a lease file that is its holder's inode: once the lease files' directory was removed
 * or replaced, the file at the same path may be another holder's lease.
 *
 * A full disk still takes leases. An instance makes its host guard's holder and a few spare
 * holder files when it is created, and pools the holders it used, whose records are rewritten in
 * place without a new block. A claim whose record finds no block links a bare lease instead: a
 * holder of no bytes whose mtime is the lease end. Its process is unknown to others, so they wait
 * out its end even after a crash. A claim that needs a new inode (or, on tmpfs, where every hard
 * link takes one, any claim) rejects with the `ENOSPC` once there are none left, which the lock
 * kit reports as `ERR_STORE_IO`; the store's own sweep tells it by that code.
 */
export class LeaseFiles implements LeaseBackend {
  readonly #init: LeaseFilesInit;
  readonly #guards: HostGuards;
  readonly #fs: LockFileSystem;
  readonly #held = new Map<string, Held>();
  /** Tokens of the leases `close` freed while they were held, whose holders have not released yet. */
  readonly #freedOnClose = new Set<string>();
  readonly #idle: Holder[] = [];
  /** Holders closed and unlinked, which must never be written or pooled again. */
  readonly #dropped = new WeakSet<Holder>();
  readonly #watches = new Map<string, DirectoryWatch>();
  readonly #waiting = new Map<string, Set<Waiter>>();
  /** The spare holders being made; `close` waits for them, so none is left behind. */
  readonly #preparing: Promise<void>;
  #closed = false;

  constructor(init: LeaseFilesInit) {
    this.#init = init;
    this.#guards = init.guards;
    this.#fs = init.fs;
    // Best effort: a holder that cannot be made now is made by the claim that needs it.
    this.#preparing = this.#prepare().catch(() => {});
  }

  /** Makes the guard's holder and `SPARE_HOLDERS` written holders while the disk has room. */
  async #prepare(): Promise<void> {
    await this.#guards.ensureHolder();
    const record = encodeHolder({ pid: PID, host: HOST });
    while (!this.#closed && this.#idle.length < SPARE_HOLDERS) {
      const holder = await this.#createHolder();
      try {
        // Written once now, the holder owns the block that its records later overwrite.
        await this.#fs.write(holder.fd, record, 0, HOLDER_BYTES, 0);
      } finally {
        await this.#giveBack(holder);
      }
    }
  }

  async claim(claim: LeaseClaim): Promise<boolean> {
    const path = this.#init.pathOf(claim.key);
    const tag = this.#init.tagOf?.(claim.id);
    const outcome = await this.claimAt(path, claim.token, claim.expiresAt, tag, (current) =>
      this.#init.onRefused?.(claim, current),
    );
    return outcome !== 'refused';
  }

  extend({ key, token, expiresAt }: LeaseClaim): Promise<boolean> {
    return this.extendAt(this.#init.pathOf(key), token, expiresAt);
  }

  release({ key, token }: LeaseClaim): Promise<boolean> {
    return this.releaseAt(this.#init.pathOf(key), token);
  }

  fence<T>({ key, token }: HeldLease, write: () => Promise<T>): Promise<T> {
    return this.fenceAt(this.#init.pathOf(key), token, write);
  }

  expired({ key, token }: LeaseClaim): void {
    // The lease ran out: free the key now rather than make the next claimer judge it ended.
    this.releaseAt(this.#init.pathOf(key), token).catch(() => {});
  }

  /**
   * Registers `wake` for `key`'s release, but watches the directory only once a claim on the
   * key is refused: every `link` and `unlink` in a watched directory is an inotify event that
   * each watching process reads, so a watch kept open would charge every uncontended claim.
   */
  watch(key: string, wake: () => void): () => void {
    if (this.#init.wakeOnRelease !== true || this.#closed) return () => {};
    const path = this.#init.pathOf(key);
    let waiters = this.#waiting.get(path);
    if (waiters === undefined) {
      waiters = new Set();
      this.#waiting.set(path, waiters);
    }
    const waiter: Waiter = { wake };
    waiters.add(waiter);
    return () => {
      waiter.unwatch?.();
      waiters.delete(waiter);
      if (waiters.size === 0 && this.#waiting.get(path) === waiters) this.#waiting.delete(path);
    };
  }

  /**
   * Calls `wake` whenever the lease file `path` changes, through a watch on its directory that
   * stays open until no waker in that directory remains. Returns the unsubscribe.
   */
  watchAt(path: string, wake: () => void): () => void {
    if (this.#closed) return () => {};
    const directory = dirname(path);
    const name = basename(path);
    let entry = this.#watches.get(directory);
    if (entry === undefined) {
      const wakers = new Map<string, Set<() => void>>();
      let watcher: FSWatcher;
      try {
        watcher = watch(directory, { persistent: false }, (_event, changed) => {
          if (changed === null) return;
          for (const waker of [...(wakers.get(String(changed)) ?? [])]) waker();
        });
      } catch {
        // No watch here (a missing directory, no inotify): the waiter polls.
        return () => {};
      }
      // A watch that fails later only stops the early wake-ups; polling goes on.
      watcher.on('error', () => this.#unwatchDirectory(directory));
      entry = { watcher, wakers };
      this.#watches.set(directory, entry);
    }
    const watched = entry;
    let wakers = watched.wakers.get(name);
    if (wakers === undefined) {
      wakers = new Set();
      watched.wakers.set(name, wakers);
    }
    wakers.add(wake);
    return () => {
      wakers.delete(wake);
      if (wakers.size === 0 && watched.wakers.get(name) === wakers) watched.wakers.delete(name);
      if (watched.wakers.size === 0 && this.#watches.get(directory) === watched) {
        this.#unwatchDirectory(directory);
      }
    };
  }

  /** A claim on `path` was refused: its waiters are from now on woken by its release. */
  #refused(path: string): 'refused' {
    for (const waiter of this.#waiting.get(path) ?? []) {
      waiter.unwatch ??= this.watchAt(path, waiter.wake);
    }
    return 'refused';
  }

  /** Takes the lease in `path` for `token` when nobody holds it or its lease has ended. */
  async claimAt(
    path: string,
    token: string,
    expiresAt: number,
    tag?: string,
    onRefused?: (current: HolderRecord | undefined) => void,
  ): Promise<ClaimOutcome> {
    // This instance's last lease on the key is still being freed after it ran out.
    if (this.#held.has(path)) return this.#refused(path);
    let holder = await this.#takeHolder();
    const leaseMs = expiresAt - Date.now();
    let placed = false;
    try {
      let endsAt = await this.#writeLease(holder, token, expiresAt, tag);
      for (let tries = 0; tries < 4; tries++) {
        try {
          await this.#fs.link(holder.path, path);
          placed = true;
          this.#held.set(path, { holder, token, expiresAt: endsAt, leaseMs, tag });
          return 'claimed';
        } catch (error) {
          const code = errorCode(error);
          if (code === 'ENOENT') {
            const recovered = await this.#recover(holder, path);
            if (recovered !== holder) {
              holder = recovered;
              endsAt = await this.#writeLease(holder, token, expiresAt, tag);
            }
            continue;
          }
          if (code !== 'EEXIST') throw error;
        }
        const current = await this.#read(path);
        if (current === 'absent') continue;
        if (!leaseEnded(current, Date.now())) {
          onRefused?.(current);
          return this.#refused(path);
        }
        const linked = holder;
        placed = await this.#guards.run(this.#guardOf(path), async () => {
          // Under the guard nobody else can free or take over the lease: judge it again.
          const again = await this.#read(path);
          if (again !== 'absent' && !leaseEnded(again, Date.now())) return false;
          await unless(['ENOENT'], undefined, () => this.#fs.unlink(path));
          return unless(['EEXIST'], false, async () => {
            await this.#fs.link(linked.path, path);
            return true;
          });
        });
        if (placed) {
          this.#held.set(path, { holder, token, expiresAt: endsAt, leaseMs, tag });
          return 'reclaimed';
        }
        onRefused?.(undefined);
        return this.#refused(path);
      }
      return this.#refused(path);
    } finally {
      if (!placed) await this.#giveBack(holder);
    }
  }

  /** Moves the end of `token`'s lease in `path` to `expiresAt`; false once it is not held. */
  extendAt(path: string, token: string, expiresAt: number): Promise<boolean> {
    // A lease no longer held (released, freed by close) needs no guard, which would make a file.
    if (this.#held.get(path)?.token !== token) return Promise.resolve(false);
    return this.#guards.run(this.#guardOf(path), async () => {
      const held = this.#held.get(path);
      // Checked even well inside the lease, as a release is: the guard costs more than the lstat.
      if (held?.token !== token || held.expiresAt <= Date.now()) return false;
      if (!(await this.#linkedAt(path, held.holder))) return false;
      held.expiresAt = await this.#writeLease(held.holder, token, expiresAt, held.tag);
      return true;
    });
  }

  /**
   * Whether `token` still holds the lease in `path`, answered at once, for a write fenced inside
   * a critical section that cannot wait (`@sessile/dbm`'s global lock). Well inside the lease
   * nobody may have taken it over, and a caller that can see the lease files' directory removed
   * or replaced tells it by `recheckAt` first; nearer its end, one `lstat` tells whether the
   * lease file is still the holder file, which answers for a bare lease too.
   */
  holdsAtSync(path: string, token: string): boolean {
    const held = this.#held.get(path);
    if (held?.token !== token || held.expiresAt <= Date.now()) return false;
    if (this.#safe(held)) return true;
    try {
      return isHolder(lstatSync(path), held.holder);
    } catch {
      return false;
    }
  }

  /**
   * After the lease files' directory was removed or replaced: whether `token`'s lease in `path`
   * is still linked there, as a claim made since the directory came back is. One that is not
   * (gone with the old directory) is forgotten, its holder closed: its release then answers
   * false and unlinks nothing, as the lease file in `path` now may be another holder's.
   */
  recheckAt(path: string, token: string): boolean {
    const held = this.#held.get(path);
    if (held?.token !== token) return false;
    try {
      if (isHolder(lstatSync(path), held.holder)) return true;
    } catch (error) {
      const code = errorCode(error);
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
    }
    this.#held.delete(path);
    this.#drop(held.holder).catch(() => {});
    return false;
  }

  /** Frees `path` if `token` holds it; resolves whether its lease was still held until now. */
  async releaseAt(path: string, token: string): Promise<boolean> {
    const held = this.#held.get(path);
    if (held?.token !== token) return this.#freedOnClose.delete(token);
    return this.#release(path, held);
  }

  /** Frees `held` once; a release that finds it being freed already resolves false. */
  #release(path: string, held: Held): Promise<boolean> {
    const { releasing } = held;
    if (releasing !== undefined) return releasing.catch(() => {}).then(() => false);
    held.releasing = this.#free(path, held);
    return held.releasing;
  }

  async #free(path: string, held: Held): Promise<boolean> {
    // True once the holder is linked nowhere: only then may it hold the next claim.
    let unlinked = false;
    const unlinkOwn = async () => {
      let linked: Stats;
      try {
        // At once where the calls run on the event loop: the unlink is then made in the same
        // turn as the release call, as a dbm store's next step, reading the lock, counts on.
        linked = this.#fs.lstatSync?.(path) ?? (await this.#fs.lstat(path));
      } catch (error) {
        if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') return false;
        throw error;
      }
      // Not our inode: our lease went with a removed or replaced directory, and the file now
      // there is the lease of whoever claimed the key since.
      if (!isHolder(linked, held.holder)) return false;
      const removed = await unless(['ENOENT'], false, async () => {
        await this.#fs.unlink(path);
        return true;
      });
      unlinked = true;
      return removed && held.expiresAt > Date.now();
    };
    try {
      // Well inside the lease no other process may take it over (that needs its end and the
      // guard), so no guard is needed between the check and the unlink; only a removal of the
      // directory in those microseconds could come between them, which no lock can keep out.
      if (this.#safe(held)) return await unlinkOwn();
      return await this.#guards.run(this.#guardOf(path), unlinkOwn);
    } finally {
      if (this.#held.get(path) === held) this.#held.delete(path);
      if (unlinked) await this.#giveBack(held.holder);
      else await this.#drop(held.holder);
    }
  }

  /** Runs `write` while `token` holds `path`, under its guard; else rejects with `ERR_LOCK_LOST`. */
  fenceAt<T>(path: string, token: string, write: () => Promise<T>): Promise<T> {
    return this.#guards.run(this.#guardOf(path), async () => {
      await this.#assertHeldAt(path, token);
      return write();
    });
  }

  /**
   * Rejects with `ERR_LOCK_LOST` unless `lease` is still held. Atomic with a write only when
   * called under the guard of `guardOf(lease's path)`, which the caller holds.
   */
  assertHeld({ key, token }: HeldLease): Promise<void> {
    return this.#assertHeldAt(this.#init.pathOf(key), token);
  }

  async #assertHeldAt(path: string, token: string): Promise<void> {
    const held = this.#held.get(path);
    if (held?.token !== token || !(await this.#stillHeld(path, held))) {
      throw lockLost('its lease ran out or another holder took it over');
    }
  }

  #guardOf(path: string): string {
    return this.#init.guardOf?.(path) ?? path;
  }

  /** Ends the waits for this instance's guards (`HostGuards#stopAcquiring`), as a store's close begins. */
  stopAcquiring(): void {
    this.#guards.stopAcquiring();
  }

  /**
   * Frees the leases still held and removes every holder file, so a closed store keeps no file
   * open. A later release of a lease freed here resolves true, as it was held until then; an
   * extend resolves false.
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.#waiting.clear();
    for (const directory of [...this.#watches.keys()]) this.#unwatchDirectory(directory);
    await this.#preparing;
    for (const [path, held] of [...this.#held]) {
      // A failed release still closes the holder: its lease then ends by itself.
      if (await this.#release(path, held).catch(() => false)) this.#freedOnClose.add(held.token);
    }
    // A spare holder that cannot be unlinked (its directory replaced by hand) is only a stale
    // file: the rest are dropped, and the store's close goes on to free what else it holds.
    for (const holder of this.#idle.splice(0)) await this.#drop(holder).catch(() => {});
  }

  #unwatchDirectory(directory: string): void {
    this.#watches.get(directory)?.watcher.close();
    this.#watches.delete(directory);
  }

  /**
   * Whether `held` is still this instance's lease in `path`, for a fenced write. Well inside the
   * lease nobody may have taken it over; nearer its end the lease file must still be the holder
   * file.
   */
  async #stillHeld(path: string, held: Held): Promise<boolean> {
    if (held.expiresAt <= Date.now()) return false;
    if (this.#safe(held)) return true;
    return this.#linkedAt(path, held.holder);
  }

  /** Whether the lease file in `path` is `holder`'s link, not a file that took its place. */
  async #linkedAt(path: string, holder: Holder): Promise<boolean> {
    const linked = await unless(['ENOENT', 'ENOTDIR'], undefined, () => this.#fs.lstat(path));
    return linked !== undefined && isHolder(linked, holder);
  }

  #safe(held: Held): boolean {
    return Date.now() < held.expiresAt - Math.min(SAFE_MARGIN_MS, held.leaseMs / 2);
  }

  async #read(path: string): Promise<HolderRecord | undefined | 'absent'> {
    for (let tries = 0; tries < 4; tries++) {
      const text = await unless(['ENOENT'], undefined, () => this.#fs.readText(path));
      if (text === undefined) return 'absent';
      if (text !== '') return decodeHolder(text);
      // A lease file of no bytes is a bare lease: its mtime is its end.
      const stats = await unless(['ENOENT'], undefined, () => this.#fs.lstat(path));
      if (stats === undefined) return 'absent';
      // Else another lease was linked in between: read that one.
      if (stats.size === 0) return bareHolder(stats);
    }
    // Not a regular file (a symlink to an empty one?): unreadable, as a torn record is.
    return undefined;
  }

  /**
   * Writes the lease into `holder`: its record, or, when the disk has no block for one, no bytes
   * and the lease end as the holder's mtime (a bare lease). Resolves the end that others read.
   */
  async #writeLease(
    holder: Holder,
    token: string,
    expiresAt: number,
    tag: string | undefined,
  ): Promise<number> {
    const record: HolderRecord = { token, expiresAt, pid: PID, host: HOST };
    if (tag !== undefined) record.tag = tag;
    const bytes = encodeHolderInto(record, holder.bytes);
    try {
      if ((await this.#fs.write(holder.fd, bytes, 0, HOLDER_BYTES, 0)) === HOLDER_BYTES) {
        return expiresAt;
      }
    } catch (error) {
      const code = errorCode(error);
      if (code === undefined || !NO_SPACE.includes(code)) throw error;
    }
    // Freeing a block never needs one; a record cut short would otherwise be read as torn.
    if ((await this.#fs.fstat(holder.fd)).size !== 0) await this.#fs.ftruncate(holder.fd, 0);
    await this.#fs.futimes(holder.fd, Date.now() / 1000, expiresAt / 1000);
    // A filesystem that keeps coarser mtimes ends the lease earlier for everyone, this holder too.
    return Math.min(expiresAt, (await this.#fs.fstat(holder.fd)).mtimeMs);
  }

  /**
   * After a `link` failed with ENOENT: the lease file's directory is missing (made again) or
   * the holder file was removed (replaced by another, in which the caller writes the lease).
   * Both go together when the lease files' directory holds the holders' directory.
   */
  async #recover(holder: Holder, path: string): Promise<Holder> {
    // Before a new holder: HostGuards makes its directory again only inside an existing parent.
    await this.#makeDirectories(path);
    if ((await this.#fs.fstat(holder.fd)).nlink > 0) return holder;
    await this.#drop(holder);
    // The idle holders went with the same directory; each would cost the claim a try.
    for (const idle of this.#idle.splice(0)) {
      if ((await this.#fs.fstat(idle.fd)).nlink > 0) this.#idle.push(idle);
      else await this.#drop(idle);
    }
    return this.#takeHolder();
  }

  /**
   * Makes the directory of the lease file `path`, and those between it and `storeDirectory`,
   * where they are missing; rejects naming the first one when its parent is gone. Never
   * `storeDirectory` itself (a lease file at its top level): that one is only checked.
   */
  async #makeDirectories(path: string): Promise<void> {
    const top = this.#init.storeDirectory ?? dirname(this.#guards.directory);
    const missing: string[] = [];
    for (let at = dirname(path); at.startsWith(top + sep); at = dirname(at)) missing.unshift(at);
    if (missing.length === 0) {
      const leaf = dirname(path);
      await this.#fs.lstat(leaf).catch((error: unknown) => {
        throw Object.assign(
          new Error(
            `Cannot make the lease directory ${leaf} again: the store's own directory stays deleted`,
            {
              cause: error,
            },
          ),
          { code: errorCode(error) },
        );
      });
      return;
    }
    for (const directory of missing) {
      try {
        await this.#fs.mkdir(directory, { mode: this.#init.directoryMode });
      } catch (error) {
        const code = errorCode(error);
        if (code === 'EEXIST') continue;
        if (code !== 'ENOENT') throw error;
        throw Object.assign(
          new Error(
            `Cannot make the lease directory ${directory} again: ${dirname(directory)} is gone`,
            { cause: error },
          ),
          { code },
        );
      }
    }
  }

  async #takeHolder(): Promise<Holder> {
    return this.#idle.pop() ?? this.#createHolder();
  }

  async #createHolder(): Promise<Holder> {
    for (let tries = 0; ; tries++) {
      await this.#guards.ensureHolder();
      const path = `${this.#guards.holderPath}.${++holdersCreated}`;
      try {
        const fd = await this.#fs.open(
          path,
          O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW,
          this.#init.fileMode,
        );
        let stats: Stats;
        try {
          stats = await this.#fs.fstat(fd);
        } catch (error) {
          await this.#fs.close(fd).catch(() => {});
          await unless(['ENOENT'], undefined, () => this.#fs.unlink(path));
          throw error;
        }
        return { path, fd, ino: stats.ino, dev: stats.dev, bytes: Buffer.alloc(HOLDER_BYTES) };
      } catch (error) {
        // The holders' directory was removed from under us: make it and our holder file again.
        if (errorCode(error) !== 'ENOENT' || tries > 0) throw error;
        await this.#guards.recheckHolder();
      }
    }
  }

  async #giveBack(holder: Holder): Promise<void> {
    // A holder dropped on the way (a failed recovery) is closed: its fd number may be another file's by now.
    if (this.#dropped.has(holder)) return;
    if (this.#closed || this.#idle.length >= IDLE_HOLDERS) await this.#drop(holder);
    else this.#idle.push(holder);
  }

  async #drop(holder: Holder): Promise<void> {
    this.#dropped.add(holder);
    await this.#fs.close(holder.fd).catch(() => {});
    await unless(['ENOENT'], undefined, () => this.#fs.unlink(holder.path));
  }
}

/** Whether `stats` (of a lease file) are of `holder`'s inode. */
function isHolder(stats: Stats, holder: Holder): boolean {
  return stats.ino === holder.ino && stats.dev === holder.dev;
}
