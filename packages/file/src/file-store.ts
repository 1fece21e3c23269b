import { mkdir, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  type HeldLease,
  isSessionError,
  type LockManager,
  type OwnedSession,
  SessionError,
  type SessionRecord,
  type StoreCapabilities,
  type StoreProbe,
  type SweepResult,
} from '@sessile/core';
import {
  BaseStore,
  danglingLinkAbove,
  HostGuards,
  otherFilesIn,
  probeStoreDirectory,
  pseudoFilesystemOf,
  type StoreDirectoryRules,
  type SweepProgress,
} from '@sessile/core/store';
import { EventLoopTurns } from './event-loop-turns.js';
import { FileLocks } from './file-locks.js';
import {
  asyncFileSystem,
  errorCode,
  fsyncDirectory,
  NO_SPACE,
  realpath,
  syncFileSystem,
  unless,
} from './fs.js';
import {
  type FilesystemTraits,
  GUARDS_DIRECTORY,
  LOCKS_DIRECTORY,
  probeFilesystem,
  StoreLayout,
} from './layout.js';
import { type FileStoreOptions, resolveSettings, type Settings } from './options.js';
import { OwnerRebuild } from './owner-rebuild.js';
import { RecordFiles, SHARD_LENGTH, TEMP_SUFFIX, uniqueSuffix } from './record-files.js';
import { RecordIo } from './record-io.js';
import { SpareFiles } from './spare-files.js';
import { StoreSweep } from './store-sweep.js';
import { WorkerSweeper } from './sweeper.js';

export type { FileStoreOptions } from './options.js';

