import { resolve } from 'node:path';
import {
  isSessionId,
  type LockManager,
  type OwnedSession,
  SessionError,
  type SessionRecord,
  type StoreCapabilities,
  type StoreProbe,
  type SweepResult,
} from '@sessile/core';
import {
  assertAbortSignal,
  assertKnownOptions,
  assertPositiveInteger,
  BaseStore,
  type BaseStoreOptions,
  danglingLinkAbove,
  describeValue,
  KeyedLocks,
  KeyedQueue,
  probeStoreDirectory,
  type SweepProgress,
  yieldToEventLoop,
} from '@sessile/core/store';
import type { AbstractLevel } from 'abstract-level';
import { ClassicLevel } from 'classic-level';
import { type AnyLevel, openSublevel, sublevelOf } from './app-sublevel.js';
import {
  corruptRecord,
  EMPTY_VALUE,
  encodeRecord,
  expiresAtOf,
  INDEX_END,
  INDEX_START,
  idOfOwnerKey,
  idOfRecordKey,
  indexEndAfter,
  indexKey,
  OWNERS_END,
  OWNERS_START,
  ownerKey,
  ownerRange,
  parseIndexKey,
  parseOwnerKey,
  RECORDS_END,
  RECORDS_START,
  readHeader,
  recordKey,
  withExpiresAt,
} from './format.js';
import { GroupedWriter, type Operation } from './grouped-writer.js';
import { readCopyOf } from './level-copy.js';
import { hasCode, LevelHandle } from './level-handle.js';
import {
  assertLevelDirectory,
  assertStoragePath,
  claimDirectory,
  heldInProcess,
  LEVELDB_DIRECTORY,
  openError,
} from './open-path.js';
import {
  adoptionError,
  adoptKeyspace,
  directoryPlace,
  inspectKeyspace,
  probeKeyspace,
  sublevelPlace,
} from './store-format.js';
import { claimSublevel } from './sublevel-claims.js';
import { SweepCursor } from './sweep-cursor.js';
import { SweepSlices } from './sweep-slices.js';

export type { AnyLevel };

/** The keyspace the store writes to: raw bytes in, raw bytes out. */
type Bytes = Uint8Array<ArrayBufferLike>;
type Keyspace = AbstractLevel<unknown, Bytes, Bytes>;

export interface LevelStoreOptions extends BaseStoreOptions {
  /**
   * Directory of a LevelDB database that the store opens, owns and closes. Created when
   * missing. Only one process may open a directory at a time.
   */
  path?: string;
  /**
   * An abstract-level database or sublevel the app already has (open or opening). Sessions
   * live in the sublevel `sublevel` of it, so the app's own keys are never read or changed.
   * Closing the store leaves `db` open.
   */
  db?: AnyLevel;
  /** Name of the sublevel created inside `db`. Default `'sessions'`. Only with `db`. */
  sublevel?: string;
  /**
   * Read records with LevelDB's synchronous `getSync` instead of an async `get`. A read from
   * LevelDB's cache takes microseconds, far less than the async round trip through the thread
   * pool, but a read that misses the cache blocks the event loop for one disk read. Default
   * `true` when the database supports `getSync` (classic-level and its sublevels); `true` on a
   * database without it throws a `TypeError`.
   */
  syncReads?: boolean;
}

/** What `repairIndex()` did. */
export interface RepairIndexResult {
  /** Records examined. */
  scanned: number;
  /** Index entries re-created for records that had lost theirs. */
  repaired: number;
  /**
   * Owner index entries removed because their record is gone or now has another owner: a crash
   * in the middle of `clear()` leaves such entries, which `ownedBy` skips but still reads.
   */
  removed: number;
}

export const DEFAULT_SUBLEVEL = 'sessions';

// Every option, so that an option added to LevelStoreOptions fails to compile until listed.
const OPTIONS: { [K in keyof Required<LevelStoreOptions>]: true } = {
  path: true,
  db: true,
  sublevel: true,
  syncReads: true,
  maxRecordBytes: true,
};
const KNOWN_OPTIONS = Object.keys(OPTIONS);
/**
 * The largest `data` a value holds: LevelDB writes a value's length as 32 bits (a longer one
 * would be cut short in its log and tables), and the record's header and owner take under 1 KiB.
 */
