import { join, sep } from 'node:path';
import {
  type HeldLease,
  isSessionError,
  type OwnedSession,
  type SessionRecord,
} from '@sessile/core';
import { type HostGuards, KeyedQueue, sleep } from '@sessile/core/store';
import {
  decodeHeader,
  EXPIRES_AT_OFFSET,
  encodeRecord,
  MAX_HEADER_BYTES,
  recordFileBytes,
} from './format.js';
import {
  errorCode,
  type FileSystem,
  freeFile,
  fsyncDirectory,
  O_CREAT,
  O_EXCL,
  O_NOFOLLOW,
  O_RDWR,
  O_WRONLY,
  readAt,
  SHUT_OUT,
  unless,
  writeAll,
} from './fs.js';
import type { StoreLayout } from './layout.js';
import {
  effectiveExpiresAt,
  MAX_MTIME_MS,
  mtimeFor,
  type Presence,
  type RecordFiles,
  TEMP_SUFFIX,
  uniqueSuffix,
} from './record-files.js';
import { corruptRecord, RecordReads } from './record-reads.js';
import type { SpareFiles } from './spare-files.js';

/** Transient rename failures (Windows sharing violations, antivirus, NFS) worth retrying. */
const RETRYABLE_RENAME_CODES = ['EPERM', 'EBUSY', 'EACCES'];
const RENAME_ATTEMPTS = 10;

export interface RecordIoInit {
  layout: StoreLayout;
  fs: FileSystem;
  files: RecordFiles;
  guards: HostGuards;
  /** Files of replaced records kept for later writes; undefined when reuse is off. */
  spares: SpareFiles | undefined;
  /** `durability: 'full'`: fsync every written file and its directory. */
  fsync: boolean;
  fileMode: number;
  renameFile: (from: string, to: string) => Promise<void>;
  /** A read that took this long may have read a reused file (see `reuseAfterMs`). */
  reuseAfterMs: number;
  maxRecordBytes: () => number;
  /** Rejects with `ERR_LOCK_LOST` unless the lease still holds; called under the record's guard. */
  assertHeld: (lease: HeldLease) => Promise<void>;
}

/** Writes of record files (the paths of set, touch and delete, and clear), and reads through `RecordReads`. */
export class RecordIo {
  readonly #layout: StoreLayout;
  readonly #fs: FileSystem;
  readonly #files: RecordFiles;
  readonly #guards: HostGuards;
  readonly #spares: SpareFiles | undefined;
  readonly #fsync: boolean;
  readonly #fileMode: number;
  readonly #renameFile: (from: string, to: string) => Promise<void>;
  readonly #reads: RecordReads;
  readonly #assertHeld: (lease: HeldLease) => Promise<void>;
  /**
   * Calls on one id, in the order they were made: a set writes its temp file before it takes
   * the record's guard, so a delete (or a get) made after it would otherwise run first, and the
   * record the caller deleted would then be placed.
   */
  readonly #order = new KeyedQueue();

  constructor(init: RecordIoInit) {
    this.#assertHeld = init.assertHeld;
    this.#layout = init.layout;
    this.#fs = init.fs;
    this.#files = init.files;
    this.#guards = init.guards;
    this.#spares = init.spares;
    this.#fsync = init.fsync;
    this.#fileMode = init.fileMode;
    this.#renameFile = init.renameFile;
    this.#reads = new RecordReads(init);
  }

  get(id: string, now: number): Promise<SessionRecord | undefined> {
    return this.#order.run(id, () => this.#reads.get(id, now));
  }

