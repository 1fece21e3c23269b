// Deliberately broken stores. Each breaks one promise of the contract; the self-test proves the
// suite notices. They extend MemoryStore so everything else about them is correct.
import {
  type AcquireOptions,
  type HeldLease,
  isSessionId,
  type LockManager,
  MemoryStore,
  type OwnedSession,
  SessionError,
  type SessionLock,
  type SessionRecord,
  type SessionStore,
  type SetOptions,
  type SweepOptions,
  type SweepResult,
  type WriteOptions,
} from '@sessile/core';
import { type HookAnswer, KeyedLocks, lockTimeout, SweepProgress } from '@sessile/core/store';

/** Returns records whose expiresAt has passed. */
export class ReturnsExpiredStore extends MemoryStore {
  readonly #all = new Map<string, SessionRecord>();
  protected override async _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
  ): Promise<boolean> {
    const wrote = await super._set(id, record, only, now);
    if (wrote) this.#all.set(id, record);
    return wrote;
  }
  protected override async _get(id: string, now: number): Promise<SessionRecord | undefined> {
    return (await super._get(id, now)) ?? this.#all.get(id);
  }
  protected override _delete(id: string, now: number): HookAnswer<boolean> {
    this.#all.delete(id);
    return super._delete(id, now);
  }
}

/** Sweeps everything in one call, whatever the limit or budget. */
export class SweepIgnoresLimitStore extends MemoryStore {
  protected override _sweep(progress: SweepProgress): Promise<SweepResult> {
    const unbounded = Number.POSITIVE_INFINITY;
    return super._sweep(new SweepProgress(progress.now, unbounded, unbounded, undefined));
  }
}

/** Treats only: 'present' as an unconditional write, so a late save resurrects a deleted session. */
export class ResurrectingStore extends MemoryStore {
  protected override _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
  ): HookAnswer<boolean> {
    return super._set(id, record, only === 'present' ? undefined : only, now);
  }
}

/** Hands every caller its own lock, so nothing is excluded. */
class NonExclusiveLocks implements LockManager {
  readonly #inner = new KeyedLocks();
  #counter = 0;
  acquire(id: string): Promise<SessionLock> {
    this.#counter++;
    const unique = `${id.slice(0, 60)}x${this.#counter}`.padEnd(16, 'x');
    return this.#inner.acquire(unique);
  }
}
export class NonExclusiveLocksStore extends MemoryStore {
  override readonly locks: LockManager = new NonExclusiveLocks();
}

/** Validates ids with a length check only, so '../x'-style ids reach storage. */
export class LooseIdStore implements SessionStore {
  readonly #inner = new MemoryStore();
  readonly #loose = new Map<string, SessionRecord>();
  readonly capabilities = this.#inner.capabilities;
  readonly locks = this.#inner.locks;
  readonly maxRecordBytes = this.#inner.maxRecordBytes;
  get closed() {
    return this.#inner.closed;
  }
  async get(id: string) {
    return this.#loose.get(id) ?? this.#inner.get(id);
  }
  async set(id: string, record: SessionRecord, options?: { only?: 'absent' | 'present' }) {
    if (typeof id === 'string' && /[/.\\]/.test(id)) {
      this.#loose.set(id, record);
      return true;
    }
    return this.#inner.set(id, record, options);
  }
  touch(id: string, expiresAt: number) {
    return this.#inner.touch(id, expiresAt);
  }
  delete(id: string) {
    return this.#inner.delete(id);
  }
  sweep(options?: Parameters<SessionStore['sweep']>[0]) {
    return this.#inner.sweep(options);
  }
  async count() {
    return (await this.#inner.count()) + this.#loose.size;
  }
  async *ids() {
    yield* this.#inner.ids();
    yield* this.#loose.keys();
  }
  clear() {
    return this.#inner.clear();
  }
  close() {
    return this.#inner.close();
  }
}

/** Checks then writes with an await in between, so two creates of one id can both win. */
export class RacyCreateStore extends MemoryStore {
  protected override async _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
  ): Promise<boolean> {
    if (only === 'absent') {
      const exists = (await this._get(id, now)) !== undefined;
      await new Promise((resolve) => setImmediate(resolve));
      if (exists) return false;
      return super._set(id, record, undefined, now);
    }
    return super._set(id, record, only, now);
  }
}

