import type { Dirent } from 'node:fs';
import { opendir, readdir, utimes } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { SessionError } from '@sessile/core';
import {
  asyncFileSystem,
  errorCode,
  type FileSystem,
  fsyncDirectory,
  NO_SPACE,
  O_CREAT,
  O_EXCL,
  O_NOFOLLOW,
  O_WRONLY,
  statfs,
  unless,
} from './fs.js';
import { type RecordFiles, SHARD_LENGTH, TEMP_SUFFIX, uniqueSuffix } from './record-files.js';

/** Lease files of session locks, `<path>/.locks/<shard>/<id>`. */
export const LOCKS_DIRECTORY = '.locks';
/** Holder files of the write guards, one per open store instance. */
export const GUARDS_DIRECTORY = '.guards';
export const CURSOR_FILE = '.sweep-cursor';
export const SWEEP_LEASE_FILE = '.sweep-lease';
const SHARD_NAME = /^[A-Za-z0-9_-]+$/;

/**
 * Where a store's records live: `<path>/<shard>/<id>`, shard directories checked to be plain
 * directories inside `path`, and the walks over them that `count`, `ids`, `clear` and the
 * sweep make.
 */
export class StoreLayout {
  /** The store's directory, with symlinks resolved. */
  readonly path: string;
  readonly #fs: FileSystem;
  readonly #files: RecordFiles;
  readonly #directoryMode: number;
  /** The sorted shard names the last sweep listed, and the store directory's link count then. */
  #shardList: { nlink: number; shards: string[] } | undefined;
  /** Shard directories checked to be plain directories inside `path`. */
  readonly #verifiedShards = new Set<string>();
  /** With `durability: 'full'`, shards whose entry in `path` this store has fsynced. */
  readonly #syncedShards = new Set<string>();

  constructor(path: string, fs: FileSystem, files: RecordFiles, directoryMode: number) {
    this.path = path;
    this.#fs = fs;
    this.#files = files;
    this.#directoryMode = directoryMode;
  }

  /** True once the id's shard was checked (the hot paths skip the call then). */
  isVerified(id: string): boolean {
    return this.#verifiedShards.has(id.slice(0, SHARD_LENGTH));
  }