  set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
    lease?: HeldLease,
  ): Promise<boolean> {
    return this.#order.run(id, () =>
      this.#layout.inShard(id, () => this.#set(id, record, only, now, lease)),
    );
  }

  async #set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
    lease?: HeldLease,
  ): Promise<boolean> {
    const file = this.#layout.recordPath(id);
    if (!this.#layout.isWritable(id)) await this.#layout.verifyShard(id, true);
    const { owner } = record;
    const owners = this.#files.owners;
    // Creating where nothing exists needs no guard: link(2) fails if the name is taken, and
    // then nothing was replaced, so no other owner's entry and no spare to keep. An
    // unconditional set of a new id (most creates through express-session) goes this way too.
    // A fenced write checks its lease under the guard, like every fenced write.
    const unguarded = only !== 'present' && lease === undefined;
    // A name only this call uses: link(2) from a shared one (an owner's entry) places whatever it holds by then.
    const temp = await this.#writeTemp(id, record);
    /** This call made the owner's entry: the record it replaces may carry another owner. */
    let listed = false;
    let replacedOwner: string | undefined;
    let placed = false;
    try {
      const wrote = await this.#guards.serialize(file, async () => {
        if (unguarded) {
          if (owner !== undefined) listed = await owners.add(owner, id, true);
          const linked = await unless(['EEXIST'], false, async () => {
            await this.#fs.link(temp, file);
            return true;
          });
          if (linked) {
            await this.#syncDirectory(file);
            return true;
          }
          if (only === 'absent' && (await this.#presenceFor(only, id, file, now)) === 'live') {
            return false;
          }
        }
        const wrote = await this.#guards.hold(file, async () => {
          if (lease !== undefined) await this.#assertHeld(lease);
          const presence =
            only === undefined ? undefined : await this.#presenceFor(only, id, file, now);
          if (only === 'absent' && (presence === 'live' || presence === 'other')) return false;
          if (only === 'present' && presence !== 'live') return false;
          // The entry goes in before the record; the replaced record's owner is read first.
          if (owner !== undefined) listed = (await owners.add(owner, id)) || listed;
          if (presence !== 'absent' && (owner === undefined ? await owners.inUse() : listed)) {
            const found = await this.#files.ownerOf(id, file);
            replacedOwner = found.present ? found.owner : undefined;
          }
          await this.#replace(temp, file, presence !== 'absent');
          placed = true;
          return true;
        });
        if (wrote) await this.#syncDirectory(file);
        return wrote;
      });
      if (wrote && owner !== undefined) await owners.ensure(owner, id);
      if (wrote && replacedOwner !== undefined && replacedOwner !== owner) {
        await owners.remove(replacedOwner, id);
      }
      if (!wrote && listed) await owners.remove(owner as string, id);
      return wrote;
    } finally {
      if (!placed) await unless(['ENOENT'], undefined, () => this.#fs.unlink(temp));
    }
  }

  touch(id: string, expiresAt: number, now: number, lease?: HeldLease): Promise<boolean> {
    return this.#order.run(id, () =>
      this.#layout.inShard(id, () => this.#touch(id, expiresAt, now, lease)),
    );
  }

  async #touch(id: string, expiresAt: number, now: number, lease?: HeldLease): Promise<boolean> {
    const file = this.#layout.recordPath(id);
    const mtimeIsEnough =
      this.#files.settings.statIsEnough && !this.#fsync && expiresAt === mtimeFor(expiresAt);
    return this.#guards.serialize(file, async () => {
      // The cheap path needs no cross-process guard: it moves the mtime of whatever file is
      // the record's, so a concurrent set replaces a touched record (touch, then set) and a
      // delete removes it. A fenced touch takes the guard, where its lease is checked.
      if (mtimeIsEnough && lease === undefined) {
        const extended = await this.#extendByMtime(id, file, expiresAt, now);
        if (extended !== undefined) return extended;
      }
      if (!(await this.#layout.shardExists(id))) {
        if (lease !== undefined) await this.#assertHeld(lease);
        return false;
      }
      // The header path writes through an open file, so it holds the guard: no other process
      // replaces the file (and reuses its inode, see reuseFiles) while it is open here.
      return this.#guards.hold(file, async () => {
        if (lease !== undefined) {
          await this.#assertHeld(lease);
          if (mtimeIsEnough) {
            const extended = await this.#extendByMtime(id, file, expiresAt, now);
            if (extended !== undefined) return extended;
          }
        }
        return this.#touchHeader(id, file, expiresAt, now);
      });
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
      const parsed = decodeHeader(
        id,
        await readAt(this.#fs, fd, MAX_HEADER_BYTES, 0),
        this.#files.settings.caseSensitive,
      );
      if (parsed.kind === 'other-id') return false;
      if (parsed.kind === 'corrupt') throw corruptRecord(parsed.reason);
      const header = parsed.header;
      if (stats.size !== recordFileBytes(header)) {
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
    if (!(await this.#layout.shardExists(id))) return false;
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

  delete(id: string, now: number, lease?: HeldLease): Promise<boolean> {
    return this.#order.run(id, () => this.#layout.inShard(id, () => this.#delete(id, now, lease)));
  }

  async #delete(id: string, now: number, lease?: HeldLease): Promise<boolean> {
    const file = this.#layout.recordPath(id);
    // No shard directory, no record (and nowhere to put the guard).
    if (!(await this.#layout.shardExists(id))) {
      if (lease !== undefined) await this.#assertHeld(lease);
      return false;
    }
    const owners: string[] = [];
    const deleted = await this.#guards.run(file, async () => {
      if (lease !== undefined) await this.#assertHeld(lease);
      const presence = await this.#files.presence(id, file, now);
      if (presence === 'other') return false;
      if (presence === 'absent') return this.#deleteAside(id, file, now, owners);
      return this.#deleteAt(id, file, presence, owners);
    });
    for (const owner of owners) await this.#files.owners.remove(owner, id);
    return deleted;
  }

  /** Removes the record at `file`, whose presence is `presence`; true when it was live. */
  async #deleteAt(
    id: string,
    file: string,
    presence: Presence,
    owners: string[],
  ): Promise<boolean> {
    if (await this.#files.owners.inUse()) {
      const found = await this.#files.ownerOf(id, file);
      if (found.present && found.owner !== undefined) owners.push(found.owner);
    }
    const removed = await unless(['ENOENT'], false, async () => {
      // With file reuse on, the record becomes a spare: a rename frees no blocks, so the event
      // loop never waits for the disk to take them back (see SpareFiles).
      if (!(await this.#spares?.takeOver(file))) await this.#fs.unlink(file);
      return true;
    });
    if (removed) await this.#syncDirectory(file);
    return removed && presence === 'live';
  }

  /**
   * A delete that found no record: a sweep in another process may have it aside right now, to
   * put it back once it finds it live, or one that died may have left it there for the next
   * sweep to put back. Either would bring the deleted session back, so its copies aside go too,
   * then the record that a sweeper may have linked back meanwhile (it cannot link one back
   * once its copy aside is gone). Costs a listing of the shard, only when nothing was there.
   */
  async #deleteAside(id: string, file: string, now: number, owners: string[]): Promise<boolean> {
    const asides = await this.#files.asidesOf(id);
    if (asides.length === 0) return false;
    let live = false;
    for (const aside of asides) {
      const presence = await this.#files.headerPresence(id, aside, now);
      if (presence === 'absent' || presence === 'other') continue;
      if (await this.#deleteAt(id, aside, presence, owners)) live = true;
    }
    const back = await this.#files.presence(id, file, now);
    if (back !== 'absent' && back !== 'other' && (await this.#deleteAt(id, file, back, owners))) {
      live = true;
    }
    return live;
  }

  /**
   * The live records listed for `owner` that carry it. An entry whose record is gone or carries
   * another owner is removed on the way; one whose record has expired is left to the sweep.
   * A listed record that fails to decode, or is larger than `maxRecordBytes` allows reading, is
   * left out, as `get` rejects it for its own id, and so is one this process may not open
   * (`EACCES`, `EPERM`); the rest of the owner's sessions are listed.
   */
  async ownedBy(owner: string, now: number): Promise<OwnedSession[]> {
    const owners = this.#files.owners;
    const sessions: OwnedSession[] = [];
    await this.#files.forEachBounded(await owners.list(owner), async (id) => {
      let record: SessionRecord | undefined;
      try {
        record = await this.get(id, now);
      } catch (error) {
        if (isSessionError(error, 'ERR_CORRUPT_RECORD')) return;
        if (isSessionError(error, 'ERR_RECORD_TOO_LARGE')) return;
        // One file (or shard) whose mode shuts this process out must not hide the owner's others.
        if (SHUT_OUT.includes(errorCode(error) ?? '')) return;
        throw error;
      }
      if (record?.owner === owner) {
        sessions.push({ id, record });
        return;
      }
      if (record === undefined) {
        const found = await this.#files.ownerOf(id, this.#layout.recordPath(id));
        if (found.present && found.owner === owner) return;
      }
      await owners.remove(owner, id);
    });
    return sessions;
  }

  async clear(): Promise<void> {
    for await (const shard of this.#layout.shards()) {
      const directory = join(this.#layout.path, shard);
      let removed = false;
      for await (const entries of this.#layout.entryChunks(directory)) {
        await this.#files.forEachBounded(entries, async (entry) => {
          if (!entry.isFile()) return;
          const file = join(directory, entry.name);
          if (this.#files.isRecordName(shard, entry.name)) {
            await this.#guards.run(file, () => freeFile(file));
          } else if (this.#files.asideOf(shard, entry.name) !== undefined) {
            // A record a killed sweeper left aside: the next sweep would put it back.
            await freeFile(file);
          } else {
            return;
          }
          removed = true;
        });
      }
      // With durability 'full', as for a delete: unsynced unlinks come back after a power cut.
      if (removed && this.#fsync) await fsyncDirectory(this.#fs, directory);
    }
    await this.#files.owners.clear();
  }

  /** Writes the record to a temp file (a spare one when there is one) and returns its name. */
  async #writeTemp(id: string, record: SessionRecord): Promise<string> {
    const directory = this.#layout.shardPath(id);
    const bytes = encodeRecord(id, record.data, record.expiresAt, record.owner);
    const spare = await this.#spares?.open(directory);
    const temp = spare?.file ?? `${directory}${sep}${id}.${uniqueSuffix()}${TEMP_SUFFIX}`;
    const fd =
      spare?.fd ??
      (await this.#fs.open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, this.#fileMode));
    await this.#writeRecord(fd, temp, bytes, record.expiresAt, spare?.size);
    return temp;
  }

  /**
   * Writes `bytes` through `fd` into the file `path` (cut down to them when it held more),
   * sets its mtime to the expiry, and closes it; unlinks it when that fails.
   */
  async #writeRecord(
    fd: number,
    path: string,
    bytes: Buffer,
    expiresAt: number,
    sizeBefore?: number,
  ): Promise<void> {
    try {
      await writeAll(this.#fs, fd, bytes, 0);
      if (sizeBefore !== undefined && sizeBefore > bytes.length) {
        await this.#fs.ftruncate(fd, bytes.length);
      }
      await this.#fs.futimes(fd, Date.now() / 1000, mtimeFor(expiresAt) / 1000);
      if (this.#fsync) await this.#fs.fsync(fd);
    } catch (error) {
      await this.#fs.close(fd).catch(() => {});
      await unless(['ENOENT'], undefined, () => this.#fs.unlink(path));
      throw error;
    }
    await this.#fs.close(fd);
  }

  /**
   * What a conditional write finds at `file`. `only: 'absent'` replaces a damaged record, which an
   * mtime or header alone calls live, so it reads such a record whole; only a taken name costs it.
   */
  async #presenceFor(
    only: 'absent' | 'present',
    id: string,
    file: string,
    now: number,
  ): Promise<Presence> {
    const presence = await this.#files.presence(id, file, now);
    if (only === 'present' || presence !== 'live') return presence;
    return (await this.#reads.damaged(id, file)) ? 'corrupt' : 'live';
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
}