const MAX_DATA_BYTES = 2 ** 32 - 1 - 1024;

// A sweep batch reads this many index keys, then the matching records in one getMany.
const SWEEP_BATCH = 500;
const MIN_SWEEP_BATCH = 32;
/** The longest a sweep batch's synchronous stretches should hold the event loop. */
const SWEEP_SLICE_MS = 1;
const SCAN_BATCH = 256;

type SweptEntry = { key: Uint8Array; expiresAt: number };

/**
 * The checks `open` makes before any database is opened: a refused value must neither create
 * one nor hide behind ERR_STORE_BUSY. `probe` makes them too, and its errors name it.
 */
function checkOpenOptions(
  options: LevelStoreOptions,
  method: 'open' | 'probe',
): { path: string } | { db: AnyLevel } {
  const caller = `LevelStore.${method}`;
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`${caller} needs { path } or { db }`);
  }
  assertKnownOptions(options, KNOWN_OPTIONS, caller);
  if (options.maxRecordBytes !== undefined) {
    assertPositiveInteger(options.maxRecordBytes, 'maxRecordBytes');
    if (options.maxRecordBytes > MAX_DATA_BYTES) {
      throw new TypeError(
        `maxRecordBytes must be at most ${MAX_DATA_BYTES} (LevelDB writes a value's length in 32 bits), got ${options.maxRecordBytes}`,
      );
    }
  }
  if (options.syncReads !== undefined && typeof options.syncReads !== 'boolean') {
    throw new TypeError('options.syncReads must be a boolean');
  }
  const { path, db } = options;
  if ((path === undefined) === (db === undefined)) {
    throw new TypeError(`${caller} needs exactly one of { path } or { db }`);
  }
  if (path === undefined) {
    if (typeof db !== 'object' || db === null || typeof db.sublevel !== 'function') {
      throw new TypeError('options.db must be an abstract-level database or sublevel');
    }
    const { sublevel } = options;
    if (sublevel !== undefined && (typeof sublevel !== 'string' || sublevel === '')) {
      throw new TypeError('options.sublevel must be a non-empty string');
    }
    return { db };
  }
  if (typeof path !== 'string' || path === '') {
    throw new TypeError('options.path must be a non-empty string');
  }
  // No filesystem takes one, and Node's error would come back as ERR_STORE_IO.
  if (path.includes('\0')) {
    throw new TypeError(
      `options.path must not contain a NUL character, got ${JSON.stringify(path)}`,
    );
  }
  // Silently ignored, it would let an app believe its sessions are kept apart in the directory.
  if (options.sublevel !== undefined) {
    throw new TypeError(
      'options.sublevel applies only with options.db: a store opened from options.path owns the whole directory',
    );
  }
  return { path };
}

/**
 * Sessions in LevelDB through classic-level, or in a sublevel of any abstract-level database.
 * Records and an expiry index ordered by `expiresAt` change together in one atomic batch, so a
 * sweep walks only expired entries. LevelDB allows one process per directory, so the store is
 * shared by one process and its locks are in-process.
 */
export class LevelStore extends BaseStore {
  readonly capabilities: StoreCapabilities = {
    shared: 'process',
    expiry: 'sweep',
    durable: true,
    expiryIndex: true,
    ownerIndex: true,
  };
  readonly locks: LockManager = new KeyedLocks();
  /**
   * The database (with `path`) or sublevel (with `db`) holding this store's keys, with `view`
   * encodings. The README documents its key and value format.
   */
  readonly db: Keyspace;
  readonly #owned: boolean;
  readonly #path: string | undefined;
  readonly #handle: LevelHandle;
  readonly #writes = new KeyedQueue();
  readonly #writer: GroupedWriter;
  readonly #cursor = new SweepCursor();
  readonly #syncReads: boolean;
  /** Settles once the latest `clear()` is over; writes called after it wait for it. */
  #clearing: Promise<void> | undefined;
  /** Frees the directory, or the app's sublevel, for another store once this one is closed. */
  readonly #unclaim: (() => void) | undefined;