  /** True once the id's shard was checked and, with `durability: 'full'`, its entry synced. */
  isWritable(id: string): boolean {
    const shard = id.slice(0, SHARD_LENGTH);
    return (
      this.#verifiedShards.has(shard) &&
      (!this.#files.settings.fsync || this.#syncedShards.has(shard))
    );
  }

  /** `<path>/<shard>` of a validated id; concatenated, as `path.join` costs more than the hot paths need. */
  shardPath(id: string): string {
    return `${this.path}${sep}${id.slice(0, SHARD_LENGTH)}`;
  }

  /** `<path>/<shard>/<id>`, checked to stay inside `path` (ids are validated, so this is a second line). */
  recordPath(id: string): string {
    const file = `${this.shardPath(id)}${sep}${id}`;
    if (!file.startsWith(this.path + sep)) {
      throw new SessionError(
        'ERR_INVALID_SESSION_ID',
        'Session id resolves outside the store directory',
      );
    }
    return file;
  }

  /**
   * Makes sure the id's shard is a plain directory inside `path` (never a symlink planted to
   * lead elsewhere), creating it when `create` is set. Checked once per shard per store.
   */
  async verifyShard(id: string, create: boolean): Promise<void> {
    const shard = id.slice(0, SHARD_LENGTH);
    if (create ? this.isWritable(id) : this.#verifiedShards.has(shard)) return;
    const directory = join(this.path, shard);
    if (create) {
      await unless(['EEXIST'], undefined, () =>
        this.#fs.mkdir(directory, { mode: this.#directoryMode }),
      );
    }
    // lstat does not follow a final symlink, and `path` was resolved at open: a directory here
    // is a plain one inside the store.
    const stats = await this.#fs.lstat(directory);
    if (!stats.isDirectory()) {
      throw new SessionError(
        'ERR_STORE_IO',
        `Refusing to use ${directory}: it is not a plain directory inside the store (a symlink?)`,
      );
    }
    // A record fsynced into a shard whose own entry in `path` is not on disk is lost with it in
    // a power cut. The shard may be another process's, made just now and not yet synced, so
    // this syncs `path` on the first write into each shard, not only after its own mkdir.
    if (create && this.#files.settings.fsync) {
      await fsyncDirectory(this.#fs, this.path);
      this.#syncedShards.add(shard);
    }
    this.#verifiedShards.add(shard);
  }

  /**
   * Runs `call`, and once more when it failed with ENOENT because the id's shard directory was
   * checked but is gone now: removed by hand (`rm -rf <path>/*` to log everyone out) or by a
   * tmp cleaner. The check is forgotten first, so the second run makes the shard again or finds
   * nothing there; without it, every write to the shard failed until the store was reopened.
   */
  async inShard<T>(id: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      if (errorCode(error) !== 'ENOENT' || !(await this.#lostShard(id))) throw error;
      return call();
    }
  }

  /** True, with its check forgotten, when the id's shard was checked and no longer exists. */
  async #lostShard(id: string): Promise<boolean> {
    const shard = id.slice(0, SHARD_LENGTH);
    if (!this.#verifiedShards.has(shard)) return false;
    if ((await this.#fs.lstatIfAny(this.shardPath(id))) !== undefined) return false;
    this.#verifiedShards.delete(shard);
    this.#syncedShards.delete(shard);
    return true;
  }

  /** False when the id's shard directory does not exist; throws when it is not a plain directory. */
  async shardExists(id: string): Promise<boolean> {
    if (this.#verifiedShards.has(id.slice(0, SHARD_LENGTH))) return true;
    return unless(['ENOENT'], false, async () => {
      await this.verifyShard(id, false);
      return true;
    });
  }

  /** Shard directory names, sorted (the sweep's resumable order). Small: at most 64² names. */
  async listShards(): Promise<string[]> {
    // Making or removing a subdirectory changes the store directory's link count, so an
    // unchanged count means an unchanged list (btrfs keeps directories at 1: always list there).
    const { nlink } = await this.#fs.lstat(this.path);
    if (this.#shardList !== undefined && nlink > 1 && nlink === this.#shardList.nlink) {
      return this.#shardList.shards;
    }
    const entries = await readdir(this.path, { withFileTypes: true });
    const shards = entries
      .filter(
        (entry) =>
          entry.isDirectory() && entry.name.length === SHARD_LENGTH && SHARD_NAME.test(entry.name),
      )
      .map((entry) => entry.name)
      .sort();
    this.#shardList = { nlink, shards };
    return shards;
  }

  /** Streams shard names without sorting, for `count`, `ids` and `clear`. */
  async *shards(): AsyncGenerator<string> {
    const directory = await opendir(this.path, { bufferSize: 64 });
    for await (const entry of directory) {
      if (
        entry.isDirectory() &&
        entry.name.length === SHARD_LENGTH &&
        SHARD_NAME.test(entry.name)
      ) {
        yield entry.name;
      }
    }
  }

  /** Streams a directory's entries in chunks of `maxOpenFiles`, never holding every name. */
  async *entryChunks(directory: string): AsyncGenerator<Dirent[]> {
    const dir = await unless(['ENOENT', 'ENOTDIR'], undefined, () =>
      opendir(directory, { bufferSize: 64 }),
    );
    if (dir === undefined) return;
    let chunk: Dirent[] = [];
    for await (const entry of dir) {
      chunk.push(entry);
      if (chunk.length >= this.#files.settings.maxOpenFiles) {
        yield chunk;
        chunk = [];
      }
    }
    if (chunk.length > 0) yield chunk;
  }

  async *liveIds(now: number): AsyncGenerator<string> {
    for await (const shard of this.shards()) {
      const directory = join(this.path, shard);
      for await (const entries of this.entryChunks(directory)) {
        const live = await Promise.all(
          entries.map(async (entry) => {
            if (!entry.isFile() || !this.#files.isRecordName(shard, entry.name)) return undefined;
            return (await this.#isLiveByStat(entry.name, join(directory, entry.name), now))
              ? entry.name
              : undefined;
          }),
        );
        for (const id of live) if (id !== undefined) yield id;
      }
    }
  }

  /**
   * Judges liveness from the mtime; only a file whose mtime says expired (normally one the sweep
   * has not reached yet) has its header read, so `count` and `ids` agree with `get`. A damaged
   * record is listed, as one with a live mtime is: its expiry is unknown, and `get` reports it
   * (`ERR_CORRUPT_RECORD`) where leaving it out would hide the damage from a listing.
   */
  async #isLiveByStat(id: string, file: string, now: number): Promise<boolean> {
    const stats = await unless(['ENOENT'], undefined, () => this.#fs.lstat(file));
    if (stats === undefined || !stats.isFile()) return false;
    if (this.#files.certainlyLive(stats, now)) return true;
    const presence = await this.#files.headerPresence(id, file, now);
    return presence === 'live' || presence === 'corrupt';
  }
}

export interface FilesystemTraits {
  /** mtimes round-trip to the millisecond (ext4, xfs, btrfs, apfs, tmpfs do). */
  mtimeExact: boolean;
  /** `a` and `A` are different names (false on default macOS and Windows volumes). */
  caseSensitive: boolean;
  /** What `io: 'auto'` means here: `'sync'` only on a filesystem known to be local. */
  io: 'sync' | 'async';
}

/** `statfs` magic numbers of Linux filesystems that live on a local disk or in memory. */
const LOCAL_FILESYSTEM_TYPES = new Set([
  0xef53, // ext2, ext3, ext4
  0x58465342, // xfs
  0x9123683e, // btrfs
  0x01021994, // tmpfs
  0x858458f6, // ramfs
  0x2fc12fc1, // zfs
  0xf2f52010, // f2fs
  0x794c7630, // overlayfs
]);

async function localFilesystem(root: string): Promise<boolean> {
  if (process.platform !== 'linux') return false;
  const stats = await unless(['ENOSYS'], undefined, () => statfs(root));
  return stats !== undefined && LOCAL_FILESYSTEM_TYPES.has(stats.type);
}

const PROBE_MTIME_MS = 1_700_000_000_123;

/** Probes the filesystem under `root` once, at open. */
export async function probeFilesystem(root: string, fileMode: number): Promise<FilesystemTraits> {
  const name = `.probe.${uniqueSuffix()}${TEMP_SUFFIX}`;
  const probe = join(root, name);
  const fd = await unless(NO_SPACE, undefined, () =>
    asyncFileSystem.open(probe, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, fileMode),
  );
  // No inode to spare (a full disk): a store must still open, for a sweep to free some.
  if (fd === undefined) return probeInPlace(root);
  try {
    await asyncFileSystem.futimes(fd, PROBE_MTIME_MS / 1000, PROBE_MTIME_MS / 1000);
    const stats = await asyncFileSystem.fstat(fd);
    const folded = await unless(['ENOENT'], undefined, () =>
      asyncFileSystem.lstat(join(root, name.toUpperCase())),
    );
    return {
      mtimeExact: Math.round(stats.mtimeMs) === PROBE_MTIME_MS,
      caseSensitive: folded === undefined,
      io: (await localFilesystem(root)) ? 'sync' : 'async',
    };
  } finally {
    await asyncFileSystem.close(fd);
    await unless(['ENOENT'], undefined, () => asyncFileSystem.unlink(probe));
  }
}

/**
 * The probe without a file of its own: the mtime is tried on `root` itself, then put back; case
 * is judged by an entry of `root` whose name has letters (its name with the case swapped names
 * the same inode only where case is folded), and taken as folded when there is none, which
 * costs speed, never a record.
 */
async function probeInPlace(root: string): Promise<FilesystemTraits> {
  const before = await asyncFileSystem.lstat(root);
  let mtimeExact: boolean;
  try {
    await utimes(root, PROBE_MTIME_MS / 1000, PROBE_MTIME_MS / 1000);
    mtimeExact = Math.round((await asyncFileSystem.lstat(root)).mtimeMs) === PROBE_MTIME_MS;
  } finally {
    await utimes(root, before.atime, before.mtime);
  }
  let caseSensitive = false;
  for (const name of await readdir(root)) {
    const swapped = swapCase(name);
    if (swapped === name) continue;
    const [entry, other] = await Promise.all([
      unless(['ENOENT'], undefined, () => asyncFileSystem.lstat(join(root, name))),
      unless(['ENOENT'], undefined, () => asyncFileSystem.lstat(join(root, swapped))),
    ]);
    if (entry === undefined) continue;
    caseSensitive = other === undefined || other.ino !== entry.ino || other.dev !== entry.dev;
    break;
  }
  return { mtimeExact, caseSensitive, io: (await localFilesystem(root)) ? 'sync' : 'async' };
}

function swapCase(name: string): string {
  return name.replace(/[a-z]/gi, (c) =>
    c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase(),
  );
}
