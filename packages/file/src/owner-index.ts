import { createHash, randomBytes } from 'node:crypto';
import { join, sep } from 'node:path';
import { isSessionId, SessionError } from '@sessile/core';
import {
  errorCode,
  type FileSystem,
  fsyncDirectory,
  NO_SPACE,
  O_CREAT,
  O_EXCL,
  O_NOFOLLOW,
  O_WRONLY,
  SHUT_OUT,
  unless,
} from './fs.js';

/** The owner index: `<path>/.owners/<2 characters>/<43 characters>/<id>`, see `OwnerIndex`. */
export const OWNERS_DIRECTORY = '.owners';
/** Owner directories checked to be plain ones are remembered up to this many, then all forgotten. */
const MAX_VERIFIED_DIRECTORIES = 10_000;
/** How often a process that has seen no owner index looks again for one another process made. */
const IN_USE_RECHECK_MS = 1000;

/**
 * In each owner's directory, the file every entry of that owner is a hard link to: an entry
 * costs one `link`, no inode of its own. Not a session id, so never listed as an entry.
 */
export const ANCHOR_NAME = '.anchor';
/**
 * In the index's root: there once every record that carries an owner has its entry. It goes
 * with the index, so an index removed by hand (or made again by a writer after that) has none.
 */
export const COMPLETE_FILE = '.complete';
/**
 * Beside the index, at the store's top: some process has listed an owner here, so a missing
 * index was lost, not never made.
 */
export const OWNERS_USED_FILE = '.owners-used';
/** The file a rebuild makes in the index's root as it starts, `.rebuild.<hex>.tmp`. */
const REBUILD_PREFIX = '.rebuild.';

/** What a record file says about its owner. */
export type OwnerLookup = { present: false } | { present: true; owner: string | undefined };

export interface OwnerIndexInit {
  /** The store's directory, symlinks resolved. */
  path: string;
  fs: FileSystem;
  fileMode: number;
  directoryMode: number;
  /** `durability: 'full'`: an entry is on disk before the record it lists is written. */
  fsync: boolean;
  /** Reads the owner of the record file of `id`, whatever its expiry. */
  ownerOf: (id: string) => Promise<OwnerLookup>;
}

/** The directory name of an owner: SHA-256 of its UTF-8, base64url, so any owner makes a safe name. */
function ownerHash(owner: string): string {
  return createHash('sha256').update(owner, 'utf8').digest('base64url');
}

/**
 * One entry per (owner, id) in a directory named by a hash of the owner: a hard link to that
 * directory's anchor file (an empty file of its own where the anchor is at the filesystem's
 * limit of links, or cannot be linked). An entry is never a record's file, and never a name a
 * record is linked from: another process may replace it at any moment. An entry cannot
 * change in one step with its record, so the rules keep it correct by order instead:
 * - a writer of a record that carries owner O adds O's entry before the record, and makes sure
 *   it is still there after (a crash between leaves an entry too many, never one too few);
 * - whoever takes an entry away unlinks it, then reads the record, and puts the entry back when
 *   the record carries that owner after all (so a remover racing a writer never wins);
 * - `ownedBy` trusts no entry: it reads each record and keeps those that carry the owner.
 * An entry too many (a crash, a hash collision, an owner changed by a process that had not yet
 * seen the index) is therefore harmless, and `ownedBy` removes it when it meets it.
 */
export class OwnerIndex {
  readonly #root: string;
  readonly #usedMarker: string;
  readonly #fs: FileSystem;
  readonly #fileMode: number;
  readonly #directoryMode: number;
  readonly #fsync: boolean;
  readonly #ownerOf: (id: string) => Promise<OwnerLookup>;
  /** Owner → its directory, checked to be a plain one. */
  readonly #verified = new Map<string, string>();
  /** The index's root and its 2-character directories, checked to be plain ones. */
  readonly #verifiedParents = new Set<string>();
  /** Once the index exists it stays: only the time of the last look is kept while it does not. */
  #inUse = false;
  #checkedAt = Number.NEGATIVE_INFINITY;