  private constructor(
    db: Keyspace,
    path: string | undefined,
    options: LevelStoreOptions,
    unclaim: (() => void) | undefined,
  ) {
    super(options);
    this.db = db;
    this.#unclaim = unclaim;
    this.#owned = path !== undefined;
    this.#path = path;
    // A failed write may still be in the database after the reopen, below the sweep cursor.
    this.#handle = new LevelHandle(db, path, () => this.#cursor.reset());
    this.#writer = new GroupedWriter(db, (attempt) => this.#handle.write(attempt));
    const canReadSync = (db.supports as { getSync?: boolean }).getSync === true;
    const { syncReads = canReadSync } = options;
    if (typeof syncReads !== 'boolean') throw new TypeError('options.syncReads must be a boolean');
    if (syncReads && !canReadSync) {
      throw new TypeError('options.syncReads needs a database that supports getSync()');
    }
    this.#syncReads = syncReads;
  }

  /**
   * What `open(options)` would find, creating and changing nothing: a session store (a LevelDB
   * database with the store's format key, or only keys a store writes), none yet (a missing or
   * empty directory, one holding only the files of a creation LevelDB did not finish, an empty
   * LevelDB database or sublevel), or why `open` would fail (a file, a directory of other files,
   * no right to write, another program's LevelDB database or sublevel, a newer format). A
   * database on a path is read from a copy, since opening it writes in its directory. It takes no
   * lock, so a directory or sublevel held by another process or store answers as if free, and
   * `open` of it then rejects with `ERR_STORE_BUSY`.
   */
  static async probe(options: LevelStoreOptions): Promise<StoreProbe> {
    const target = checkOpenOptions(options, 'probe');
    if ('db' in target) {
      const name = options.sublevel ?? DEFAULT_SUBLEVEL;
      const sublevel = sublevelOf(target.db, name);
      const place = sublevelPlace(name);
      try {
        await openSublevel(sublevel, target.db, name);
      } catch (error) {
        return { state: 'refused', reason: (error as Error).message, cause: error };
      }
      try {
        return await probeKeyspace(
          () => inspectKeyspace(sublevel),
          place,
          `${place.where} holds no keys yet`,
        );
      } finally {
        await sublevel.close();
      }
    }
    const { path } = target;
    const found = await probeStoreDirectory(path, LEVELDB_DIRECTORY);
    if (found.state === 'absent') {
      const dangling = await danglingLinkAbove(path);
      return dangling === undefined ? found : { state: 'refused', reason: dangling };
    }
    if (found.state !== 'present') return found;
    return probeKeyspace(
      // A database too large to copy where it cannot be linked is judged by its files alone,
      // as present: `open` still reads its keys, and refuses another program's.
      async () => (await readCopyOf(path, inspectKeyspace)) ?? { kind: 'unreadable' },
      directoryPlace(path),
      `${path} is an empty LevelDB database, not a session store yet`,
    );
  }

  /**
   * Opens a store on `options.path` or inside `options.db`. Rejects with `ERR_STORE_IO` when
   * the database cannot be opened, for example when another process holds the directory, and
   * with a `TypeError` for bad or unknown options.
   */
  static async open(options: LevelStoreOptions): Promise<LevelStore> {
    const target = checkOpenOptions(options, 'open');
    if ('path' in target) {
      const { path } = target;
      assertStoragePath(path);
      await assertLevelDirectory(path);
      // LevelDB resolves a relative path against the working directory each time it opens, and
      // the store reopens the database after a write error: after a process.chdir() that reopen
      // would look in another directory, and fail or find no database there.
      const location = resolve(path);
      // Before LevelDB opens it: a second open in this process damages the first's files.
      const unclaim = await claimDirectory(location);
      if (unclaim === undefined) throw heldInProcess(path);
      const level = new ClassicLevel<Uint8Array, Uint8Array>(location, {
        keyEncoding: 'view',
        valueEncoding: 'view',
      });
      try {
        await level.open();
      } catch (error) {
        unclaim();
        throw await openError(error, path);
      }
      try {
        await adoptKeyspace(level as unknown as Keyspace, directoryPlace(path));
      } catch (error) {
        unclaim();
        await level.close();
        throw adoptionError(error, `Cannot open LevelDB directory ${path}`);
      }
      return LevelStore.#create(level as unknown as Keyspace, location, options, unclaim);
    }
    const { db } = target;
    const name = options.sublevel ?? DEFAULT_SUBLEVEL;
    const sublevel = sublevelOf(db, name);
    const unclaim = claimSublevel(sublevel, db, name);
    if (unclaim === undefined) {
      throw new SessionError(
        'ERR_STORE_BUSY',
        `The sublevel ${JSON.stringify(name)} of the app's database is used by another open LevelStore in this process: each store keeps its own locks, so two on one sublevel would both hold one session's lock. Close the other store first, or give each store its own options.sublevel`,
      );
    }
    try {
      await openSublevel(sublevel, db, name);
      await adoptKeyspace(sublevel as unknown as Keyspace, sublevelPlace(name));
    } catch (error) {
      unclaim();
      await sublevel.close().catch(() => {});
      throw adoptionError(error, `Cannot open ${sublevelPlace(name).where}`);
    }
    return LevelStore.#create(sublevel as unknown as Keyspace, undefined, options, unclaim);
  }

