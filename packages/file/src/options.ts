import {
  assertDuration,
  assertKnownOptions,
  assertPositiveInteger,
  type BaseStoreOptions,
  describeValue,
} from '@sessile/core/store';

export interface FileStoreOptions extends BaseStoreOptions {
  /** The store's directory. Created (mode `directoryMode`) if missing. Only this store should write inside it. */
  path: string;
  /**
   * `'full'` fsyncs each written file and its directory before a write resolves, so acknowledged
   * writes survive power loss, not only a process crash. `'normal'` (default) survives a process
   * crash only.
   */
  durability?: 'normal' | 'full';
  /** Mode of record, lease and temp files, keeping the owner's read and write. Default `0o600`. */
  fileMode?: number;
  /** Mode of the store, shard and lock directories, keeping the owner's `0o700`. Default `0o700`. */
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

/** The largest `maxOpenFiles`: a sweep step starts that many calls at once. */
const MAX_OPEN_FILES = 65_536;

/** Permission bits and setuid, setgid, sticky: what a mode passed to open(2) and mkdir(2) means. */
const MAX_MODE = 0o7777;

function assertMode(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_MODE) {
    throw new TypeError(
      `${name} must be an integer from 0 to 0o7777 (permission bits), got ${describeValue(value)}`,
    );
  }
}

/**
 * The owner bits a mode must keep: the store reads back and rewrites its own files (0o600), and
 * makes entries in its own directories (0o700). Without them every process but root's fails, at
 * open (directories) or at its first read (files).
 */
function assertOwnerCan(value: number, name: string, bits: number, what: string): void {
  if ((value & bits) !== bits) {
    throw new TypeError(
      `${name} must let the owner ${what} (0o${bits.toString(8)}), got 0o${value.toString(8)}`,
    );
  }
}

export type Settings = Required<
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

/**
 * Validates the options (misuse is a `TypeError`, before anything touches the disk) and fills
 * defaults, as `method` (`open` or `probe`, which its errors name) checks them.
 */
export function resolveSettings(options: FileStoreOptions, method: 'open' | 'probe'): Settings {
  const caller = `FileStore.${method}`;
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`${caller} needs an options object with a path`);
  }
  if ('fsync' in options) {
    // Too far from 'durability' for assertKnownOptions to suggest it.
    throw new TypeError(
      `${caller}: unknown option 'fsync'; did you mean 'durability' ('full' fsyncs every write)?`,
    );
  }
  assertKnownOptions(options, KNOWN_OPTIONS, caller);
  if (typeof options.path !== 'string' || options.path.length === 0) {
    throw new TypeError(
      `options.path must be a non-empty string naming a directory, got ${describeValue(options.path)}`,
    );
  }
  // No file name can hold one: Node refuses it, with an error that does not name the option.
  if (options.path.includes('\0')) {
    throw new TypeError(
      `options.path must not contain a NUL character, got ${describeValue(options.path)}`,
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
  assertOwnerCan(settings.fileMode, 'fileMode', 0o600, 'read and write');
  assertMode(settings.directoryMode, 'directoryMode');
  assertOwnerCan(settings.directoryMode, 'directoryMode', 0o700, 'read, write and search');
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
  // `clear`, `ownedBy` and a thread-pool sweep start that many workers at once: a huge count
  // ran out of memory there, or failed as an invalid array length, long after open.
  if (settings.maxOpenFiles > MAX_OPEN_FILES) {
    throw new TypeError(
      `maxOpenFiles must be at most ${MAX_OPEN_FILES}, got ${describeValue(settings.maxOpenFiles)}`,
    );
  }
  if (options.maxRecordBytes !== undefined) {
    assertPositiveInteger(options.maxRecordBytes, 'maxRecordBytes');
  }
  if (options.renameFile !== undefined && typeof options.renameFile !== 'function') {
    throw new TypeError(`renameFile must be a function, got ${describeValue(options.renameFile)}`);
  }
  return settings;
}