  constructor(init: OwnerIndexInit) {
    this.#root = join(init.path, OWNERS_DIRECTORY);
    this.#usedMarker = join(init.path, OWNERS_USED_FILE);
    this.#fs = init.fs;
    this.#fileMode = init.fileMode;
    this.#directoryMode = init.directoryMode;
    this.#fsync = init.fsync;
    this.#ownerOf = init.ownerOf;
  }

  /**
   * Whether the index lists every record that carries an owner. `'complete'`: its `.complete`
   * file is there, or no process ever listed an owner here (no index and no `.owners-used`).
   * `'lost'`: an index removed by hand (or lost with its directory), which misses sessions
   * until `OwnerRebuild` has listed the records again. `'unverified'`: an index without
   * `.complete` and without `.owners-used`, made by an older version of this package (or by a
   * first writer that died before marking it), kept whole by its writers but worth one rebuild.
   */
  async state(): Promise<'complete' | 'lost' | 'unverified'> {
    if (await this.#fs.exists(join(this.#root, COMPLETE_FILE))) return 'complete';
    if (await this.#fs.exists(this.#usedMarker)) return 'lost';
    return (await this.#fs.exists(this.#root)) ? 'unverified' : 'complete';
  }

  /**
   * Starts a rebuild: marks the store as one that uses owners, makes the index's root, and
   * makes a file of this rebuild's own in it, which `finishRebuild` renames to `.complete`.
   */
  async startRebuild(): Promise<string> {
    await this.#createFile(this.#usedMarker);
    // Never a directory a planted symlink leads to: this file would be made outside the store.
    await this.#verifyDirectory(this.#root, true);
    this.#verifiedParents.clear();
    this.#verified.clear();
    const started = join(this.#root, `${REBUILD_PREFIX}${randomBytes(6).toString('hex')}.tmp`);
    await this.#createFile(started);
    return started;
  }

  /**
   * Marks the index complete after a rebuild that started with `started`; false when the
   * index's root was removed (by hand) since then, taking the entries made so far with it.
   */
  async finishRebuild(started: string): Promise<boolean> {
    const renamed = await unless(['ENOENT'], false, async () => {
      await this.#fs.rename(started, join(this.#root, COMPLETE_FILE));
      return true;
    });
    if (!renamed) return false;
    if (this.#fsync) await fsyncDirectory(this.#fs, this.#root);
    // Files of rebuilds that died (killed, or a lost lease): this one held the lease, so none runs.
    const names = await unless(['ENOENT'], [] as string[], () => this.#fs.readdir(this.#root));
    for (const name of names) {
      if (name.startsWith(REBUILD_PREFIX)) await this.abandonRebuild(join(this.#root, name));
    }
    return true;
  }

  /** Removes the file of a rebuild that did not finish (closed, failed, or died). */
  async abandonRebuild(started: string): Promise<void> {
    await unless(['ENOENT'], undefined, () => this.#fs.unlink(started));
  }

  /**
   * True once some process has listed an owner in this store. Until then, writes of records
   * without an owner need not read the record they replace to learn its owner.
   */
  async inUse(): Promise<boolean> {
    if (this.#inUse) return true;
    const now = performance.now();
    if (now - this.#checkedAt < IN_USE_RECHECK_MS) return false;
    this.#checkedAt = now;
    const stats = await unless(['ENOENT'], undefined, () => this.#fs.lstat(this.#root));
    this.#inUse = stats !== undefined;
    return this.#inUse;
  }

  /**
   * Adds the entry of (`owner`, `id`) unless it is there; true when this call created it. An
   * entry already there costs one `access` (no Error, no Stats); for a new record (`isNew`),
   * whose entry is rarely there, the exclusive create alone answers.
   */
  async add(owner: string, id: string, isNew = false): Promise<boolean> {
    try {
      return await this.#add(owner, id, isNew);
    } catch (error) {
      // Its directory was removed since it was checked (by hand): check, or make, it again.
      if (errorCode(error) !== 'ENOENT') throw error;
      this.#verified.delete(owner);
      this.#verifiedParents.clear();
      return this.#add(owner, id, isNew);
    }
  }

  async #add(owner: string, id: string, isNew: boolean): Promise<boolean> {
    const directory = this.#verified.get(owner) ?? (await this.#ownerDirectory(owner, true));
    const entry = `${directory}${sep}${id}`;
    if (!isNew && (await this.#fs.exists(entry))) return false;
    const created = await this.#create(directory, entry);
    if (created && this.#fsync) await fsyncDirectory(this.#fs, directory);
    return created;
  }

  /**
   * `add` after the record is written: puts back an entry a racing remover took. The entry is
   * nearly always there, so that case is one `access` and no further call.
   */
  async ensure(owner: string, id: string): Promise<void> {
    const directory = this.#verified.get(owner);
    if (directory !== undefined && (await this.#fs.exists(`${directory}${sep}${id}`))) return;
    await this.add(owner, id);
  }

  /** Whether the entry of (`owner`, `id`) is there. */
  async lists(owner: string, id: string): Promise<boolean> {
    const directory = await unless(SHUT_OUT, undefined, () => this.#ownerDirectory(owner, false));
    return directory !== undefined && this.#fs.exists(`${directory}${sep}${id}`);
  }

  /** Takes the entry of (`owner`, `id`) away, unless the record of `id` carries `owner`. */
  async remove(owner: string, id: string): Promise<void> {
    // An entry left over is never listed (`ownedBy` checks each record), so a directory whose
    // mode was changed by hand must not fail the delete or sweep that already removed the record.
    const directory = await unless(SHUT_OUT, undefined, () => this.#ownerDirectory(owner, false));
    if (directory === undefined) return;
    await this.#removeEntry(directory, ownerHash(owner), id);
  }

  /** The ids listed for `owner`, unchecked. */
  async list(owner: string): Promise<string[]> {
    const directory = await this.#ownerDirectory(owner, false);
    if (directory === undefined) return [];
    const names = await unless(['ENOENT'], [] as string[], () => this.#fs.readdir(directory));
    return names.filter(isSessionId);
  }

  /** Takes away every entry whose record no longer carries its owner (after `clear`, all). */
  async clear(): Promise<void> {
    const shards = await unless(['ENOENT'], [] as string[], () => this.#fs.readdir(this.#root));
    for (const shard of shards) {
      const hashes = await unless(['ENOENT', 'ENOTDIR'], [] as string[], () =>
        this.#fs.readdir(join(this.#root, shard)),
      );
      for (const hash of hashes) {
        const directory = join(this.#root, shard, hash);
        const ids = await unless(['ENOENT', 'ENOTDIR'], [] as string[], () =>
          this.#fs.readdir(directory),
        );
        for (const id of ids) if (isSessionId(id)) await this.#removeEntry(directory, hash, id);
      }
    }
  }

  async #removeEntry(directory: string, hash: string, id: string): Promise<void> {
    const entry = join(directory, id);
    const kept = await unless(SHUT_OUT, true, async () => {
      await unless(['ENOENT'], undefined, () => this.#fs.unlink(entry));
      return false;
    });
    if (kept) return;
    // A writer may have put the record in place, with this owner, since the caller looked.
    const found = await this.#ownerOf(id);
    if (found.present && found.owner !== undefined && ownerHash(found.owner) === hash) {
      await this.#create(directory, entry);
    }
  }

  /** Makes `entry` in `directory` unless it is there: true when this call made it. */
  async #create(directory: string, entry: string): Promise<boolean> {
    const anchor = `${directory}${sep}${ANCHOR_NAME}`;
    for (let tries = 0; tries < 2; tries++) {
      try {
        await this.#fs.link(anchor, entry);
        return true;
      } catch (error) {
        const code = errorCode(error);
        if (code === 'EEXIST') return false;
        // EMLINK: the anchor holds as many links as the filesystem allows; EPERM: no hard links here.
        if (code === 'EMLINK' || code === 'EPERM') break;
        if (code !== 'ENOENT') throw error;
        // No anchor yet (a directory from before anchors, or made by a process that died).
        await this.#createFile(anchor);
      }
    }
    return this.#createFile(entry);
  }

  /** An empty file, O_EXCL: true when this call made it. */
  async #createFile(entry: string): Promise<boolean> {
    const flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;
    const fd = await unless(['EEXIST'], undefined, () =>
      this.#fs.open(entry, flags, this.#fileMode),
    );
    if (fd === undefined) return false;
    await this.#fs.close(fd);
    return true;
  }

  /**
   * The owner's directory, checked (once per process) to be a plain directory down from the
   * store's; made when `create` is set, else undefined when missing.
   */
  async #ownerDirectory(owner: string, create: true): Promise<string>;
  async #ownerDirectory(owner: string, create: boolean): Promise<string | undefined>;
  async #ownerDirectory(owner: string, create: boolean): Promise<string | undefined> {
    const known = this.#verified.get(owner);
    if (known !== undefined) return known;
    const hash = ownerHash(owner);
    const directory = join(this.#root, hash.slice(0, 2), hash);
    const levels = [this.#root, join(this.#root, hash.slice(0, 2)), directory];
    for (const level of levels) {
      if (this.#verifiedParents.has(level)) continue;
      const found = await this.#verifyDirectory(level, create);
      if (found === 'missing') return undefined;
      if (found === 'made' && level === this.#root) await this.#madeRoot();
      if (level !== directory) this.#verifiedParents.add(level);
      // A directory this call made has no anchor yet: make it now, not after a failed link.
      else if (found === 'made') await this.#createFile(`${directory}${sep}${ANCHOR_NAME}`);
    }
    this.#inUse = true;
    if (this.#verified.size >= MAX_VERIFIED_DIRECTORIES) this.#verified.clear();
    this.#verified.set(owner, directory);
    return directory;
  }

  /**
   * The index's root was just made by this process. Where no process had listed an owner here
   * before, the empty index is complete; where one had, the index was lost (removed by hand),
   * and stays incomplete until `OwnerRebuild` has listed the records again.
   */
  async #madeRoot(): Promise<void> {
    if (await this.#fs.exists(this.#usedMarker)) return;
    // On a full disk the write goes on; the index, left without `.complete`, is rebuilt later.
    await unless(NO_SPACE, undefined, async () => {
      await this.#createFile(this.#usedMarker);
      if (this.#fsync) await fsyncDirectory(this.#fs, join(this.#root, '..'));
      await this.#createFile(join(this.#root, COMPLETE_FILE));
    });
  }

  /**
   * Checks that `level` is a plain directory, making it when `create` is set and it is missing
   * (one this call made needs no check). An existing directory, the common case in a process
   * that meets an owner for the first time, costs one `lstat` and builds no Error.
   */
  async #verifyDirectory(level: string, create: boolean): Promise<'made' | 'found' | 'missing'> {
    let stats = await this.#fs.lstatIfAny(level);
    if (stats === undefined && create) {
      const made = await unless(['EEXIST'], false, async () => {
        await this.#fs.mkdir(level, { mode: this.#directoryMode });
        return true;
      });
      if (made) {
        if (this.#fsync) await fsyncDirectory(this.#fs, join(level, '..'));
        return 'made';
      }
      // Another process made it in between.
      stats = await this.#fs.lstatIfAny(level);
    }
    if (stats === undefined) return 'missing';
    if (!stats.isDirectory()) {
      throw new SessionError(
        'ERR_STORE_IO',
        `Refusing to use ${level}: it is not a plain directory inside the store (a symlink?)`,
      );
    }
    return 'found';
  }
}