/** Longest a spare file is kept for reuse; also at most half the grace period (see SpareFiles). */
const MAX_SPARE_KEEP_MS = 10_000;

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
    ownerIndex: true,
  };
  readonly locks: LockManager;
  readonly #locks: FileLocks;
  /** The store's directory, with symlinks resolved. */
  readonly path: string;
  readonly #guards: HostGuards;
  readonly #layout: StoreLayout;
  readonly #records: RecordIo;
  readonly #sweep: StoreSweep;
  readonly #closeSweeper: () => Promise<void>;
  readonly #spares: SpareFiles | undefined;
  readonly #ownerRebuild: OwnerRebuild;
  /** Calls made on the event loop (`io: 'sync'`) take turns with it. */
  readonly #turns: EventLoopTurns;

  /**
   * What `open(options)` would find at `options.path`, creating nothing: a file store (its
   * `.guards` directory is there), none yet (a missing or empty directory, which `open` makes
   * one of), or why `open` would fail (a file, a directory of other files, no right to write).
   */
  static async probe(options: FileStoreOptions): Promise<StoreProbe> {
    resolveSettings(options, 'probe');
    return probeDirectory(options.path);
  }

  static async open(options: FileStoreOptions): Promise<FileStore> {
    const settings = resolveSettings(options, 'open');
    // Node's recursive mkdir never returns on some /proc paths, and kernel files are not storage.
    const pseudo = pseudoFilesystemOf(options.path);
    if (pseudo !== undefined) {
      throw new SessionError(
        'ERR_STORE_IO',
        `Cannot open the file store: ${options.path} is on a ${pseudo} filesystem, whose files are kernel interfaces, not storage`,
      );
    }
    try {
      const made = await mkdir(options.path, {
        recursive: true,
        mode: settings.directoryMode,
      }).catch(async (error: unknown) => {
        if (errorCode(error) !== 'EEXIST') throw (await uncreatable(options.path, error)) ?? error;
        // A file in the way: mkdir says only EEXIST.
        throw new SessionError(
          'ERR_STORE_IO',
          `Cannot open the file store: ${options.path} is not a directory`,
          { cause: error },
        );
      });
      const root = await realpath(options.path);
      const stats = await asyncFileSystem.lstat(root);
      if (!stats.isDirectory()) throw new Error(`${root} is not a directory`);
      if (made === undefined) await assertStoreDirectory(root);
      else if (settings.durability === 'full') await syncMadeDirectories(made, root);
      // Made now, while there is room: a delete takes a guard there, and on a full disk a
      // directory cannot be made, so a store that had only created records could delete none.
      // Made before anything else: another process opening the directory at the same moment
      // takes it for a file store only by this directory (see assertStoreDirectory).
      await unless(['EEXIST', ...NO_SPACE], undefined, () =>
        asyncFileSystem.mkdir(join(root, GUARDS_DIRECTORY), { mode: settings.directoryMode }),
      );
      const traits = await probeFilesystem(root, settings.fileMode);
      const store = new FileStore(options, settings, root, traits);
      // An owner index that was lost is listed again from the records, off the open's path.
      store.#ownerRebuild.start();
      return store;
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
    const io = settings.io === 'auto' ? traits.io : settings.io;
    const fs = io === 'sync' ? syncFileSystem : asyncFileSystem;
    const turns = new EventLoopTurns(io === 'sync');
    this.#turns = turns;
    const { fileMode, directoryMode } = settings;
    const guards = new HostGuards({
      directory: join(root, GUARDS_DIRECTORY),
      staleMs: settings.guardStaleMs,
      fileMode,
      directoryMode,
      fs,
      asideName: (file) => `${file}.${uniqueSuffix()}${TEMP_SUFFIX}`,
    });
    this.#guards = guards;
    const locks = new FileLocks({
      directory: join(root, LOCKS_DIRECTORY),
      recordsDirectory: root,
      guards,
      fileMode,
      directoryMode,
      fs,
      turns,
      shardOf: (id) => id.slice(0, SHARD_LENGTH),
      inShard: (id, call) => this.#layout.inShard(id, call),
      prepare: (id) =>
        this.#layout.isWritable(id) ? undefined : this.#layout.verifyShard(id, true),
      read: (id) => this.#records.get(id, Date.now()),
    });
    this.locks = locks;
    this.#locks = locks;
    const recordSettings = {
      path: root,
      mtimeExact: traits.mtimeExact,
      caseSensitive: traits.caseSensitive,
      statIsEnough: traits.mtimeExact && traits.caseSensitive,
      sweepMode: settings.sweepMode,
      graceMs: settings.graceMs,
      maxOpenFiles: settings.maxOpenFiles,
      fileMode,
      directoryMode,
      fsync: settings.durability === 'full',
    };
    const files = new RecordFiles(recordSettings, fs, guards);
    const layout = new StoreLayout(root, fs, files, directoryMode);
    this.#layout = layout;
    // A spare must be writable (rested) before it is too old to keep; else reuse never happens.
    const keepForMs = Math.min(MAX_SPARE_KEEP_MS, Math.floor(settings.graceMs / 2));
    this.#spares =
      (settings.reuseFiles ?? traits.io === 'sync') && settings.reuseAfterMs < keepForMs
        ? new SpareFiles({ fs, reuseAfterMs: settings.reuseAfterMs, keepForMs })
        : undefined;
    this.#records = new RecordIo({
      layout,
      fs,
      files,
      guards,
      spares: this.#spares,
      fsync: settings.durability === 'full',
      fileMode,
      renameFile: options.renameFile ?? ((from, to) => fs.rename(from, to)),
      reuseAfterMs: settings.reuseAfterMs,
      maxRecordBytes: () => this.maxRecordBytes,
      assertHeld: (lease) => locks.assertHeld(lease),
    });
    // With synchronous calls the sweep runs on a worker thread, so the disk never makes the
    // event loop wait for it; with thread-pool calls it needs no thread of its own.
    const sweeper =
      io === 'sync'
        ? new WorkerSweeper({
            settings: recordSettings,
            guardsDirectory: join(root, GUARDS_DIRECTORY),
            guardStaleMs: settings.guardStaleMs,
            fileMode,
            directoryMode,
          })
        : files;
    this.#closeSweeper = () => sweeper.close();
    this.#ownerRebuild = new OwnerRebuild({
      layout,
      files: () =>
        io === 'async' ? files : new RecordFiles(recordSettings, asyncFileSystem, guards),
      owners: files.owners,
      locks,
    });
    this.#sweep = new StoreSweep({
      layout,
      fs,
      files,
      guards,
      locks,
      sweeper,
      sweepLeaseMs: settings.sweepLeaseMs,
      fileMode,
    });
  }

  protected override ioLocation(): string {
    return this.path;
  }

  protected _get(id: string, now: number): Promise<SessionRecord | undefined> {
    return this.#turns.run(() => this.#records.get(id, now));
  }

  protected _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
    lease?: HeldLease,
  ): Promise<boolean> {
    return this.#turns.run(() =>
      this.#freeing(lease, this.#records.set(id, record, only, now, lease)),
    );
  }

  protected _touch(
    id: string,
    expiresAt: number,
    now: number,
    lease?: HeldLease,
  ): Promise<boolean> {
    return this.#turns.run(() =>
      this.#freeing(lease, this.#records.touch(id, expiresAt, now, lease)),
    );
  }

  protected _delete(id: string, now: number, lease?: HeldLease): Promise<boolean> {
    return this.#turns.run(() => this.#freeing(lease, this.#records.delete(id, now, lease)));
  }

  /**
   * Resolves as `write`, after freeing `lease` once it wrote when the caller asked (`release`).
   * A failure to free it is not the write's, which has landed: the lease then ends by itself.
   */
  async #freeing(lease: HeldLease | undefined, write: Promise<boolean>): Promise<boolean> {
    const wrote = await write;
    if (lease?.release === true) await this.#locks.releaseAfterWrite(lease).catch(() => {});
    return wrote;
  }

  protected async _count(now: number): Promise<number> {
    let count = 0;
    for await (const _ of this.#layout.liveIds(now)) count++;
    return count;
  }

  protected _ids(now: number): AsyncIterable<string> {
    return this.#layout.liveIds(now);
  }

  protected _clear(): Promise<void> {
    return this.#records.clear();
  }

  protected override async _ownedBy(owner: string, now: number): Promise<OwnedSession[]> {
    // An index that lost entries would miss sessions silently: it is rebuilt first.
    const waited = await this.#ownerRebuild.ready();
    const at = waited ? Date.now() : now;
    return this.#turns.run(() => this.#records.ownedBy(owner, at));
  }

  protected _sweep(progress: SweepProgress): Promise<SweepResult> {
    return this.#sweep.sweep(progress);
  }

  /**
   * Also stops a sweep in flight before its next entry, and a rebuild of the owner index (or a
   * wait for another process's) before its next step; close() then waits for them to settle.
   */
  override close(): Promise<void> {
    this.#sweep.stop();
    this.#ownerRebuild.close().catch(() => {});
    return super.close();
  }

  protected async _close(): Promise<void> {
    await this.#ownerRebuild.close();
    await this.#closeSweeper();
    await this.#spares?.close();
    await this.#guards.close();
  }
}

