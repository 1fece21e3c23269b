import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { sep } from 'node:path';
import { performance } from 'node:perf_hooks';
import { isSessionId } from '@sessile/core';
import type { HostGuards } from '@sessile/core/store';
import {
  decodeHeader,
  type HeaderResult,
  MAX_FRAME_BYTES,
  MAX_HEADER_BYTES,
  ownerOfFrame,
  type RecordHeader,
  recordFileBytes,
} from './format.js';
import { errorCode, type FileSystem, freeFile, NO_SPACE, SHUT_OUT, unless } from './fs.js';
import { OwnerIndex, type OwnerLookup } from './owner-index.js';
import type {
  RecordFilesSettings,
  StopSignal,
  SweepEntry,
  Sweeper,
  SweepStep,
  SweepStepRequest,
} from './sweep-protocol.js';

/** Records live in `<path>/<first SHARD_LENGTH characters of the id>/<id>`. */
export const SHARD_LENGTH = 1;
export const TEMP_SUFFIX = '.tmp';
export const GUARD_SUFFIX = '.lock';
/**
 * A record the sweep moved aside to judge it, `<id>.<hex>.aside.tmp`: for microseconds, unless
 * the sweeping process died in between. Still a temp file to the name rules, so an older
 * version of this package removes it after `graceMs`.
 */
export const ASIDE_SUFFIX = `.aside${TEMP_SUFFIX}`;
/** The latest mtime set on a record: the 32-bit seconds limit, so every filesystem can store it. */
export const MAX_MTIME_MS = 2_147_483_647_000;
/** How far a coarse filesystem's mtime (whole or even seconds) may fall below the one set. */
const COARSE_MTIME_MS = 2000;

/** What one path holds for one id, judged as of `now`. */
export type Presence = 'live' | 'expired' | 'absent' | 'corrupt' | 'other';

/**
 * What the sweep did with one directory entry; a number when it kept a record: until when that
 * record is live by the expiry rule (the sweep's `now` when something newer took its place).
 */
export type SweepOutcome = 'removed' | 'other' | number;

/** Moved-aside records a sweep step frees here, timed, before it decides how to free the rest. */
const TIMED_FREES = 8;
/** A median free slower than this (ms) means the disk takes part in it (see `#free`). */
const SLOW_FREE_MS = 0.05;
/** Frees in flight at once through the thread pool: libuv's default pool size. */
const FREE_WIDTH = 4;
/** Entries a step examines before its deadline may stop it, so every sweep call makes progress. */
export const MIN_STEP_ENTRIES = 32;

interface StepFrees {
  /** How long the step's first frees took, ms. */
  timed: number[];
  /** Those were slow: the rest go through the thread pool. */
  slow: boolean;
  running: Set<Promise<void>>;
  error?: unknown;
}

function noFreesYet(): StepFrees {
  return { timed: [], slow: false, running: new Set() };
}

