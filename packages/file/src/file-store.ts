import type { Dirent, Stats } from 'node:fs';
import { mkdir, opendir, readdir } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  assertDuration,
  assertKnownOptions,
  assertPositiveInteger,
  BaseStore,
  type BaseStoreOptions,
  describeValue,
  isSessionError,
  type LockManager,
  SessionError,
  type SessionLock,
  type SessionRecord,
  type StoreCapabilities,
  type SweepProgress,
  type SweepResult,
  sleep,
  yieldToEventLoop,
} from '@sessile/core';
import { FileLocks } from './file-locks.js';
import {
  decodeHeader,
  decodePayload,
  EXPIRES_AT_OFFSET,
  encodeRecord,
  HEADER_BYTES,
  MAX_HEADER_BYTES,
} from './format.js';
import {
  asyncFileSystem,
  errorCode,
  type FileSystem,
  freeFile,
  fsyncDirectory,
  O_CREAT,
  O_EXCL,
  O_NOFOLLOW,
  O_RDWR,
  O_WRONLY,
  overwriteText,
  readAt,
  realpath,
  statfs,
  syncFileSystem,
  unless,
  writeAll,
} from './fs.js';
import {
  effectiveExpiresAt,
  MAX_MTIME_MS,
  mtimeFor,
  RecordFiles,
  SHARD_LENGTH,
  TEMP_SUFFIX,
  uniqueSuffix,
} from './record-files.js';
import { SpareFiles } from './spare-files.js';
import { abortedByAny, type Sweeper, WorkerSweeper } from './sweeper.js';
import { WriteGuards } from './write-guards.js';

const LOCKS_DIRECTORY = '.locks';
/** Holder files of the write guards, one per open store instance. */
const GUARDS_DIRECTORY = '.guards';
const CURSOR_FILE = '.sweep-cursor';
const SWEEP_LEASE_FILE = '.sweep-lease';
/** The cursor file's size: one page, more than a cursor naming any directory entry needs. */
const CURSOR_BYTES = 4096;
/** Entries one sweep batch examines; the suite's budgetMs test needs this at or below 1000. */
const SWEEP_BATCH = 500;
/** Transient rename failures (Windows sharing violations, antivirus, NFS) worth retrying. */
const RETRYABLE_RENAME_CODES = ['EPERM', 'EBUSY', 'EACCES'];
const RENAME_ATTEMPTS = 10;
/** Longest a spare file is kept for reuse; also at most half the grace period (see SpareFiles). */
const MAX_SPARE_KEEP_MS = 10_000;
/** Reads of one record that found it replaced under them before `get` takes its guard. */
const READ_ATTEMPTS = 4;
/** What a wary read reports when its file was replaced (and maybe reused) while it read. */
const REPLACED = Symbol('replaced');
const SHARD_NAME = /^[A-Za-z0-9_-]+$/;

export interface FileStoreOptions extends BaseStoreOptions {
  /** The store's directory. Created (mode `directoryMode`) if missing. Only this store should write inside it. */
  path: string;
  /**
   * `'full'` fsyncs each written file and its directory before a write resolves, so acknowledged
   * writes survive power loss, not only a process crash. `'normal'` (default) survives a process
   * crash only.
   */
  durability?: 'normal' | 'full';
  /** Mode of record, lease and temp files. Default `0o600`. */
  fileMode?: number;
  /** Mode of the store, shard and lock directories. Default `0o700`. */
  directoryMode?: number;
  /**
   * `'fast'` (default) judges expiry by a file's mtime, opening nothing, as mod_python's fast
   * cleanup did. `'verify'` also opens each expired candidate and checks its header before
   * removing it, so a file whose mtime was changed by something else is never removed early.
   */
  sweepMode?: 'fast' | 'verify';
  /**
   * How the store makes its filesystem calls. `'sync'` makes them on the event loop: on a local
   * disk each is a few microseconds of page-cache work, several times cheaper than a round trip
   * through libuv's thread pool. The sweep then runs on a worker thread, and fsync (with
   * `durability: 'full'`) always goes through the thread pool, so neither holds the event loop. `'async'` sends every call through the thread pool, so
   * a slow (network) filesystem never blocks the event loop. `'auto'` (default) picks `'sync'`
   * on Linux filesystems known to be local (ext4, xfs, btrfs, tmpfs, zfs, f2fs, overlay) and
   * `'async'` everywhere else.
   */
  io?: 'auto' | 'sync' | 'async';
  /**
   * Sweep removes temp files left by crashed writers, stale guards and foreign files
   * only once they have been untouched for this long, so writes in flight are never disturbed.
   * Default 60 000.
   */
  graceMs?: number;
  /** How long one sweep may hold the single-sweeper lock without renewing it. Default 60 000. */
  sweepLeaseMs?: number;
  /**
   * A write guard (of a record or of a lock's lease file) whose holder has not heartbeaten for
   * this long belonged to a process that died mid-write and is taken over. Default 5 000;
   * values below 2 000 count as 2 000.
   */
  guardStaleMs?: number;
  /** The most files a sweep, `count` or `ids` has open or stats at once. Default 32. */
  maxOpenFiles?: number;
  /**
   * Replaces the `rename(2)` used to move a finished temp file into place, e.g. to route it
   * through a filesystem shim. It must reject with the errno code on failure; EPERM, EBUSY and
   * EACCES are retried with bounded back-off. Default `fs.rename`.
   */
  renameFile?: (from: string, to: string) => Promise<void>;
  /**
   * Reuse the files of replaced records: a write links the record's old inode to a spare
   * name before renaming the new file into place, and a later write in the same shard
   * directory writes into a spare instead of allocating a new file. On ext4 this makes an
   * update several times cheaper (allocating and freeing inodes is what it pays for).
   * Default `true` on Linux filesystems known to be local, `false` elsewhere. Turn it off when
   * other programs read record files directly and may hold one open for long (a backup tool).
   */
  reuseFiles?: boolean;
  /**
   * How long a replaced record's file rests before another write goes into it; a read that
   * took longer than this checks that it read the record's current file. Every process that
   * opens the directory must use the same value. Default 100.
   */
  reuseAfterMs?: number;
}