/**
 * fsyncs the parent of each directory that open made, from `first` (the one `mkdir` made
 * first) down to the store's `root`: with `durability: 'full'` a record must not be lost in a
 * power cut with a directory above it whose entry never reached the disk.
 */
async function syncMadeDirectories(first: string, root: string): Promise<void> {
  const top = await realpath(first);
  for (let directory = root; ; directory = dirname(directory)) {
    await fsyncDirectory(asyncFileSystem, dirname(directory));
    if (directory === top || dirname(directory) === directory) return;
  }
}

/**
 * How a file store tells its own directory: every open makes the store's `.guards` directory
 * first, and nothing else in the store has a name that long or a dot. `lost+found` (the root of
 * a new ext4 filesystem, a volume of its own for the sessions) is not another file.
 */
const FILE_STORE_DIRECTORY: StoreDirectoryRules = {
  kind: 'a file store',
  isStore: (names) => names.includes(GUARDS_DIRECTORY),
};

/**
 * What `open` would find at `path`: core's judgement of a store directory, and a symbolic link
 * to a missing directory at `path` or above it refused, as `open` fails there (a recursive
 * `mkdir` does not make a link's target; it reports ENOENT).
 */
async function probeDirectory(path: string): Promise<StoreProbe> {
  const probe = await probeStoreDirectory(path, FILE_STORE_DIRECTORY);
  if (probe.state !== 'absent') return probe;
  const dangling = await danglingLinkAbove(path);
  return dangling === undefined ? probe : { state: 'refused', reason: dangling };
}

/**
 * Why the store directory `path` could not be made, found as `probe` finds it: the nearest
 * directory above it that is there, with the errno (EROFS, EACCES) as cause, or a file in the
 * way. Undefined when nothing is found. Node's recursive `mkdir` reports ENOENT on a read-only
 * filesystem, as if a directory above were missing.
 */
async function uncreatable(path: string, error: unknown): Promise<SessionError | undefined> {
  const probe = await probeDirectory(path).catch(() => undefined);
  if (probe?.state !== 'refused') return undefined;
  return new SessionError(
    'ERR_STORE_IO',
    `Cannot open the file store: cannot create ${path}: ${probe.reason}`,
    { cause: probe.cause ?? error },
  );
}

/**
 * Refuses a directory that holds files and is not a file store: one without `.guards` is someone
 * else's, whose files in one-letter subdirectories the sweep would take for leftovers and unlink.
 */
async function assertStoreDirectory(root: string): Promise<void> {
  const shown = otherFilesIn(await readdir(root), FILE_STORE_DIRECTORY);
  if (shown === undefined) return;
  throw new SessionError(
    'ERR_STORE_IO',
    `Cannot open the file store: ${root} holds other files (${shown}) and is not a file store (no ${GUARDS_DIRECTORY} directory); pass a new or empty directory`,
  );
}