/** Counts records that have expired. */
export class CountsExpiredStore extends MemoryStore {
  protected override _count(): Promise<number> {
    return super._count(Number.NEGATIVE_INFINITY);
  }
}

/** Serves the newest waiter first, so a request that arrived early can starve behind later ones. */
class LifoLocks implements LockManager {
  readonly #inner = new KeyedLocks();
  readonly #held = new Set<string>();
  readonly #waiting = new Map<string, Array<() => void>>();

  async acquire(id: string, options: AcquireOptions = {}): Promise<SessionLock> {
    if (this.#held.has(id)) await this.#wait(id, options.waitMs ?? 10_000, options.signal);
    this.#held.add(id);
    let done = false;
    const next = () => {
      if (done) return;
      done = true;
      this.#held.delete(id);
      this.#waiting.get(id)?.pop()?.();
    };
    let lock: SessionLock;
    try {
      lock = await this.#inner.acquire(id, options);
    } catch (error) {
      next();
      throw error;
    }
    // A lease that runs out frees the id as a release does.
    lock.signal.addEventListener('abort', next, { once: true });
    const release = async () => {
      try {
        await lock.release();
      } finally {
        next();
      }
    };
    return {
      id: lock.id,
      token: lock.token,
      signal: lock.signal,
      get expiresAt() {
        return lock.expiresAt;
      },
      extend: (ms?: number) => lock.extend(ms),
      release,
      [Symbol.asyncDispose]: release,
    };
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  #wait(id: string, waitMs: number, signal: AbortSignal | undefined): Promise<void> {
    if (waitMs === 0) return Promise.reject(lockTimeout(0));
    return new Promise<void>((resolve, reject) => {
      const stack = this.#waiting.get(id) ?? [];
      this.#waiting.set(id, stack);
      const leave = (error: unknown) => {
        const index = stack.indexOf(wake);
        if (index !== -1) stack.splice(index, 1);
        clearTimeout(timer);
        reject(error);
      };
      const wake = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => leave(signal?.reason);
      const timer = setTimeout(() => leave(lockTimeout(waitMs)), waitMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      stack.push(wake);
    });
  }
}
export class UnfairLocksStore extends MemoryStore {
  override readonly locks: LockManager = new LifoLocks();
}

/** Writes whatever lock it is given, so a holder whose lease was taken over overwrites the next one. */
class UnfencedLocks extends KeyedLocks {
  override fence<T>(lock: SessionLock, write: (lease: HeldLease) => Promise<T>): Promise<T> {
    return write({ key: lock.id, token: lock.token });
  }
}
export class IgnoresFenceStore extends MemoryStore {
  override readonly locks: LockManager = new UnfencedLocks();
}

/**
 * Keeps its owner index beside the records and only ever adds to it, so a deleted, swept or
 * re-owned session stays listed under its old owner.
 */
export class StaleOwnerIndexStore extends MemoryStore {
  readonly #index = new Map<string, Map<string, SessionRecord>>();
  protected override async _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
  ): Promise<boolean> {
    const wrote = await super._set(id, record, only, now);
    if (wrote && record.owner !== undefined) {
      const entries = this.#index.get(record.owner) ?? new Map<string, SessionRecord>();
      entries.set(id, record);
      this.#index.set(record.owner, entries);
    }
    return wrote;
  }
  protected override async _ownedBy(owner: string, now: number): Promise<OwnedSession[]> {
    const entries = this.#index.get(owner) ?? new Map<string, SessionRecord>();
    return Array.from(entries)
      .filter(([, record]) => record.expiresAt > now)
      .map(([id, record]) => ({ id, record }));
  }
}

/**
 * Sweeps by walking its ids from where the last call stopped, removing those expired as of each
 * call's `now`, and reports done when a walk reaches the last id.
 */
abstract class WalkingSweepStore extends MemoryStore {
  /** Whether a sweep after a finished walk walks again, or reports done at once. */
  protected abstract readonly walksAgain: boolean;
  #cursor: AsyncIterator<string> | undefined;
  #finished = false;
  protected override async _sweep(progress: SweepProgress): Promise<SweepResult> {
    if (this.#finished) return progress.result(true);
    for (let batch = progress.nextBatchSize(100); batch > 0; batch = progress.nextBatchSize(100)) {
      this.#cursor ??= super._ids(Number.NEGATIVE_INFINITY)[Symbol.asyncIterator]();
      for (let i = 0; i < batch; i++) {
        const next = await this.#cursor.next();
        if (next.done === true) {
          this.#cursor = undefined;
          this.#finished = !this.walksAgain;
          return progress.result(true);
        }
        progress.scanned++;
        const record = await super._get(next.value, Number.NEGATIVE_INFINITY);
        if (record !== undefined && record.expiresAt <= progress.now) {
          await super._delete(next.value, Number.NEGATIVE_INFINITY);
          progress.removed++;
        }
      }
    }
    return progress.result(false);
  }
}

/** Walks as `WalkingSweepStore` does, and never again once a walk reached the end: every later sweep reports done and removes nothing. */
export class StaleSweepCursorStore extends WalkingSweepStore {
  protected readonly walksAgain = false;
}

/** Sweeps records that expired strictly before now, leaving one whose expiresAt is now. */
export class SweepBoundaryStore extends MemoryStore {
  protected override _sweep(progress: SweepProgress): Promise<SweepResult> {
    const { now, limit, budgetMs, signal } = progress;
    return super._sweep(new SweepProgress(now - 1, limit, budgetMs, signal));
  }
}

/**
 * Keeps owner to ids in a map beside the records, which the subclass keeps (wrongly), and lists
 * every live record an owner's entry names, whoever owns it now.
 */
abstract class SideIndexStore extends MemoryStore {
  readonly #index = new Map<string, Set<string>>();
  protected index(owner: string, id: string): void {
    this.#index.set(owner, (this.#index.get(owner) ?? new Set()).add(id));
  }
  protected unindex(owner: string, id: string): void {
    this.#index.get(owner)?.delete(id);
  }
  protected forgetAll(): void {
    this.#index.clear();
  }
  /** A write moves the id from the previous owner of the record it replaces, if that was live. */
  protected override async _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
  ): Promise<boolean> {
    const before = (await super._get(id, now))?.owner;
    if (!(await super._set(id, record, only, now))) return false;
    if (before !== undefined && before !== record.owner) this.unindex(before, id);
    if (record.owner !== undefined) this.index(record.owner, id);
    return true;
  }
  protected override async _ownedBy(owner: string, now: number): Promise<OwnedSession[]> {
    const sessions: OwnedSession[] = [];
    for (const id of this.#index.get(owner) ?? []) {
      const record = await super._get(id, now);
      if (record !== undefined) sessions.push({ id, record });
    }
    return sessions;
  }
}

/**
 * Keeps owner to ids apart from the records, moving an id when a write gives its live record
 * another owner, but never taking one out on delete, sweep or clear; lists every live record
 * an owner's entry names, whoever owns it now. An id deleted and written again for someone
 * else so stays listed under its first owner.
 */
export class LeakyOwnerIndexStore extends SideIndexStore {}

/** Lists an owner's sessions with the records it keeps for the listing, not copies. */
export class OwnedByNoCopyStore extends MemoryStore {
  readonly #listed = new Map<string, SessionRecord>();
  protected override async _ownedBy(owner: string, now: number): Promise<OwnedSession[]> {
    return (await super._ownedBy(owner, now)).map(({ id, record }) => {
      const kept = this.#listed.get(id) ?? record;
      this.#listed.set(id, kept);
      return { id, record: kept };
    });
  }
  protected override _delete(id: string, now: number) {
    this.#listed.delete(id);
    return super._delete(id, now);
  }
}

/** Checks ids itself before BaseStore does, throwing instead of returning a rejected promise. */
export class ThrowingStore extends MemoryStore {
  override get(id: string): Promise<SessionRecord | undefined> {
    if (!isSessionId(id)) throw new SessionError('ERR_INVALID_SESSION_ID', 'bad id');
    return super.get(id);
  }
}

/** Trims ids, so ' <id>' and '<id>\n' are aliases of '<id>'. */
export class TrimmingIdStore extends MemoryStore {
  override get(id: string) {
    return super.get(trim(id));
  }
  override set(id: string, record: SessionRecord, options?: SetOptions) {
    return super.set(trim(id), record, options);
  }
  override touch(id: string, expiresAt: number, options?: WriteOptions) {
    return super.touch(trim(id), expiresAt, options);
  }
  override delete(id: string, options?: WriteOptions) {
    return super.delete(trim(id), options);
  }
}
function trim(id: string): string {
  return typeof id === 'string' ? id.trim() : id;
}

/** Lends any id without checking it, and after close, reading nothing. */
export class UncheckedLendStore extends MemoryStore {
  override lend<T>(
    id: string,
    read: (record: Readonly<SessionRecord>, id: string) => T,
  ): Promise<T | undefined> {
    if (!isSessionId(id) || this.closed) return Promise.resolve(undefined);
    return super.lend(id, read);
  }
}

/**
 * Walks its ids as `WalkingSweepStore` does and starts over once a walk ends, but reports done
 * at the end of a walk that spanned calls whatever it passed over as live under an earlier
 * call's now: a record it kept at T+2h and that expired by T+4h is left behind.
 */
export class ForgetsPassedOverSweepStore extends WalkingSweepStore {
  protected readonly walksAgain = true;
}

/**
 * Keeps owner to ids beside the records, but a write takes the id out of its previous owner's
 * entry only when the record it replaces is live: an expired, unswept record of ada's written
 * again for bob stays listed under ada, and the listing trusts the entry.
 */
export class ExpiredOwnerLeakStore extends SideIndexStore {
  protected override async _delete(id: string, now: number): Promise<boolean> {
    const owner = (await super._get(id, Number.NEGATIVE_INFINITY))?.owner;
    if (owner !== undefined) this.unindex(owner, id);
    return super._delete(id, now);
  }
  protected override async _clear(): Promise<void> {
    this.forgetAll();
    await super._clear();
  }
}

/**
 * Lists an owner's sessions by an expiry it caches per id, refreshed by touch and by a write
 * that changes the owner, but not by a write of the same owner: a session its owner saved again
 * with an earlier expiry is listed after that expiry passed.
 */
export class CachedOwnerExpiryStore extends MemoryStore {
  readonly #expiresAt = new Map<string, number>();
  protected override async _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
  ): Promise<boolean> {
    const before = await super._get(id, Number.NEGATIVE_INFINITY);
    if (!(await super._set(id, record, only, now))) return false;
    if (before === undefined || before.owner !== record.owner) {
      this.#expiresAt.set(id, record.expiresAt);
    }
    return true;
  }
  protected override async _touch(id: string, expiresAt: number, now: number): Promise<boolean> {
    const touched = await super._touch(id, expiresAt, now);
    if (touched) this.#expiresAt.set(id, expiresAt);
    return touched;
  }
  protected override async _ownedBy(owner: string, now: number): Promise<OwnedSession[]> {
    return (await super._ownedBy(owner, Number.NEGATIVE_INFINITY)).filter(
      ({ id }) => (this.#expiresAt.get(id) ?? Number.NEGATIVE_INFINITY) > now,
    );
  }
}

/** Rejects a damaged record with ERR_CORRUPT_RECORD, quoting its id in the message. */
export class CorruptMessageLeaksIdStore extends MemoryStore {
  readonly #damaged = new Set<string>();
  damage(id: string): void {
    this.#damaged.add(id);
  }
  protected override async _get(id: string, now: number): Promise<SessionRecord | undefined> {
    if (this.#damaged.has(id))
      throw new SessionError('ERR_CORRUPT_RECORD', `Session ${id} is damaged`);
    return super._get(id, now);
  }
  protected override async _lend<T>(
    id: string,
    now: number,
    read: (record: Readonly<SessionRecord>, id: string) => T,
  ): Promise<T | undefined> {
    if (this.#damaged.has(id))
      throw new SessionError('ERR_CORRUPT_RECORD', `Session ${id} is damaged`);
    return super._lend(id, now, read);
  }
  protected override async _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
  ): Promise<boolean> {
    const wrote = await super._set(id, record, only, now);
    if (wrote) this.#damaged.delete(id);
    return wrote;
  }
}

/**
 * Wraps core's locks (counting acquires, say) and refuses acquires once closed, but never closes
 * the wrapped ones: a wait pending at close() runs out its waitMs and fails with ERR_LOCK_TIMEOUT.
 */
class PendingWaitsSurviveCloseLocks implements LockManager {
  readonly #inner = new KeyedLocks();
  #closed = false;
  acquire(id: string, options?: AcquireOptions): Promise<SessionLock> {
    if (this.#closed) return Promise.reject(new SessionError('ERR_STORE_CLOSED', 'closed'));
    return this.#inner.acquire(id, options);
  }
  fence<T>(
    lock: SessionLock,
    write: (lease: HeldLease) => Promise<T>,
    options?: { release?: boolean },
  ): Promise<T> {
    return this.#inner.fence(lock, write, options);
  }
  async close(): Promise<void> {
    this.#closed = true;
  }
}
export class PendingWaitsSurviveCloseStore extends MemoryStore {
  override readonly locks: LockManager = new PendingWaitsSurviveCloseLocks();
}

/** Removes expired records but reports none examined, as a store that forgot to count would. */
export class UncountedSweepStore extends MemoryStore {
  override async sweep(options?: SweepOptions): Promise<SweepResult> {
    return { ...(await super.sweep(options)), scanned: 0 };
  }
}

/**
 * Checks at its first batch whether the store is still open, and fails a sweep that close()
 * overtook with ERR_STORE_CLOSED, so its caller never learns what it removed.
 */
export class SweepFailsOnCloseStore extends MemoryStore {
  override async sweep(options?: SweepOptions): Promise<SweepResult> {
    await new Promise((resolve) => setImmediate(resolve));
    if (this.closed) {
      throw new SessionError('ERR_STORE_CLOSED', 'The store was closed during the sweep');
    }
    return super.sweep(options);
  }
}

/**
 * Holds each create back to the next tick, as a store batching its creates might, while every
 * other call goes at once: a delete made after the create runs first.
 */
export class DefersCreatesStore extends MemoryStore {
  protected override _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
  ): HookAnswer<boolean> {
    if (only !== 'absent') return super._set(id, record, only, now);
    const create = () => super._set(id, record, only, now);
    return new Promise((resolve, reject) => {
      process.nextTick(() => {
        try {
          resolve(create());
        } catch (error) {
          reject(error);
        }
      });
    });
  }
}

/** Matches ids without case, keeping the case an id was first stored with, as a _ci collation does. */
export class CaseInsensitiveIdStore extends MemoryStore {
  readonly #stored = new Map<string, string>();
  #key(id: string): string {
    return this.#stored.get(id.toLowerCase()) ?? id;
  }
  protected override _get(id: string, now: number) {
    return super._get(this.#key(id), now);
  }
  protected override _lend<T>(
    id: string,
    now: number,
    read: (record: Readonly<SessionRecord>, id: string) => T,
  ) {
    return super._lend(this.#key(id), now, read);
  }
  protected override _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
  ) {
    const key = this.#key(id);
    this.#stored.set(id.toLowerCase(), key);
    return super._set(key, record, only, now);
  }
  protected override _touch(id: string, expiresAt: number, now: number) {
    return super._touch(this.#key(id), expiresAt, now);
  }
  protected override _delete(id: string, now: number) {
    return super._delete(this.#key(id), now);
  }
}

/** A store written without BaseStore, handing every call to a MemoryStore. */
abstract class DelegatingStore implements SessionStore {
  protected readonly inner = new MemoryStore();
  readonly capabilities = this.inner.capabilities;
  readonly locks = this.inner.locks;
  readonly maxRecordBytes = this.inner.maxRecordBytes;
  get closed() {
    return this.inner.closed;
  }
  get(id: string) {
    return this.inner.get(id);
  }
  set(id: string, record: SessionRecord, options?: SetOptions) {
    return this.inner.set(id, record, options);
  }
  touch(id: string, expiresAt: number, options?: WriteOptions) {
    return this.inner.touch(id, expiresAt, options);
  }
  delete(id: string, options?: WriteOptions) {
    return this.inner.delete(id, options);
  }
  sweep(options?: SweepOptions) {
    return this.inner.sweep(options);
  }
  count() {
    return this.inner.count();
  }
  ids() {
    return this.inner.ids();
  }
  clear() {
    return this.inner.clear();
  }
  ownedBy(owner: string) {
    return this.inner.ownedBy(owner);
  }
  close() {
    return this.inner.close();
  }
}

/** Reads the write options it knows and drops the rest, so { olny: 'absent' } overwrites. */
export class LooseWriteOptionsStore extends DelegatingStore {
  override set(id: string, record: SessionRecord, options?: SetOptions) {
    return this.inner.set(id, record, known(options, ['only', 'lock', 'release']));
  }
  override touch(id: string, expiresAt: number, options?: WriteOptions) {
    return this.inner.touch(id, expiresAt, known(options, ['lock', 'release']));
  }
  override delete(id: string, options?: WriteOptions) {
    return this.inner.delete(id, known(options, ['lock', 'release']));
  }
}
function known<T extends object>(options: T | undefined, names: string[]): T | undefined {
  if (typeof options !== 'object' || options === null) return options;
  return Object.fromEntries(Object.entries(options).filter(([name]) => names.includes(name))) as T;
}

/** Takes any expiresAt past the last time a Date can hold, Infinity included, as never expiring. */
export class UnboundedExpiryStore extends DelegatingStore {
  override set(id: string, record: SessionRecord, options?: SetOptions) {
    if (typeof record?.expiresAt === 'number' && record.expiresAt > 8.64e15) {
      return this.inner.set(id, { ...record, expiresAt: 8.64e15 }, options);
    }
    return this.inner.set(id, record, options);
  }
  override touch(id: string, expiresAt: number, options?: WriteOptions) {
    return this.inner.touch(id, Math.min(expiresAt, 8.64e15), options);
  }
}

/** Touches by reading the record and writing all of it back: a delete or an update in between is undone. */
export class TouchRewritesStore extends MemoryStore {
  protected override async _touch(id: string, expiresAt: number, now: number): Promise<boolean> {
    const record = await super._get(id, now);
    if (record === undefined) return false;
    await new Promise((resolve) => setImmediate(resolve));
    return super._set(id, { ...record, expiresAt }, undefined, now);
  }
}

/**
 * Frees the id when a holder whose lease was taken over releases, whoever holds it now, as a
 * release that deletes the lock row by id instead of by id and token does.
 */
class ReleaseByIdLocks extends KeyedLocks {
  readonly #holders = new Map<string, SessionLock>();
  override async acquire(id: string, options?: AcquireOptions): Promise<SessionLock> {
    const lock = await super.acquire(id, options);
    this.#holders.set(id, lock);
    const release = lock.release.bind(lock);
    const byId = async () => {
      try {
        await release();
      } catch (error) {
        const holder = this.#holders.get(id);
        if (holder !== undefined && holder !== lock) await holder.release();
        throw error;
      }
    };
    return Object.assign(lock, { release: byId });
  }
}
export class StaleReleaseStore extends MemoryStore {
  override readonly locks: LockManager = new ReleaseByIdLocks();
}

/** Takes waitMs and extend() past 2^31 - 1 ms as the longest timer, where they should be refused. */
class ClampingLocks extends KeyedLocks {
  override async acquire(id: string, options?: AcquireOptions): Promise<SessionLock> {
    const longest = 2 ** 31 - 1;
    const waitMs = options?.waitMs === undefined ? undefined : Math.min(options.waitMs, longest);
    const lock = await super.acquire(id, waitMs === undefined ? options : { ...options, waitMs });
    const extend = lock.extend.bind(lock);
    return Object.assign(lock, {
      extend: (ms?: number) => extend(ms === undefined ? ms : Math.min(ms, longest)),
    });
  }
}
export class ClampingLocksStore extends MemoryStore {
  override readonly locks: LockManager = new ClampingLocks();
}

/** clear() empties every store of this class in the process, as a FLUSHDB would on a server. */
export class ClearsEveryStore extends MemoryStore {
  static readonly #open = new Set<ClearsEveryStore>();
  constructor() {
    super();
    ClearsEveryStore.#open.add(this);
  }
  protected override async _clear(): Promise<void> {
    for (const store of ClearsEveryStore.#open) await store.#clearOwn();
  }
  #clearOwn(): Promise<void> {
    return super._clear();
  }
  protected override _close(): Promise<void> {
    ClearsEveryStore.#open.delete(this);
    return super._close();
  }
}

/**
 * Counts and lists the records of every store of this class in the process, as a store sharing
 * one table or keyspace with others would if it read without its own prefix.
 */
export class ListsEveryStore extends MemoryStore {
  static readonly #open = new Set<ListsEveryStore>();
  constructor() {
    super();
    ListsEveryStore.#open.add(this);
  }
  protected override async _count(now: number): Promise<number> {
    let count = 0;
    for (const store of ListsEveryStore.#open) count += await store.#countOwn(now);
    return count;
  }
  protected override async *_ids(now: number): AsyncIterable<string> {
    for (const store of ListsEveryStore.#open) yield* store.#idsOwn(now);
  }
  #countOwn(now: number): Promise<number> {
    return super._count(now);
  }
  #idsOwn(now: number): AsyncIterable<string> {
    return super._ids(now);
  }
  protected override _close(): Promise<void> {
    ListsEveryStore.#open.delete(this);
    return super._close();
  }
}

/**
 * Keeps its own owner index, which `_set` updates after a wait of varying length from the owner
 * it read before the write, so racing writes apply their index changes out of order. Its
 * `ownedBy` checks each listed id against the record, so only a lost entry shows.
 */
export class LateOwnerIndexStore extends MemoryStore {
  readonly #index = new Map<string, Set<string>>();
  #writes = 0;
  protected override async _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
  ): Promise<boolean> {
    // The read and the write share one turn; only the index change comes later.
    const found = super._get(id, now);
    const written = super._set(id, record, only, now);
    const after = record.owner;
    const before = (await found)?.owner;
    if (!(await written)) return false;
    const waitMs = (this.#writes++ * 7) % 5;
    await new Promise((resolve) => setTimeout(resolve, waitMs));
    if (before !== undefined) this.#index.get(before)?.delete(id);
    if (after !== undefined) this.#index.set(after, (this.#index.get(after) ?? new Set()).add(id));
    return true;
  }
  protected override async _ownedBy(owner: string, now: number): Promise<OwnedSession[]> {
    const sessions: OwnedSession[] = [];
    for (const id of this.#index.get(owner) ?? []) {
      const record = await super._get(id, now);
      if (record?.owner === owner) sessions.push({ id, record });
    }
    return sessions;
  }
}