interface SweepCursor {
  shard: string;
  name: string;
  /** No expired record was left behind since this pass over the shards began. */
  clean: boolean;
}

const START_CURSOR: SweepCursor = { shard: '', name: '', clean: true };

const KNOWN_OPTIONS = [
  'path',
  'durability',
  'fileMode',
  'directoryMode',
  'sweepMode',
  'io',
  'graceMs',
  'sweepLeaseMs',
  'guardStaleMs',
  'maxOpenFiles',
  'renameFile',
  'reuseFiles',
  'reuseAfterMs',
  'maxRecordBytes',
] as const satisfies readonly (keyof FileStoreOptions)[];

function assertMode(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new TypeError(`${name} must be a non-negative integer, got ${describeValue(value)}`);
  }
}

type Settings = Required<
  Pick<
    FileStoreOptions,
    | 'durability'
    | 'fileMode'
    | 'directoryMode'
    | 'sweepMode'
    | 'io'
    | 'graceMs'
    | 'sweepLeaseMs'
    | 'guardStaleMs'
    | 'maxOpenFiles'
    | 'reuseAfterMs'
  >
> & { reuseFiles: boolean | undefined };

/** Validates the options (misuse is a `TypeError`, before anything touches the disk) and fills defaults. */
function resolveSettings(options: FileStoreOptions): Settings {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('FileStore.open needs an options object with a path');
  }
  if ('fsync' in options) {
    // Too far from 'durability' for assertKnownOptions to suggest it.
    throw new TypeError(
      "FileStore.open: unknown option 'fsync'; did you mean 'durability' ('full' fsyncs every write)?",
    );
  }
  assertKnownOptions(options, KNOWN_OPTIONS, 'FileStore.open');
  if (typeof options.path !== 'string' || options.path.length === 0) {
    throw new TypeError(
      `options.path must be a non-empty string naming a directory, got ${describeValue(options.path)}`,
    );
  }
  const settings: Settings = {
    durability: options.durability ?? 'normal',
    fileMode: options.fileMode ?? 0o600,
    directoryMode: options.directoryMode ?? 0o700,
    sweepMode: options.sweepMode ?? 'fast',
    io: options.io ?? 'auto',
    graceMs: options.graceMs ?? 60_000,
    sweepLeaseMs: options.sweepLeaseMs ?? 60_000,
    guardStaleMs: options.guardStaleMs ?? 5000,
    maxOpenFiles: options.maxOpenFiles ?? 32,
    reuseFiles: options.reuseFiles,
    reuseAfterMs: options.reuseAfterMs ?? 100,
  };
  if (settings.durability !== 'normal' && settings.durability !== 'full') {
    throw new TypeError(
      `durability must be 'normal' or 'full', got ${describeValue(settings.durability)}`,
    );
  }
  assertMode(settings.fileMode, 'fileMode');
  assertMode(settings.directoryMode, 'directoryMode');
  if (settings.sweepMode !== 'fast' && settings.sweepMode !== 'verify') {
    throw new TypeError(
      `sweepMode must be 'fast' or 'verify', got ${describeValue(settings.sweepMode)}`,
    );
  }
  if (!['auto', 'sync', 'async'].includes(settings.io)) {
    throw new TypeError(`io must be 'auto', 'sync' or 'async', got ${describeValue(settings.io)}`);
  }
  assertDuration(settings.graceMs, 'graceMs');
  assertDuration(settings.sweepLeaseMs, 'sweepLeaseMs', { zero: false });
  assertDuration(settings.guardStaleMs, 'guardStaleMs');
  assertDuration(settings.reuseAfterMs, 'reuseAfterMs');
  if (settings.reuseFiles !== undefined && typeof settings.reuseFiles !== 'boolean') {
    throw new TypeError(`reuseFiles must be a boolean, got ${describeValue(settings.reuseFiles)}`);
  }
  assertPositiveInteger(settings.maxOpenFiles, 'maxOpenFiles');
  if (options.maxRecordBytes !== undefined) {
    assertPositiveInteger(options.maxRecordBytes, 'maxRecordBytes');
  }
  if (options.renameFile !== undefined && typeof options.renameFile !== 'function') {
    throw new TypeError(`renameFile must be a function, got ${describeValue(options.renameFile)}`);
  }
  return settings;
}