/** The index of the first of the sorted `names` that sorts after `name`. */
function firstAfter(names: readonly string[], name: string): number {
  let low = 0;
  let high = names.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if ((names[middle] as string) <= name) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** The mtime (ms) that stands for `expiresAt`: rounded up, within what every filesystem stores. */
export function mtimeFor(expiresAt: number): number {
  return Math.min(MAX_MTIME_MS, Math.max(0, Math.ceil(expiresAt)));
}

/**
 * The expiry rule. `set` writes `expiresAt` into the header and the same instant as the mtime;
 * `touch` moves only the mtime when it extends the expiry. So a record's expiry is its mtime
 * when that is later than the header's, else the header's. Where the filesystem cannot store
 * milliseconds exactly, mtimes are ignored and the header always holds the expiry.
 */
export function effectiveExpiresAt(
  headerExpiresAt: number,
  mtimeMs: number,
  mtimeExact: boolean,
): number {
  const mtime = Math.round(mtimeMs);
  return mtimeExact && mtime > Math.ceil(headerExpiresAt) ? mtime : headerExpiresAt;
}

/** A random prefix per thread plus a counter: unique temp names without a CSPRNG call per write. */
const tempPrefix = randomBytes(6).toString('hex');
let tempCounter = 0;
export function uniqueSuffix(): string {
  tempCounter = (tempCounter + 1) % Number.MAX_SAFE_INTEGER;
  return `${tempPrefix}${tempCounter.toString(36)}`;
}

/**
 * The record files of one store directory as the rules of the format see them: whether a path
 * holds a live record of an id, and what the sweep does with each directory entry. Used by
 * `FileStore` on the event loop and by its sweep worker thread alike.
 */
export class RecordFiles implements Sweeper {
  readonly settings: RecordFilesSettings;
  readonly owners: OwnerIndex;
  readonly #fs: FileSystem;
  readonly #guards: HostGuards;
  /** The sorted names of the shard the sweep is in. */
  #listed: { shard: string; names: string[] } | undefined;
  /** How this sweep step frees the records it moved aside (see `#free`). */
  #frees = noFreesYet();

  constructor(settings: RecordFilesSettings, fs: FileSystem, guards: HostGuards) {
    this.settings = settings;
    this.#fs = fs;
    this.#guards = guards;
    this.owners = new OwnerIndex({
      path: settings.path,
      fs,
      fileMode: settings.fileMode,
      directoryMode: settings.directoryMode,
      fsync: settings.fsync,
      ownerOf: (id) => this.ownerOf(id, this.recordPath(id)),
    });
  }

  /** `<path>/<shard>/<id>` of a valid id. */
  recordPath(id: string): string {
    return `${this.settings.path}${sep}${id.slice(0, SHARD_LENGTH)}${sep}${id}`;
  }

  /** The owner the record file at `file` carries, from its first bytes, whatever its expiry. */
  async ownerOf(id: string, file: string): Promise<OwnerLookup> {
    const found = await this.#fs.readStart(file, MAX_FRAME_BYTES);
    if (found?.bytes === undefined) return { present: false };
    const parsed = decodeHeader(id, found.bytes, this.settings.caseSensitive);
    if (parsed.kind === 'other-id') return { present: false };
    if (parsed.kind === 'corrupt') return { present: true, owner: undefined };
    return { present: true, owner: ownerOfFrame(parsed.header, found.bytes) };
  }

  /**
   * Judges the record at `file` as of `now`: from one lstat when its mtime proves it live,
   * otherwise from its header (never the payload).
   */
  async presence(id: string, file: string, now: number): Promise<Presence> {
    if (this.settings.statIsEnough) {
      const stats = await unless(['ENOENT', 'ENOTDIR'], undefined, () => this.#fs.lstat(file));
      if (stats === undefined || !stats.isFile()) return 'absent';
      if (this.certainlyLive(stats, now)) return 'live';
    }
    return this.headerPresence(id, file, now);
  }

  /** `presence` from the header alone, for callers whose own lstat could not decide. */
  async headerPresence(id: string, file: string, now: number): Promise<Presence> {
    const expiry = await this.#headerExpiry(id, file);
    if (typeof expiry !== 'number') return expiry;
    return expiry > now ? 'live' : 'expired';
  }

  /** The record's expiry by the rule, from its header and mtime; else what the file is instead. */
  async #headerExpiry(id: string, file: string): Promise<number | 'absent' | 'other' | 'corrupt'> {
    const found = await this.#fs.readStart(file, MAX_HEADER_BYTES);
    if (found?.bytes === undefined) return 'absent';
    const parsed: HeaderResult = decodeHeader(id, found.bytes, this.settings.caseSensitive);
    if (parsed.kind === 'other-id') return 'other';
    if (parsed.kind === 'corrupt') return 'corrupt';
    const header: RecordHeader = parsed.header;
    if (found.stats.size !== recordFileBytes(header)) return 'corrupt';
    return effectiveExpiresAt(header.expiresAt, found.stats.mtimeMs, this.settings.mtimeExact);
  }

  /** A record whose mtime is after `now` is live whatever its header says (the rule only extends). */
  certainlyLive(stats: Stats, now: number): boolean {
    return Math.round(stats.mtimeMs) > now;
  }

  /**
   * True when the mtime alone proves the record expired. Exact mtimes carry the expiry; coarse
   * ones (whole or even seconds) round it down, so the last two seconds need the header. An
   * mtime at the cap stands for every expiry from the cap on, so only the header can tell.
   */
  certainlyExpired(stats: Stats, now: number): boolean {
    const mtime = Math.round(stats.mtimeMs);
    if (mtime >= MAX_MTIME_MS - COARSE_MTIME_MS) return false;
    return mtime <= (this.settings.mtimeExact ? now : now - COARSE_MTIME_MS);
  }

  isRecordName(shard: string, name: string): boolean {
    return isSessionId(name) && name.slice(0, SHARD_LENGTH) === shard;
  }

  /** How long a guard or holder file must miss its heartbeat before the sweep removes it. */
  leftoverGuardStaleMs(): number {
    return Math.max(this.settings.graceMs, 2 * this.#guards.staleMs);
  }

  /**
   * Sweeps the next `size` entries of a pass after `after`, listing shards as it reaches them.
   * A shard's sorted names are kept while the pass is inside it, so a shard is listed once per
   * pass, not once per step; they are dropped when the pass ends. Entries in `busy` are skipped
   * (and reported as left behind). The step ends early, before its next entry or shard, once
   * `stop` aborts or, past its first `MIN_STEP_ENTRIES` entries, once the deadline has passed.
   */
  async sweepStep(request: SweepStepRequest, stop?: StopSignal): Promise<SweepStep> {
    const { after, size, now, deadline } = request;
    const busy = new Set(request.busy);
    const step: SweepStep = {
      removed: 0,
      scanned: 0,
      last: undefined,
      ended: false,
      leftBusy: false,
      liveUntil: Number.POSITIVE_INFINITY,
    };
    // Once true, stays true: a clock stepping back must not let the step skip ahead to the next shard.
    let stopped = false;
    const stopping = () =>
      (stopped ||=
        step.scanned >= size ||
        stop?.aborted === true ||
        (step.scanned >= MIN_STEP_ENTRIES && Date.now() >= deadline));
    /** The shard's names from `from`, each counted as scanned when taken, until the step stops. */
    function* take(shard: string, names: readonly string[], from: number) {
      for (let next = from; next < names.length && !stopping(); next++) {
        const entry: SweepEntry = { shard, name: names[next] as string };
        step.scanned++;
        step.last = entry;
        yield entry;
      }
    }
    const sweepOne = async (entry: SweepEntry) => {
      const name = this.asideOf(entry.shard, entry.name) ?? entry.name;
      if (busy.has(`${this.settings.path}${sep}${entry.shard}${sep}${name}`)) {
        step.leftBusy = true;
        return;
      }
      const outcome = await this.sweepEntry(entry.shard, entry.name, now);
      if (outcome === 'removed') step.removed++;
      else if (typeof outcome === 'number') step.liveUntil = Math.min(step.liveUntil, outcome);
    };
    try {
      for (const shard of request.shards) {
        if (shard < after.shard) continue;
        if (stopping()) return step;
        const resuming = shard === after.shard && after.name !== '';
        const names = await this.#namesOf(shard, resuming);
        // A shard this process may not list is passed over, so the pass cannot call itself done.
        if (names === undefined) {
          step.leftBusy = true;
          continue;
        }
        const entries = take(shard, names, resuming ? firstAfter(names, after.name) : 0);
        if (this.#fs.io === 'sync') {
          for (const entry of entries) await sweepOne(entry);
        } else {
          await this.forEachBounded(entries, sweepOne);
        }
      }
      if (stopping()) return step;
      step.ended = true;
      this.#listed = undefined;
      return step;
    } finally {
      await this.#endFrees();
    }
  }

  /** How many listed names this sweeper keeps between steps: none once a pass has ended. */
  get keptNames(): number {
    return this.#listed?.names.length ?? 0;
  }

  /**
   * A shard's names, sorted: the cached list when `resuming` inside the shard listed last;
   * `undefined` when its mode (changed by hand) shuts this process out.
   */
  async #namesOf(shard: string, resuming: boolean): Promise<string[] | undefined> {
    if (resuming && this.#listed?.shard === shard) return this.#listed.names;
    this.#listed = undefined;
    const names = await unless(SHUT_OUT, undefined, () =>
      unless(['ENOENT', 'ENOTDIR'], [] as string[], () =>
        this.#fs.readdir(`${this.settings.path}${sep}${shard}`),
      ),
    );
    if (names === undefined) return undefined;
    names.sort();
    this.#listed = { shard, names };
    return names;
  }

  /** Handles one directory entry of a shard; never opens a record whose mtime says it is live. */
  async sweepEntry(shard: string, name: string, now: number): Promise<SweepOutcome> {
    const file = `${this.settings.path}${sep}${shard}${sep}${name}`;
    const stats = await unless(['ENOENT'], undefined, () => this.#fs.lstat(file));
    if (stats === undefined) return 'other';
    if (stats.isFile() && this.isRecordName(shard, name)) {
      if (this.certainlyLive(stats, now)) return Math.round(stats.mtimeMs);
      return this.#removeIfExpired(name, file, now);
    }
    const id = stats.isFile() ? this.asideOf(shard, name) : undefined;
    if (id !== undefined) {
      // Only a record of that id goes back: a foreign file of that name is a leftover. One this
      // process may not read is judged as a moved record is (see `#settleAside`).
      const found = await unless(SHUT_OUT, 'unreadable', () => this.#headerExpiry(id, file));
      if (found === 'absent') return 'other';
      if (found !== 'other' && found !== 'corrupt') return this.#settleLeftAside(id, file, now);
    }
    await this.#removeLeftover(name, file, stats);
    return 'other';
  }

  /**
   * The paths of `id`'s records that a sweep moved aside and has not settled: one in another
   * process is judging it now, or one that died did not put it back.
   */
  async asidesOf(id: string): Promise<string[]> {
    const shard = id.slice(0, SHARD_LENGTH);
    const directory = `${this.settings.path}${sep}${shard}`;
    const names = await unless(['ENOENT', 'ENOTDIR'], [], () => this.#fs.readdir(directory));
    const prefix = `${id}.`;
    return names
      .filter((name) => name.startsWith(prefix) && this.asideOf(shard, name) === id)
      .map((name) => `${directory}${sep}${name}`);
  }

  /** The id of a record the sweep moved aside (`<id>.<hex>.aside.tmp`), else undefined. */
  asideOf(shard: string, name: string): string | undefined {
    if (!name.endsWith(ASIDE_SUFFIX)) return undefined;
    const id = name.slice(0, name.indexOf('.'));
    return this.isRecordName(shard, id) ? id : undefined;
  }

  /**
   * Removes one record that looked expired, without a guard: the file is first moved aside
   * (rename is atomic), then the moved inode is checked again. If a writer replaced or touched
   * the record in between, the moved file is live and goes back, unless something newer is
   * there already. So a record written or touched concurrently is never lost; should this
   * process die before it goes back, the next sweep puts it back (see `#settleLeftAside`).
   */
  async #removeIfExpired(id: string, file: string, now: number): Promise<SweepOutcome> {
    // Ordered after any write to this id queued in this thread.
    return this.#guards.serialize(file, async () => {
      const aside = `${file}.${uniqueSuffix()}${ASIDE_SUFFIX}`;
      const moved = await unless(['ENOENT'], false, async () => {
        await this.#fs.rename(file, aside);
        return true;
      });
      if (!moved) return 'other';
      return this.#settleAside(id, file, aside, now, false);
    });
  }

  /**
   * A record another sweeper moved aside and did not settle: it died between the move and the
   * link back (or another sweeper is settling it right now, which is harmless: both link back
   * the same inode, and only one link succeeds). Settled as that sweeper would have, except that
   * a live record whose owner's entry is gone stays away: `ownedBy` (and so `revokeOwner`) found
   * it missing meanwhile and took its entry, and a revoked session must not come back.
   */
  #settleLeftAside(id: string, aside: string, now: number): Promise<SweepOutcome> {
    const file = this.recordPath(id);
    return this.#guards.serialize(file, () => this.#settleAside(id, file, aside, now, true));
  }

  /**
   * Judges the record moved aside to `aside`, links it back to `file` when it is live (unless
   * something newer is there), frees the aside name, and keeps its owner's entry in step.
   */
  async #settleAside(
    id: string,
    file: string,
    aside: string,
    now: number,
    leftBehind: boolean,
  ): Promise<SweepOutcome> {
    // Gone: another sweeper settled it first.
    const stats = await unless(['ENOENT'], undefined, () => this.#fs.lstat(aside));
    if (stats === undefined) return 'other';
    // Not a file: not a record, so nothing that expires.
    let liveUntil = stats.isFile() ? Math.round(stats.mtimeMs) : Number.POSITIVE_INFINITY;
    let expired = liveUntil <= now;
    if (expired && (this.settings.sweepMode === 'verify' || !this.certainlyExpired(stats, now))) {
      const expiry = await unless(SHUT_OUT, undefined, () => this.#headerExpiry(id, aside));
      liveUntil = typeof expiry === 'number' ? expiry : now;
      // A header this process may not read (its mode changed by hand) proves nothing: it goes back.
      expired = expiry !== undefined && liveUntil <= now;
    }
    const found = (await this.owners.inUse())
      ? await unless(SHUT_OUT, undefined, () => this.ownerOf(id, aside))
      : undefined;
    const owner = found?.present ? found.owner : undefined;
    const restore =
      !expired && (!leftBehind || owner === undefined || (await this.owners.lists(owner, id)));
    let relinked = false;
    if (restore) {
      try {
        await this.#fs.link(aside, file);
        relinked = true;
      } catch (error) {
        const code = errorCode(error) as string;
        // A full tmpfs has no inode for the link: the record stays aside, for a later pass
        // that this sweep's removals make room for, and the pass is not done.
        if (NO_SPACE.includes(code)) return now;
        // A delete of this id took it from aside (see `RecordIo`): the session has ended.
        if (code === 'ENOENT') return 'other';
        if (code !== 'EEXIST') throw error;
      }
    }
    await this.#free(aside);
    // The record was away for a moment, so a remover may have taken its entry: put it back.
    if (owner !== undefined && relinked) await this.owners.ensure(owner, id);
    if (owner !== undefined && (expired || (leftBehind && !relinked))) {
      await this.owners.remove(owner, id);
    }
    if (expired) return 'removed';
    return relinked ? liveUntil : now;
  }

  /**
   * Unlinks a record the sweep moved aside. Freeing a file whose data is on disk can wait for
   * the device (see `freeFile`), while a file whose data was never written out frees in
   * microseconds. So with synchronous calls each step frees its first few files here, timed;
   * when they were slow, the rest go to the thread pool, a few at once, so the device works on
   * several discards while this thread goes on judging entries. The step waits for them at its
   * end. (With thread-pool calls the sweep's own width already overlaps them.)
   */
  async #free(file: string): Promise<void> {
    const frees = this.#frees;
    if (frees.slow) {
      while (frees.running.size >= FREE_WIDTH) await Promise.race(frees.running);
      const running: Promise<void> = freeFile(file)
        .catch((error: unknown) => {
          frees.error ??= error;
        })
        .finally(() => frees.running.delete(running));
      frees.running.add(running);
      return;
    }
    const started = performance.now();
    await unless(['ENOENT'], undefined, () => this.#fs.unlink(file));
    if (this.#fs.io === 'sync' && frees.timed.length < TIMED_FREES) {
      frees.timed.push(performance.now() - started);
      if (frees.timed.length === TIMED_FREES) {
        const sorted = [...frees.timed].sort((a, b) => a - b);
        frees.slow = (sorted[TIMED_FREES >> 1] as number) > SLOW_FREE_MS;
      }
    }
  }

  /** Waits for the step's frees in flight; throws the first that failed. */
  async #endFrees(): Promise<void> {
    const frees = this.#frees;
    this.#frees = noFreesYet();
    await Promise.all(frees.running);
    if (frees.error !== undefined) throw frees.error;
  }

  /** Temp files of crashed writers, stale guards and foreign files, once past the grace period. */
  async #removeLeftover(name: string, file: string, stats: Stats): Promise<void> {
    if (name.endsWith(GUARD_SUFFIX)) {
      // A guard's holder keeps it fresh (heartbeat); only an abandoned one gets this old.
      await this.#guards.removeIfStale(file, this.leftoverGuardStaleMs());
      return;
    }
    if (stats.isDirectory()) return;
    // Temp files carry their record's expiry as mtime, so the ctime says when they were written.
    const since = name.endsWith(TEMP_SUFFIX)
      ? stats.ctimeMs
      : Math.max(stats.mtimeMs, stats.ctimeMs);
    if (since <= Date.now() - this.settings.graceMs)
      await unless(['ENOENT'], undefined, () => this.#fs.unlink(file));
  }

  /** The in-thread sweeper has nothing to stop. */
  async close(): Promise<void> {}

  /** Runs `task` over `items`, taken in order, with at most `maxOpenFiles` in flight. */
  async forEachBounded<T>(items: Iterable<T>, task: (item: T) => Promise<void>): Promise<void> {
    const iterator = items[Symbol.iterator]();
    const worker = async () => {
      for (let item = iterator.next(); item.done !== true; item = iterator.next()) {
        await task(item.value);
      }
    };
    await Promise.all(Array.from({ length: this.settings.maxOpenFiles }, worker));
  }
}