  // Bad options must not leave the directory locked by a database nobody can close.
  static async #create(
    db: Keyspace,
    path: string | undefined,
    options: LevelStoreOptions,
    unclaim: (() => void) | undefined,
  ): Promise<LevelStore> {
    try {
      return new LevelStore(db, path, options, unclaim);
    } catch (error) {
      try {
        await db.close();
      } finally {
        unclaim?.();
      }
      throw error;
    }
  }

  /**
   * Re-creates index entries that records have lost, so sweep finds those records again and
   * `ownedBy` lists them, then removes owner entries whose record is gone or names another
   * owner. A record without its expiry entry still expires for every read; only sweep cannot
   * see it. This walks every record and owner entry in batches and yields between them, so run it
   * off the request path.
   */
  async repairIndex(options: { signal?: AbortSignal } = {}): Promise<RepairIndexResult> {
    if (typeof options !== 'object' || options === null) {
      throw new TypeError(`repairIndex options must be an object, got ${describeValue(options)}`);
    }
    assertKnownOptions(options, ['signal'], 'repairIndex');
    const { signal } = options;
    assertAbortSignal(signal, 'options.signal');
    return this.operation('repairIndex', async () => {
      const result: RepairIndexResult = { scanned: 0, repaired: 0, removed: 0 };
      await this.#eachKeyBatch(RECORDS_START, RECORDS_END, signal, (batch) =>
        this.#repairBatch(batch.map(idOfRecordKey), result),
      );
      await this.#eachKeyBatch(OWNERS_START, OWNERS_END, signal, (batch) =>
        this.#pruneOwnerBatch(batch, result),
      );
      return result;
    });
  }

  protected async _get(id: string, now: number): Promise<SessionRecord | undefined> {
    // A write on `id` made before this read may still be reading, or waiting in a batch, and a
    // clear() made before it holds no id when no write was in flight.
    const writing = this.#writes.whenIdle(id) ?? this.#clearing;
    if (writing !== undefined) await writing;
    const value = await this.#read(recordKey(id));
    if (value === undefined) return undefined;
    const header = readHeader(value);
    if (header === undefined) throw corruptRecord();
    if (header.expiresAt <= now) return undefined;
    return this.#recordOf(value, header.expiresAt, header.owner, header.dataOffset);
  }

  protected _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
  ): Promise<boolean> {
    return this.#runOn(id, async () => {
      const key = recordKey(id);
      const old = await this.#read(key);
      const oldHeader = old === undefined ? undefined : readHeader(old);
      const oldExpiresAt = oldHeader?.expiresAt ?? Number.NaN;
      // A conditional write cannot tell whether undecodable bytes were live; an overwrite can.
      if (old !== undefined && oldHeader === undefined && only !== undefined) {
        throw corruptRecord();
      }
      const live = oldExpiresAt > now;
      if ((only === 'absent' && live) || (only === 'present' && !live)) return false;
      const operations: Operation[] = [];
      if (!Number.isNaN(oldExpiresAt) && oldExpiresAt !== record.expiresAt) {
        operations.push({ type: 'del', key: indexKey(oldExpiresAt, id) });
      }
      const { owner } = record;
      const oldOwner = oldHeader?.owner;
      if (oldOwner !== owner) {
        if (oldOwner !== undefined) operations.push({ type: 'del', key: ownerKey(oldOwner, id) });
        if (owner !== undefined) {
          operations.push({ type: 'put', key: ownerKey(owner, id), value: EMPTY_VALUE });
        }
      }
      operations.push(
        { type: 'put', key, value: encodeRecord(record.data, record.expiresAt, owner) },
        { type: 'put', key: indexKey(record.expiresAt, id), value: EMPTY_VALUE },
      );
      try {
        await this.#writer.write(operations);
      } finally {
        this.#cursor.written(record.expiresAt);
      }
      return true;
    });
  }

  protected _touch(id: string, expiresAt: number, now: number): Promise<boolean> {
    return this.#runOn(id, async () => {
      const key = recordKey(id);
      const old = await this.#read(key);
      if (old === undefined) return false;
      const oldExpiresAt = expiresAtOf(old);
      if (Number.isNaN(oldExpiresAt)) throw corruptRecord();
      if (oldExpiresAt <= now) return false;
      const operations: Operation[] = [];
      if (oldExpiresAt !== expiresAt) {
        operations.push({ type: 'del', key: indexKey(oldExpiresAt, id) });
      }
      operations.push(
        { type: 'put', key, value: withExpiresAt(old, expiresAt) },
        { type: 'put', key: indexKey(expiresAt, id), value: EMPTY_VALUE },
      );
      try {
        await this.#writer.write(operations);
      } finally {
        this.#cursor.written(expiresAt);
      }
      return true;
    });
  }

  protected _delete(id: string, now: number): Promise<boolean> {
    return this.#runOn(id, async () => {
      const key = recordKey(id);
      const old = await this.#read(key);
      if (old === undefined) return false;
      const header = readHeader(old);
      const oldExpiresAt = header?.expiresAt ?? Number.NaN;
      const operations: Operation[] = [{ type: 'del', key }];
      // Undecodable bytes are removed too; their index entry, if any, is left for sweep.
      if (header !== undefined) {
        operations.push({ type: 'del', key: indexKey(header.expiresAt, id) });
        if (header.owner !== undefined) {
          operations.push({ type: 'del', key: ownerKey(header.owner, id) });
        }
      }
      await this.#writer.write(operations);
      return oldExpiresAt > now;
    });
  }

  protected async _sweep(progress: SweepProgress): Promise<SweepResult> {
    await this.#writtenBefore();
    await this.#readable();
    const generation = this.#handle.generation;
    const ticket = this.#cursor.begin(progress.now);
    const from = this.#cursor.key;
    const due = this.db.keys({
      ...(from === undefined ? { gte: INDEX_START } : { gt: from }),
      lt: indexEndAfter(progress.now),
    });
    let last: SweptEntry | undefined;
    const slices = new SweepSlices(MIN_SWEEP_BATCH, SWEEP_BATCH, SWEEP_SLICE_MS);
    try {
      for (;;) {
        const size = progress.nextBatchSize(slices.size);
        if (size === 0) break;
        const keys = await due.nextv(size);
        if (keys.length === 0) return progress.result(true);
        last = (await this.#sweepBatch(keys, progress, slices)) ?? last;
        await yieldToEventLoop();
      }
      // Stopped by the limit, the budget or the signal: done only if nothing else is due.
      const next = await due.nextv(1);
      return progress.result(next.length === 0);
    } catch (error) {
      last = undefined;
      // A reopen after a write error closed the iterator: what was done stands, the rest is
      // left for the next sweep.
      if (this.#closedByReopen(error, generation)) return progress.result(false);
      throw error;
    } finally {
      this.#cursor.finish(ticket, last);
      await due.close();
    }
  }

  /**
   * Walks the owner's index entries and reads their records in batches. An entry whose record
   * is gone, expired, unreadable or now carries another owner is left out; none is ever written.
   */
  protected override async _ownedBy(owner: string, now: number): Promise<OwnedSession[]> {
    const sessions: OwnedSession[] = [];
    await this.#writtenBefore();
    await this.#readable();
    const generation = this.#handle.generation;
    const { gte, lt, idOffset } = ownerRange(owner);
    const keys = this.db.keys({ gte, lt });
    try {
      for (;;) {
        const batch = await keys.nextv(SCAN_BATCH);
        if (batch.length === 0) return sessions;
        // An entry under an id no session can have (written by hand) is left out: deleting it,
        // as signing the owner out everywhere does, would reject with ERR_INVALID_SESSION_ID.
        const ids = batch.map((key) => idOfOwnerKey(key, idOffset)).filter(isSessionId);
        if (ids.length === 0) continue;
        await this.#readable();
        const values = await this.db.getMany(ids.map(recordKey));
        for (let i = 0; i < ids.length; i++) {
          const value = values[i];
          const header = value === undefined ? undefined : readHeader(value);
          if (header === undefined || header.owner !== owner || header.expiresAt <= now) continue;
          sessions.push({
            id: ids[i] as string,
            record: this.#recordOf(value as Bytes, header.expiresAt, owner, header.dataOffset),
          });
        }
      }
    } catch (error) {
      throw this.#interrupted(error, generation, 'ownedBy');
    } finally {
      await keys.close();
    }
  }

  protected async _count(now: number): Promise<number> {
    let count = 0;
    await this.#writtenBefore();
    await this.#readable();
    const generation = this.#handle.generation;
    const records = this.db.values({ gte: RECORDS_START, lt: RECORDS_END });
    try {
      for (;;) {
        const values = await records.nextv(SCAN_BATCH);
        if (values.length === 0) return count;
        for (const value of values) if (expiresAtOf(value) > now) count++;
        await yieldToEventLoop();
      }
    } catch (error) {
      throw this.#interrupted(error, generation, 'count');
    } finally {
      await records.close();
    }
  }

  // Its body starts when the listing does: at the first next() of ids()'s iterator.
  protected async *_ids(now: number): AsyncIterable<string> {
    await this.#writtenBefore();
    await this.#readable();
    const generation = this.#handle.generation;
    const records = this.db.iterator({ gte: RECORDS_START, lt: RECORDS_END });
    try {
      for (;;) {
        let entries: [Bytes, Bytes][];
        try {
          entries = await records.nextv(SCAN_BATCH);
        } catch (error) {
          throw this.#interrupted(error, generation, 'ids');
        }
        if (entries.length === 0) return;
        for (const [key, value] of entries) {
          if (!(expiresAtOf(value) > now)) continue;
          // A record written by hand under an id no session can have is not listed: every call
          // on it would reject with ERR_INVALID_SESSION_ID, and a copy of the listing would stop there.
          const id = idOfRecordKey(key);
          if (isSessionId(id)) yield id;
        }
      }
    } finally {
      await records.close();
    }
  }

  protected _clear(): Promise<void> {
    // A write reads the record before its batch goes out, so one that read before the clear
    // and wrote after it would bring its record back, and one that kept the owner would leave
    // that record out of the owner index. So the clear waits for the writes in flight, and the
    // writes called after it wait for the clear (#runOn).
    const cleared = this.#writes.runAll(this.#writes.keys(), () =>
      // In turn with the grouped writes, so a write error reopens the database before it runs.
      this.#writer.exclusive(async () => {
        // Only the store's three key ranges: a sublevel's own clear() would also take the one
        // raw app key equal to its upper bound ('!sessions"').
        await this.db.clear({ gte: RECORDS_START, lt: RECORDS_END });
        await this.db.clear({ gte: INDEX_START, lt: INDEX_END });
        await this.db.clear({ gte: OWNERS_START, lt: OWNERS_END });
      }),
    );
    const settled = cleared.then(
      () => {},
      () => {},
    );
    this.#clearing = settled;
    void settled.then(() => {
      if (this.#clearing === settled) this.#clearing = undefined;
    });
    return cleared;
  }

  protected override ioLocation(): string | undefined {
    // LevelDB names a file in some of its messages but not in all ("Corruption: not an
    // sstable (bad magic number)"). With `db` the database is the app's and has no path here.
    return this.#path;
  }

  protected async _close(): Promise<void> {
    // Closing a sublevel only detaches it; the app's database stays open.
    try {
      await this.#handle.close();
    } finally {
      this.#unclaim?.();
    }
  }

  /** Deletes every entry of `keys`; resolves to the last one that parsed. */
  async #sweepBatch(
    keys: Uint8Array[],
    progress: SweepProgress,
    slices: SweepSlices,
  ): Promise<SweptEntry | undefined> {
    const operations: Operation[] = [];
    const due: { key: Uint8Array; expiresAt: number; id: string }[] = [];
    const parsing = performance.now();
    for (const key of keys) {
      const entry = parseIndexKey(key);
      if (entry === undefined) operations.push({ type: 'del', key });
      else due.push({ key, ...entry });
    }
    slices.took(keys.length, performance.now() - parsing);
    progress.scanned += keys.length;
    // Hold every id of the batch, so a write that renews one of them cannot be swept away.
    await this.#runOnAll(
      due.map((entry) => entry.id),
      async () => {
        const recordKeys: Uint8Array[] = due.map((entry) => recordKey(entry.id));
        await this.#readable();
        const values = await this.db.getMany(recordKeys);
        const checking = performance.now();
        const removedIds = new Set<string>();
        for (let i = 0; i < due.length; i++) {
          const entry = due[i] as (typeof due)[number];
          const value = values[i];
          operations.push({ type: 'del', key: entry.key });
          // Missing: a leftover entry. Other expiresAt: a stale entry. Neither removes a record.
          if (value === undefined || removedIds.has(entry.id)) continue;
          const header = readHeader(value);
          // Undecodable bytes whose entry is due are removed too: nothing can ever read them.
          if (header === undefined || header.expiresAt === entry.expiresAt) {
            operations.push({ type: 'del', key: recordKeys[i] as Uint8Array });
            if (header?.owner !== undefined) {
              operations.push({ type: 'del', key: ownerKey(header.owner, entry.id) });
            }
            removedIds.add(entry.id);
          }
        }
        const written = operations.length > 0 ? this.#writer.write(operations) : undefined;
        slices.took(keys.length, performance.now() - checking);
        await written;
        progress.removed += removedIds.size;
      },
    );
    return due.at(-1);
  }

  /** Hands `work` the keys from `gte` to `lt` in batches, yielding between them, until `signal` aborts. */
  async #eachKeyBatch(
    gte: Uint8Array,
    lt: Uint8Array,
    signal: AbortSignal | undefined,
    work: (batch: Uint8Array[]) => Promise<void>,
  ): Promise<void> {
    await this.#readable();
    const generation = this.#handle.generation;
    const keys = this.db.keys({ gte, lt });
    try {
      // close() waits for operations in flight, so it stops the repair as an abort does.
      while (!signal?.aborted && !this.closed) {
        const batch = await keys.nextv(SCAN_BATCH);
        if (batch.length === 0) break;
        await work(batch);
        await yieldToEventLoop();
      }
    } catch (error) {
      throw this.#interrupted(error, generation, 'repairIndex');
    } finally {
      await keys.close();
    }
  }

  /** Removes the owner entries of `keys` whose record is gone or now names another owner. */
  async #pruneOwnerBatch(keys: Uint8Array[], result: RepairIndexResult): Promise<void> {
    const entries = keys.flatMap((key) => {
      const entry = parseOwnerKey(key);
      return entry === undefined ? [] : [{ key, ...entry }];
    });
    const ids = entries.map((entry) => entry.id);
    await this.#runOnAll(ids, async () => {
      await this.#readable();
      const values = await this.db.getMany(ids.map(recordKey));
      // A record that cannot be decoded keeps its entry: an overwrite repairs both.
      const stale = entries.filter((entry, i) => {
        const value = values[i];
        if (value === undefined) return true;
        const header = readHeader(value);
        return header !== undefined && header.owner !== entry.owner;
      });
      if (stale.length === 0) return;
      await this.#writer.write(stale.map(({ key }): Operation => ({ type: 'del', key })));
      result.removed += stale.length;
    });
  }

  async #repairBatch(ids: string[], result: RepairIndexResult): Promise<void> {
    await this.#runOnAll(ids, async () => {
      await this.#readable();
      const values = await this.db.getMany(ids.map(recordKey));
      // Owner entries have no expiresAt: the sweep cursor only tracks the expiry index.
      const wanted: Array<{ key: Uint8Array; expiresAt?: number }> = [];
      for (let i = 0; i < ids.length; i++) {
        const value = values[i];
        const header = value === undefined ? undefined : readHeader(value);
        if (header === undefined) continue;
        const id = ids[i] as string;
        wanted.push({ key: indexKey(header.expiresAt, id), expiresAt: header.expiresAt });
        if (header.owner !== undefined) wanted.push({ key: ownerKey(header.owner, id) });
      }
      result.scanned += ids.length;
      await this.#readable();
      const present = await this.db.getMany(wanted.map((entry) => entry.key));
      const missing = wanted.filter((_, i) => present[i] === undefined);
      if (missing.length === 0) return;
      try {
        await this.#writer.write(
          missing.map((entry): Operation => ({ type: 'put', key: entry.key, value: EMPTY_VALUE })),
        );
      } finally {
        for (const { expiresAt } of missing) {
          if (expiresAt !== undefined) this.#cursor.written(expiresAt);
        }
      }
      result.repaired += missing.length;
    });
  }

  /**
   * Runs `operation`, which reads records and then writes, in turn with the other operations on
   * `id` and after a `clear()` called before it. A `clear()` called while it runs waits for it.
   */
  #runOn<T>(id: string, operation: () => Promise<T>): Promise<T> {
    const clearing = this.#clearing;
    if (clearing === undefined) return this.#writes.run(id, operation);
    return this.#writes.run(id, () => clearing.then(operation));
  }

  /**
   * Settles once every write called so far, and the latest `clear()`, has finished: what a scan
   * must see. It waits outside the id queues and holds no id, so writes called later never wait.
   */
  #writtenBefore(): Promise<unknown> | undefined {
    const clearing = this.#clearing;
    if (this.#writes.size === 0) return clearing;
    const writing = this.#writes.keys().map((id) => this.#writes.whenIdle(id));
    return Promise.all([...writing, clearing]);
  }

  /** `#runOn` for every id of `ids` at once. */
  #runOnAll<T>(ids: string[], operation: () => Promise<T>): Promise<T> {
    const clearing = this.#clearing;
    if (clearing === undefined) return this.#writes.runAll(ids, operation);
    return this.#writes.runAll(ids, () => clearing.then(operation));
  }

  // A point read from LevelDB's cache costs microseconds, less than the async round trip.
  #read(key: Uint8Array): Promise<Bytes | undefined> | Bytes | undefined {
    if (!this.#handle.readable) return this.#handle.whenReadable().then(() => this.#read(key));
    return this.#syncReads ? this.db.getSync(key) : this.db.get(key);
  }

  /**
   * Resolves when `db` may be read: at once, or after a reopen in progress. Await it right
   * before the read, with no other await in between.
   */
  async #readable(): Promise<void> {
    while (!this.#handle.readable) await this.#handle.whenReadable();
  }

  /** True when `error` comes from an iterator that a reopen since `generation` closed. */
  #closedByReopen(error: unknown, generation: number): boolean {
    return (
      (this.#handle.generation !== generation || !this.#handle.readable) &&
      (hasCode(error, 'LEVEL_ITERATOR_NOT_OPEN') || hasCode(error, 'LEVEL_DATABASE_NOT_OPEN'))
    );
  }

  #interrupted(error: unknown, generation: number, action: string): unknown {
    if (!this.#closedByReopen(error, generation)) return error;
    // Only a store opened from a path reopens its database.
    return new SessionError(
      'ERR_STORE_IO',
      `${action} on ${this.#path} was interrupted: the store reopened its LevelDB database after a write error. Call it again`,
      { cause: error },
    );
  }

  #recordOf(
    value: Uint8Array,
    expiresAt: number,
    owner: string | undefined,
    dataOffset: number,
  ): SessionRecord {
    const view = value.subarray(dataOffset);
    // classic-level hands out a fresh buffer per read; another database may share its own.
    const data = this.#owned
      ? new Uint8Array(view.buffer, view.byteOffset, view.byteLength)
      : new Uint8Array(view);
    return owner === undefined ? { data, expiresAt } : { data, expiresAt, owner };
  }
}