function corruptRecord(reason: string): SessionError {
  return new SessionError('ERR_CORRUPT_RECORD', `Session record file is damaged: ${reason}`);
}

/**
 * One file per session, mod_python's FileSession done right: records in sharded directories,
 * atomic temp-file-and-rename writes, expiry readable from the mtime, host-wide lease-file locks,
 * and a bounded, resumable, single-runner sweep. Open it with `await FileStore.open({ path })`.
 */
export class FileStore extends BaseStore {
  readonly capabilities: StoreCapabilities = {
    shared: 'host',
    expiry: 'sweep',
    durable: true,
    expiryIndex: false,
  };
  readonly locks: LockManager;
  readonly #fileLocks: FileLocks;
  /** The store's directory, with symlinks resolved. */
  readonly path: string;
  /** `durability: 'full'`: fsync every written file and its directory. */
  readonly #fsync: boolean;
  readonly #fileMode: number;
  readonly #directoryMode: number;
  /** Every filesystem call on the store's paths; see `FileStoreOptions.io`. */
  readonly #fs: FileSystem;
  readonly #sweepLeaseMs: number;
  readonly #renameFile: (from: string, to: string) => Promise<void>;
  readonly #guards: WriteGuards;
  /** The record rules shared with the sweep worker. */
  readonly #files: RecordFiles;
  readonly #sweeper: Sweeper;
  /** Files of replaced records kept for later writes; undefined when reuse is off. */
  readonly #spares: SpareFiles | undefined;
  /** A read that took this long may have read a reused file (see `reuseAfterMs`). */
  readonly #reuseAfterMs: number;
  /** The sorted shard names the last sweep listed, and the store directory's link count then. */
  #shardList: { nlink: number; shards: string[] } | undefined;
  /** Shard directories checked to be plain directories inside `path`. */
  readonly #verifiedShards = new Set<string>();

  static async open(options: FileStoreOptions): Promise<FileStore> {
    const settings = resolveSettings(options);
    try {
      await mkdir(options.path, { recursive: true, mode: settings.directoryMode }).catch(
        (error: unknown) => {
          // A file in the way: mkdir says only EEXIST.
          if (errorCode(error) !== 'EEXIST') throw error;
          throw new SessionError(
            'ERR_STORE_IO',
            `Cannot open the file store: ${options.path} is not a directory`,
            { cause: error },
          );
        },
      );
      const root = await realpath(options.path);
      const stats = await asyncFileSystem.lstat(root);
      if (!stats.isDirectory()) throw new Error(`${root} is not a directory`);
      const traits = await probeFilesystem(root, settings.fileMode);
      return new FileStore(options, settings, root, traits);
    } catch (error) {
      if (isSessionError(error) || error instanceof TypeError) throw error;
      const detail = error instanceof Error ? error.message : String(error);
      throw new SessionError('ERR_STORE_IO', `Cannot open the file store: ${detail}`, {
        cause: error,
      });
    }
  }

  private constructor(
    options: FileStoreOptions,
    settings: Settings,
    root: string,
    traits: FilesystemTraits,
  ) {
    super(options);
    this.path = root;
    this.#fsync = settings.durability === 'full';
    this.#fileMode = settings.fileMode;
    this.#directoryMode = settings.directoryMode;
    const io = settings.io === 'auto' ? traits.io : settings.io;
    this.#fs = io === 'sync' ? syncFileSystem : asyncFileSystem;
    this.#sweepLeaseMs = settings.sweepLeaseMs;
    this.#renameFile = options.renameFile ?? ((from, to) => this.#fs.rename(from, to));
    this.#guards = new WriteGuards({
      directory: join(root, GUARDS_DIRECTORY),
      staleMs: settings.guardStaleMs,
      fileMode: settings.fileMode,
      directoryMode: settings.directoryMode,
      fs: this.#fs,
      asideName: (file) => `${file}.${uniqueSuffix()}${TEMP_SUFFIX}`,
    });
    this.locks = this.#fileLocks = new FileLocks({
      directory: join(root, LOCKS_DIRECTORY),
      guards: this.#guards,
      fileMode: this.#fileMode,
      directoryMode: this.#directoryMode,
      fs: this.#fs,
      shardOf: (id) => id.slice(0, SHARD_LENGTH),
    });
    const recordSettings = {
      path: root,
      mtimeExact: traits.mtimeExact,
      statIsEnough: traits.mtimeExact && traits.caseSensitive,
      sweepMode: settings.sweepMode,
      graceMs: settings.graceMs,
      maxOpenFiles: settings.maxOpenFiles,
    };
    this.#files = new RecordFiles(recordSettings, this.#fs, this.#guards);
    this.#reuseAfterMs = settings.reuseAfterMs;
    // A spare must be writable (rested) before it is too old to keep; else reuse never happens.
    const keepForMs = Math.min(MAX_SPARE_KEEP_MS, Math.floor(settings.graceMs / 2));
    this.#spares =
      (settings.reuseFiles ?? traits.io === 'sync') && settings.reuseAfterMs < keepForMs
        ? new SpareFiles({ fs: this.#fs, reuseAfterMs: settings.reuseAfterMs, keepForMs })
        : undefined;
    // With synchronous calls the sweep runs on a worker thread, so the disk never makes the
    // event loop wait for it; with thread-pool calls it needs no thread of its own.
    this.#sweeper =
      io === 'sync'
        ? new WorkerSweeper({
            settings: recordSettings,
            guardsDirectory: join(root, GUARDS_DIRECTORY),
            guardStaleMs: settings.guardStaleMs,
            fileMode: settings.fileMode,
            directoryMode: settings.directoryMode,
          })
        : this.#files;
  }

  // ---------------------------------------------------------------- records

  protected async _get(id: string, now: number): Promise<SessionRecord | undefined> {
    const file = this.#recordPath(id);
    for (let attempt = 1; attempt <= READ_ATTEMPTS; attempt++) {
      const read = await this.#readOnce(id, file, now, true);
      if (read !== REPLACED) return read;
    }
    // Replaced under every attempt: read once more holding the record's guard, which every
    // writer takes, so the file cannot change while it is read.
    if (!(await this.#shardExists(id))) return undefined;
    return this.#guards.run(file, async () => {
      const read = await this.#readOnce(id, file, now, false);
      return read === REPLACED ? undefined : read;
    });
  }

  /**
   * One read of the record at `file`. With `wary` set, a file that may have been replaced while
   * it was read, its inode reused for another write (see reuseFiles), is reported as REPLACED
   * instead of trusted: bytes that look wrong, or that took longer than `reuseAfterMs` to read,
   * count only if the file is still the record's and has not changed.
   */
  async #readOnce(
    id: string,
    file: string,
    now: number,
    wary: boolean,
  ): Promise<SessionRecord | undefined | typeof REPLACED> {
    const started = performance.now();
    const found = await this.#fs.readStart(file, MAX_HEADER_BYTES + this.maxRecordBytes);
    if (found === undefined) return undefined;
    if (!this.#verifiedShards.has(id.slice(0, SHARD_LENGTH))) await this.#verifyShard(id, false);
    const { stats, bytes } = found;
    if (bytes === undefined) return undefined;
    let read: SessionRecord | undefined | 'other-id' | SessionError;
    try {
      read = this.#decodeRecord(id, stats, bytes, now);
    } catch (error) {
      if (!(wary && isSessionError(error) && error.code === 'ERR_CORRUPT_RECORD')) throw error;
      read = error;
    }
    const doubtful =
      wary &&
      (read instanceof SessionError ||
        read === 'other-id' ||
        performance.now() - started >= this.#reuseAfterMs);
    if (doubtful && (await this.#replacedSince(file, stats))) return REPLACED;
    if (read instanceof SessionError) throw read;
    return read === 'other-id' ? undefined : read;
  }

  /** Checks the bytes of a record file; `'other-id'` when it is another id's. */
  #decodeRecord(
    id: string,
    stats: Stats,
    bytes: Buffer,
    now: number,
  ): SessionRecord | undefined | 'other-id' {
    if (stats.size > MAX_HEADER_BYTES + this.maxRecordBytes) {
      throw new SessionError(
        'ERR_RECORD_TOO_LARGE',
        `Stored record exceeds maxRecordBytes (${this.maxRecordBytes})`,
      );
    }
    const parsed = decodeHeader(id, bytes);
    if (parsed.kind === 'other-id') return 'other-id';
    if (parsed.kind === 'corrupt') throw corruptRecord(parsed.reason);
    const payload = decodePayload(parsed.header, bytes);
    if (payload.kind === 'corrupt') throw corruptRecord(payload.reason);
    const expiresAt = effectiveExpiresAt(
      parsed.header.expiresAt,
      stats.mtimeMs,
      this.#files.settings.mtimeExact,
    );
    if (expiresAt <= now) return undefined;
    return { data: payload.data, expiresAt };
  }

  /**
   * True when `file` no longer names the inode that `read` (its stats when it was read) came
   * from, or that inode changed since: what was read from it may be another write's.
   */
  async #replacedSince(file: string, read: Stats): Promise<boolean> {
    const current = await unless(['ENOENT', 'ENOTDIR'], undefined, () => this.#fs.lstat(file));
    return (
      current === undefined ||
      current.ino !== read.ino ||
      current.dev !== read.dev ||
      current.ctimeMs !== read.ctimeMs
    );
  }

  protected async _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
  ): Promise<boolean> {
    const file = this.#recordPath(id);
    if (!this.#verifiedShards.has(id.slice(0, SHARD_LENGTH))) await this.#verifyShard(id, true);
    const temp = await this.#writeTemp(id, record);
    let placed = false;
    try {
      return await this.#guards.serialize(file, async () => {
        // Creating where nothing exists needs no guard: link(2) fails if the name is taken.
        if (only === 'absent') {
          const linked = await unless(['EEXIST'], false, async () => {
            await this.#fs.link(temp, file);
            return true;
          });
          if (linked) {
            await this.#syncDirectory(file);
            return true;
          }
          if ((await this.#files.presence(id, file, now)) === 'live') return false;
        }
        const wrote = await this.#guards.hold(file, async () => {
          const presence =
            only === undefined ? undefined : await this.#files.presence(id, file, now);
          if (only === 'absent' && (presence === 'live' || presence === 'other')) return false;
          if (only === 'present' && presence !== 'live') return false;
          await this.#replace(temp, file, presence !== 'absent');
          placed = true;
          return true;
        });
        if (wrote) await this.#syncDirectory(file);
        return wrote;
      });
    } finally {
      if (!placed) await unless(['ENOENT'], undefined, () => this.#fs.unlink(temp));
    }
  }

  protected async _touch(id: string, expiresAt: number, now: number): Promise<boolean> {
    const file = this.#recordPath(id);
    return this.#guards.serialize(file, async () => {
      // The cheap path needs no cross-process guard: it moves the mtime of whatever file is
      // the record's, so a concurrent set replaces a touched record (touch, then set) and a
      // delete removes it.
      if (this.#files.settings.statIsEnough && !this.#fsync && expiresAt === mtimeFor(expiresAt)) {
        const extended = await this.#extendByMtime(id, file, expiresAt, now);
        if (extended !== undefined) return extended;
      }
      if (!(await this.#shardExists(id))) return false;
      // The header path writes through an open file, so it holds the guard: no other process
      // replaces the file (and reuses its inode, see reuseFiles) while it is open here.
      return this.#guards.hold(file, () => this.#touchHeader(id, file, expiresAt, now));
    });
  }

  /** touch by rewriting the header's expiry (and the mtime) of the record at `file`. */
  async #touchHeader(id: string, file: string, expiresAt: number, now: number): Promise<boolean> {
    const fd = await unless(['ENOENT', 'ELOOP', 'ENOTDIR'], undefined, () =>
      this.#fs.open(file, O_RDWR | O_NOFOLLOW),
    );
    if (fd === undefined) return false;
    try {
      const stats = await this.#fs.fstat(fd);
      if (!stats.isFile()) return false;
      const parsed = decodeHeader(id, await readAt(this.#fs, fd, MAX_HEADER_BYTES, 0));
      if (parsed.kind === 'other-id') return false;
      if (parsed.kind === 'corrupt') throw corruptRecord(parsed.reason);
      const header = parsed.header;
      if (stats.size !== HEADER_BYTES + id.length + header.payloadBytes) {
        throw corruptRecord('length does not match the header (torn or truncated)');
      }
      if (
        effectiveExpiresAt(header.expiresAt, stats.mtimeMs, this.#files.settings.mtimeExact) <= now
      )
        return false;
      const mtimeOnly =
        this.#files.settings.mtimeExact &&
        Number.isInteger(expiresAt) &&
        expiresAt === mtimeFor(expiresAt) &&
        (expiresAt > Math.ceil(header.expiresAt) || expiresAt === header.expiresAt);
      if (!mtimeOnly) {
        const field = Buffer.allocUnsafe(8);
        field.writeDoubleLE(expiresAt, 0);
        await writeAll(this.#fs, fd, field, EXPIRES_AT_OFFSET);
      }
      await this.#fs.futimes(fd, now / 1000, mtimeFor(expiresAt) / 1000);
      if (this.#fsync) await this.#fs.fsync(fd);
      return true;
    } finally {
      await this.#fs.close(fd);
    }
  }

  /**
   * touch's cheap path, the one mod_python's fast cleanup relied on: a live record whose expiry
   * moves later needs only its mtime moved (lstat + lutimes). `undefined` when the mtime alone
   * cannot decide (shortening, an mtime at or before `now`), so the caller reads the header.
   */
  async #extendByMtime(
    id: string,
    file: string,
    expiresAt: number,
    now: number,
  ): Promise<boolean | undefined> {
    if (!(await this.#shardExists(id))) return false;
    const stats = await unless(['ENOENT', 'ENOTDIR'], undefined, () => this.#fs.lstat(file));
    if (stats === undefined || !stats.isFile()) return false;
    const mtime = Math.round(stats.mtimeMs);
    // Below MAX_MTIME_MS the mtime is never earlier than the header's expiry (see effectiveExpiresAt).
    if (mtime <= now || mtime >= MAX_MTIME_MS || expiresAt <= mtime) return undefined;
    return unless(['ENOENT'], false, async () => {
      await this.#fs.lutimes(file, now / 1000, expiresAt / 1000);
      return true;
    });
  }

  /** False when the id's shard directory does not exist; throws when it is not a plain directory. */
  async #shardExists(id: string): Promise<boolean> {
    if (this.#verifiedShards.has(id.slice(0, SHARD_LENGTH))) return true;
    return unless(['ENOENT'], false, async () => {
      await this.#verifyShard(id, false);
      return true;
    });
  }

  protected async _delete(id: string, now: number): Promise<boolean> {
    const file = this.#recordPath(id);
    // No shard directory, no record (and nowhere to put the guard).
    if (!(await this.#shardExists(id))) return false;
    return this.#guards.run(file, async () => {
      const presence = await this.#files.presence(id, file, now);
      if (presence === 'absent' || presence === 'other') return false;
      const removed = await unless(['ENOENT'], false, async () => {
        // With file reuse on, the record becomes a spare: a rename frees no blocks, so the event
        // loop never waits for the disk to take them back (see SpareFiles).
        if (!(await this.#spares?.takeOver(file))) await this.#fs.unlink(file);
        return true;
      });
      if (removed) await this.#syncDirectory(file);
      return removed && presence === 'live';
    });
  }

  protected async _count(now: number): Promise<number> {
    let count = 0;
    for await (const _ of this.#liveIds(now)) count++;
    return count;
  }

  protected _ids(now: number): AsyncIterable<string> {
    return this.#liveIds(now);
  }

  protected async _clear(): Promise<void> {
    for await (const shard of this.#shards()) {
      const directory = join(this.path, shard);
      for await (const entries of this.#entryChunks(directory)) {
        await this.#files.forEachBounded(entries, async (entry) => {
          if (!entry.isFile() || !this.#files.isRecordName(shard, entry.name)) return;
          const file = join(directory, entry.name);
          await this.#guards.run(file, () => freeFile(file));
        });
      }
    }
  }

  protected async _close(): Promise<void> {
    await this.#sweeper.close();
    await this.#spares?.close();
    await this.#guards.close();
  }

  // ---------------------------------------------------------------- sweep

  protected async _sweep(progress: SweepProgress): Promise<SweepResult> {
    // The budget bounds the whole call, so a step that starts late stops early (see sweepStep).
    const deadline = Date.now() + progress.budgetMs;
    // Its own lease file, not SWEEP_LOCK_ID: core's cleanup policies hold that one around
    // their calls to sweep(), and this lock also covers callers that use no policy.
    const lock = await this.#fileLocks.tryLease(
      join(this.path, SWEEP_LEASE_FILE),
      this.#sweepLeaseMs,
    );
    // Another process (or call) is sweeping: one sweeper at a time, so this call does nothing.
    if (lock === undefined) return progress.result(false);
    // A step in flight stops before its next entry when the caller aborts or the lease is lost.
    const stop = abortedByAny([progress.signal, lock.signal]);
    try {
      return await this.#sweepFromCursor(progress, lock, deadline, stop.signal);
    } finally {
      stop.detach();
      await lock.release().catch(() => {});
    }
  }

  async #sweepFromCursor(
    progress: SweepProgress,
    lock: SessionLock,
    deadline: number,
    stop: AbortSignal,
  ): Promise<SweepResult> {
    const cursor = await this.#readCursor();
    if (cursor.shard === '' && cursor.name === '') {
      // Once per pass: holder files of write guards whose process died without closing.
      await this.#guards.removeDeadHolders(this.#files.leftoverGuardStaleMs());
    }
    const shards = await this.#listShards();
    let position: SweepCursor = { ...cursor };
    for (;;) {
      const size = progress.nextBatchSize(SWEEP_BATCH);
      if (size === 0) return progress.result(false);
      const step = await this.#sweeper.sweepStep(
        {
          shards,
          after: { shard: position.shard, name: position.name },
          size,
          now: progress.now,
          deadline,
          // A record with a write in flight in this process is left to the next pass.
          busy: this.#guards.busyKeys(),
        },
        stop,
      );
      progress.removed += step.removed;
      progress.scanned += step.scanned;
      // Lost the single-sweeper lease: another process may own the cursor now.
      if (lock.signal.aborted) return progress.result(false);
      if (step.leftBusy) position.clean = false;
      if (step.ended) {
        // The pass over every shard ended: done when nothing expired was left behind on the way.
        await this.#writeCursor(START_CURSOR);
        return progress.result(position.clean);
      }
      // Stopped before its first entry (an abort): the cursor stays where it was.
      if (step.last === undefined) return progress.result(false);
      position = { shard: step.last.shard, name: step.last.name, clean: position.clean };
      // Saved per batch, so even a sweeper that dies resumes near where it stopped.
      await this.#writeCursor(position);
      if (lock.expiresAt - Date.now() < this.#sweepLeaseMs / 2) await lock.extend();
      await yieldToEventLoop();
    }
  }

  async #readCursor(): Promise<SweepCursor> {
    const text = await unless(['ENOENT'], undefined, () =>
      this.#fs.readText(join(this.path, CURSOR_FILE)),
    );
    if (text === undefined) return { ...START_CURSOR };
    try {
      const value = JSON.parse(text) as Partial<SweepCursor>;
      if (
        typeof value.shard === 'string' &&
        typeof value.name === 'string' &&
        typeof value.clean === 'boolean'
      ) {
        return { shard: value.shard, name: value.name, clean: value.clean };
      }
    } catch {
      // A damaged cursor only costs a pass from the start.
    }
    return { ...START_CURSOR };
  }

  /**
   * Overwrites the cursor in place (see `overwriteText`): a sweep batch never creates or frees an
   * inode for it. A cursor torn by a crash fails to parse and only costs a pass from the start.
   */
  #writeCursor(cursor: SweepCursor): Promise<void> {
    const file = join(this.path, CURSOR_FILE);
    return overwriteText(this.#fs, file, JSON.stringify(cursor), CURSOR_BYTES, this.#fileMode);
  }

  // ---------------------------------------------------------------- helpers

  /** `<path>/<shard>/<id>`, checked to stay inside `path` (ids are validated, so this is a second line). */
  #recordPath(id: string): string {
    const file = join(this.path, id.slice(0, SHARD_LENGTH), id);
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
  async #verifyShard(id: string, create: boolean): Promise<void> {
    const shard = id.slice(0, SHARD_LENGTH);
    if (this.#verifiedShards.has(shard)) return;
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
    this.#verifiedShards.add(shard);
  }

  /** Writes the record to a temp file (a spare one when there is one) and returns its name. */
  async #writeTemp(id: string, record: SessionRecord): Promise<string> {
    const directory = join(this.path, id.slice(0, SHARD_LENGTH));
    const bytes = encodeRecord(id, record.data, record.expiresAt);
    const spare = await this.#spares?.open(directory);
    const temp = spare?.file ?? join(directory, `${id}.${uniqueSuffix()}${TEMP_SUFFIX}`);
    const fd =
      spare?.fd ??
      (await this.#fs.open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, this.#fileMode));
    try {
      await writeAll(this.#fs, fd, bytes, 0);
      if (spare !== undefined && spare.size > bytes.length) {
        await this.#fs.ftruncate(fd, bytes.length);
      }
      await this.#fs.futimes(fd, Date.now() / 1000, mtimeFor(record.expiresAt) / 1000);
      if (this.#fsync) await this.#fs.fsync(fd);
    } catch (error) {
      await this.#fs.close(fd).catch(() => {});
      await unless(['ENOENT'], undefined, () => this.#fs.unlink(temp));
      throw error;
    }
    await this.#fs.close(fd);
    return temp;
  }

  /**
   * Renames `temp` over `file`. With file reuse on, the inode being replaced is first linked to
   * a spare name, so the rename frees nothing and a later write can go into it.
   */
  async #replace(temp: string, file: string, mayExist: boolean): Promise<void> {
    const spare = mayExist ? this.#spares?.nameFor(file) : undefined;
    const kept =
      spare !== undefined &&
      (await this.#fs.link(file, spare).then(
        () => true,
        () => false, // nothing there (ENOENT) or nothing worth keeping: the rename frees it
      ));
    try {
      await this.#renameIntoPlace(temp, file);
    } catch (error) {
      // The old record stays in place: it must not also be a spare.
      if (kept) await unless(['ENOENT'], undefined, () => this.#fs.unlink(spare));
      throw error;
    }
    if (kept) this.#spares?.keep(spare);
  }

  /** rename(2), retried with bounded back-off on errors that pass (Windows, antivirus, NFS). */
  async #renameIntoPlace(from: string, to: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#renameFile(from, to);
        return;
      } catch (error) {
        const code = errorCode(error);
        if (
          code === undefined ||
          !RETRYABLE_RENAME_CODES.includes(code) ||
          attempt >= RENAME_ATTEMPTS
        ) {
          throw error;
        }
        await sleep(Math.min(200, 5 * 2 ** (attempt - 1)));
      }
    }
  }

  async #syncDirectory(file: string): Promise<void> {
    if (this.#fsync) await fsyncDirectory(this.#fs, join(file, '..'));
  }

  /** Shard directory names, sorted (the sweep's resumable order). Small: at most 64² names. */
  async #listShards(): Promise<string[]> {
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
  async *#shards(): AsyncGenerator<string> {
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
  async *#entryChunks(directory: string): AsyncGenerator<Dirent[]> {
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

  async *#liveIds(now: number): AsyncGenerator<string> {
    for await (const shard of this.#shards()) {
      const directory = join(this.path, shard);
      for await (const entries of this.#entryChunks(directory)) {
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
   * has not reached yet) has its header read, so `count` and `ids` agree with `get`.
   */
  async #isLiveByStat(id: string, file: string, now: number): Promise<boolean> {
    const stats = await unless(['ENOENT'], undefined, () => this.#fs.lstat(file));
    if (stats === undefined || !stats.isFile()) return false;
    if (this.#files.certainlyLive(stats, now)) return true;
    return (await this.#files.headerPresence(id, file, now)) === 'live';
  }
}

interface FilesystemTraits {
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

/** Probes the filesystem under `root` once, at open. */
async function probeFilesystem(root: string, fileMode: number): Promise<FilesystemTraits> {
  const name = `.probe.${uniqueSuffix()}${TEMP_SUFFIX}`;
  const probe = join(root, name);
  const fd = await asyncFileSystem.open(probe, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, fileMode);
  try {
    const sampleMs = 1_700_000_000_123;
    await asyncFileSystem.futimes(fd, sampleMs / 1000, sampleMs / 1000);
    const stats = await asyncFileSystem.fstat(fd);
    const folded = await unless(['ENOENT'], undefined, () =>
      asyncFileSystem.lstat(join(root, name.toUpperCase())),
    );
    return {
      mtimeExact: Math.round(stats.mtimeMs) === sampleMs,
      caseSensitive: folded === undefined,
      io: (await localFilesystem(root)) ? 'sync' : 'async',
    };
  } finally {
    await asyncFileSystem.close(fd);
    await unless(['ENOENT'], undefined, () => asyncFileSystem.unlink(probe));
  }
}
