import { SessionError, toStoreIoError } from './errors.js';
import { assertOwner, assertSessionId } from './ids.js';
import type { LeaseLocks } from './locks/lease-locks.js';
import { readsText, TextRecord } from './record-text.js';
import type {
  HeldLease,
  LockManager,
  OwnedSession,
  SessionLock,
  SessionRecord,
  SessionStore,
  SetOptions,
  StoreCapabilities,
  SweepOptions,
  SweepResult,
  WriteOptions,
} from './types.js';
import {
  assertAbortSignal,
  assertKnownOptions,
  assertNonNegativeNumber,
  assertPositiveInteger,
  describeValue,
  MAX_DATE_MS,
} from './util.js';

export const DEFAULT_MAX_RECORD_BYTES = 1024 * 1024;
export const DEFAULT_SWEEP_LIMIT = 1000;

export interface BaseStoreOptions {
  /** Largest accepted `data`, in bytes. Default 1 MiB. */
  maxRecordBytes?: number;
}

/**
 * The state of one `sweep` call, handed to the backend's `_sweep`. The backend works in
 * batches: it asks `nextBatchSize()` before each one, counts what it did, and stops when that
 * returns 0: at the limit, past the budget, once the signal aborts, or once the store began to
 * close (`close()` waits for the sweep, which must not hold a shutdown to its end).
 */
export class SweepProgress {
  readonly now: number;
  readonly limit: number;
  readonly budgetMs: number;
  readonly signal: AbortSignal | undefined;
  removed = 0;
  scanned = 0;
  #batches = 0;
  readonly #started = performance.now();
  readonly #closing: (() => boolean) | undefined;

  constructor(
    now: number,
    limit: number,
    budgetMs: number,
    signal: AbortSignal | undefined,
    closing?: () => boolean,
  ) {
    this.now = now;
    this.limit = limit;
    this.budgetMs = budgetMs;
    this.signal = signal;
    this.#closing = closing;
  }

  /** Records the next batch may examine: 0 once the limit, the budget, the signal or `close()` says stop. */
  nextBatchSize(maxBatch: number): number {
    if (this.signal?.aborted || this.#closing?.() === true) return 0;
    if (this.#batches > 0 && performance.now() - this.#started >= this.budgetMs) return 0;
    const size = Math.min(maxBatch, this.limit - this.scanned);
    if (size <= 0) return 0;
    this.#batches++;
    return size;
  }

  /** True when the limit, the budget, the signal or `close()` ends the call before another batch. */
  get exhausted(): boolean {
    return (
      this.signal?.aborted === true ||
      this.#closing?.() === true ||
      this.scanned >= this.limit ||
      (this.#batches > 0 && performance.now() - this.#started >= this.budgetMs)
    );
  }

  result(done: boolean): SweepResult {
    return { removed: this.removed, scanned: this.scanned, done };
  }
}

const WRITE_OPTIONS = ['lock', 'release'] as const;
const SET_OPTIONS = ['lock', 'only', 'release'] as const;
const SWEEP_OPTIONS = ['now', 'limit', 'budgetMs', 'signal'] as const;

/** Validates a write's options and returns its lock, which must be on the same id. */
function writeLock(
  id: string,
  options: WriteOptions | undefined,
  known: readonly string[],
): SessionLock | undefined {
  if (options === undefined) return undefined;
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('write options must be an object');
  }
  assertKnownOptions(options, known, 'store write');
  const { lock, release } = options;
  if (release !== undefined && typeof release !== 'boolean') {
    throw new TypeError('options.release must be a boolean');
  }
  if (lock === undefined) {
    if (release === true) throw new TypeError('options.release needs options.lock');
    return undefined;
  }
  if (typeof lock !== 'object' || lock === null || typeof lock.token !== 'string') {
    throw new TypeError('options.lock must be a lock from store.locks.acquire()');
  }
  if (lock.id !== id) throw new TypeError('options.lock holds a different session id');
  return lock;
}

/**
 * The record `set` was given, each field read once and checked. A store may write it later (a
 * batch, a group commit) while the caller changes the object it passed; what is stored is what
 * was checked. A TextRecord, which cannot change, passes as it is: its bytes are made only if
 * the store reads them.
 */
function checkedRecord(record: unknown): SessionRecord {
  if (typeof record !== 'object' || record === null) {
    throw new TypeError('record must be an object { data, expiresAt }');
  }
  // Exactly core's, which is frozen and has no owner; a subclass could add one unchecked.
  if (record instanceof TextRecord && Object.getPrototypeOf(record) === TextRecord.prototype) {
    assertExpiresAt(record.expiresAt, 'record.expiresAt');
    return record;
  }
  assertRecordFields(record);
  const { data, expiresAt, owner } = record as Partial<SessionRecord>;
  if (!(data instanceof Uint8Array)) throw new TypeError('record.data must be a Uint8Array');
  assertExpiresAt(expiresAt, 'record.expiresAt');
  if (owner === undefined) return { data, expiresAt };
  assertOwner(owner, 'record.owner');
  return { data, expiresAt, owner };
}

/**
 * Refuses a plain object with a field a record does not have: a misspelt `owner` (`ownr`, say)
 * would otherwise be dropped unseen, and the session left out of its owner's listing and
 * revocation. Only plain objects: a store's own records (what `get` returns) may be instances
 * of its classes with fields of their own.
 */
function assertRecordFields(record: object): void {
  const prototype = Object.getPrototypeOf(record);
  if (prototype !== Object.prototype && prototype !== null) return;
  for (const key in record) {
    if (key !== 'data' && key !== 'expiresAt' && key !== 'owner' && Object.hasOwn(record, key)) {
      const shown = key.length > 64 ? `${key.slice(0, 64)}...` : key;
      throw new TypeError(
        `record has an unknown field ${JSON.stringify(shown)}: a record holds data, expiresAt and owner`,
      );
    }
  }
}

/** The progress of a sweep called with `options`, once they are checked. */
function sweepProgress(options: SweepOptions, closing: () => boolean): SweepProgress {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`sweep options must be an object, got ${describeValue(options)}`);
  }
  assertKnownOptions(options, SWEEP_OPTIONS, 'store.sweep');
  const now = options.now ?? Date.now();
  assertExpiresAt(now, 'now');
  const limit = options.limit ?? DEFAULT_SWEEP_LIMIT;
  if (limit !== Number.POSITIVE_INFINITY) assertPositiveInteger(limit, 'limit');
  const budgetMs = options.budgetMs ?? Number.POSITIVE_INFINITY;
  assertNonNegativeNumber(budgetMs, 'budgetMs');
  assertAbortSignal(options.signal, 'signal');
  return new SweepProgress(now, limit, budgetMs, options.signal, closing);
}

/** `record`'s size in bytes when it is over `limit`, else undefined. */
function bytesOver(record: SessionRecord, limit: number): number | undefined {
  if (record instanceof TextRecord) return record.exceeds(limit) ? record.byteLength : undefined;
  const bytes = record.data.byteLength;
  return bytes > limit ? bytes : undefined;
}

function assertExpiresAt(value: unknown, name: string): asserts value is number {
  // A later time is no Date: stores and readers that turn it into one would get Invalid Date.
  if (typeof value !== 'number' || !Number.isFinite(value) || value > MAX_DATE_MS) {
    throw new TypeError(
      `${name} must be a finite number of ms since the epoch, at most ${MAX_DATE_MS} (the last time a Date can hold)`,
    );
  }
}

/**
 * What a hook answers: a promise, or the value itself when it has it at once (MemoryStore), which
 * spares the call a `then` and a promise of its own.
 */
export type HookAnswer<T> = T | Promise<T>;

const TRUE = Promise.resolve(true);
const FALSE = Promise.resolve(false);
const ABSENT = Promise.resolve(undefined);

/** `answer` as a promise; settled ones for the booleans and an absent record are shared. */
function settledWith<T>(answer: T): Promise<T> {
  if (answer === true) return TRUE as Promise<T>;
  if (answer === false) return FALSE as Promise<T>;
  if (answer === undefined) return ABSENT as Promise<T>;
  return Promise.resolve(answer);
}

function isThenable<T>(answer: HookAnswer<T>): answer is Promise<T> {
  return (
    typeof answer === 'object' &&
    answer !== null &&
    typeof (answer as { then?: unknown }).then === 'function'
  );
}

function asPromise<T>(answer: HookAnswer<T>): Promise<T> {
  return isThenable(answer) ? answer : settledWith(answer);
}

function closedError(): SessionError {
  return new SessionError('ERR_STORE_CLOSED', 'The store is closed');
}

/**
 * What the caller's own code threw, which the call rejects with as it is: a `lend()` caller's
 * `read`, or a getter of the record or options it passed (not a store failure).
 */
class CallerFailure {
  constructor(readonly error: unknown) {}
}

/**
 * A caller's failure or a programmer's `TypeError` as it is; any other as a `SessionError`,
 * with the id-shaped file names below `location` redacted.
 */
function failure(error: unknown, action: string, location: string | undefined): unknown {
  if (error instanceof CallerFailure) return error.error;
  return error instanceof TypeError ? error : toStoreIoError(error, action, { location });
}

/**
 * Does once what every store would otherwise repeat: argument and id validation, the closed
 * state, the record size limit, sweep option defaults, and wrapping backend failures as
 * `ERR_STORE_IO`. Subclasses implement the `_` hooks, which receive only validated arguments.
 */
export abstract class BaseStore implements SessionStore {
  abstract readonly capabilities: StoreCapabilities;
  abstract readonly locks: LockManager;
  readonly maxRecordBytes: number;
  #closed = false;
  #closing: Promise<void> | undefined;
  #inflight = 0;
  #drained: (() => void) | undefined;
  /** The settle handlers of `#run`, made once: one per store, and one per action for failures. */
  readonly #passValue = <T>(value: T): T => {
    this.#settled();
    return value;
  };
  readonly #failureHandlers = new Map<string, (error: unknown) => never>();

  constructor(options: BaseStoreOptions = {}) {
    const maxRecordBytes = options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
    assertPositiveInteger(maxRecordBytes, 'maxRecordBytes');
    this.maxRecordBytes = maxRecordBytes;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get(id: string): Promise<SessionRecord | undefined> {
    return this.#run('get', () => {
      assertSessionId(id);
      return this._get(id, Date.now());
    });
  }

  lend<T>(
    id: string,
    read: (record: Readonly<SessionRecord>, id: string) => T,
  ): Promise<T | undefined> {
    return this.#run('get', () => {
      assertSessionId(id);
      if (typeof read !== 'function') throw new TypeError('lend() needs a read function');
      const lent = (record: Readonly<SessionRecord>, lentId: string): T => {
        let answer: T;
        try {
          answer = read(record, lentId);
        } catch (error) {
          throw new CallerFailure(error);
        }
        if (!isThenable(answer)) return answer;
        return Promise.resolve(answer).then(undefined, (error: unknown) => {
          throw new CallerFailure(error);
        }) as T;
      };
      return this._lend(id, Date.now(), lent, readsText(read));
    });
  }

  set(id: string, given: SessionRecord, options?: SetOptions): Promise<boolean> {
    return this.#run('set', () => {
      let lock: SessionLock | undefined;
      let only: SetOptions['only'];
      let record: SessionRecord;
      try {
        assertSessionId(id);
        record = checkedRecord(given);
        lock = writeLock(id, options, SET_OPTIONS);
        only = options?.only;
        if (only !== undefined && only !== 'absent' && only !== 'present') {
          throw new TypeError(`options.only must be 'absent' or 'present', got ${String(only)}`);
        }
      } catch (error) {
        throw new CallerFailure(error);
      }
      const bytes = bytesOver(record, this.maxRecordBytes);
      if (bytes !== undefined) {
        throw new SessionError(
          'ERR_RECORD_TOO_LARGE',
          `Record of ${bytes} bytes exceeds the store's limit of ${this.maxRecordBytes} bytes`,
        );
      }
      // The caller may reuse its buffer as soon as set() returns, before a later write reads it.
      if (!(record instanceof TextRecord || this.copiesOnSet)) {
        record.data = Buffer.from(record.data);
      }
      if (lock === undefined) return this._set(id, record, only, Date.now(), undefined);
      return this.#fenced(lock, options?.release, (lease) =>
        this._set(id, record, only, Date.now(), lease),
      );
    });
  }

  touch(id: string, expiresAt: number, options?: WriteOptions): Promise<boolean> {
    return this.#run('touch', () => {
      let lock: SessionLock | undefined;
      try {
        assertSessionId(id);
        assertExpiresAt(expiresAt, 'expiresAt');
        lock = writeLock(id, options, WRITE_OPTIONS);
      } catch (error) {
        throw new CallerFailure(error);
      }
      if (lock === undefined) return this._touch(id, expiresAt, Date.now(), undefined);
      return this.#fenced(lock, options?.release, (lease) =>
        this._touch(id, expiresAt, Date.now(), lease),
      );
    });
  }

  delete(id: string, options?: WriteOptions): Promise<boolean> {
    return this.#run('delete', () => {
      let lock: SessionLock | undefined;
      try {
        assertSessionId(id);
        lock = writeLock(id, options, WRITE_OPTIONS);
      } catch (error) {
        throw new CallerFailure(error);
      }
      if (lock === undefined) return this._delete(id, Date.now(), undefined);
      return this.#fenced(lock, options?.release, (lease) => this._delete(id, Date.now(), lease));
    });
  }

  sweep(options: SweepOptions = {}): Promise<SweepResult> {
    return this.#run('sweep', () => {
      let progress: SweepProgress;
      try {
        progress = sweepProgress(options, () => this.#closed);
      } catch (error) {
        throw new CallerFailure(error);
      }
      if (progress.signal?.aborted) return Promise.resolve(progress.result(false));
      return this._sweep(progress);
    });
  }

  count(): Promise<number> {
    return this.#run('count', () => this._count(Date.now()));
  }

  ids(): AsyncIterable<string> {
    const store = this;
    return {
      async *[Symbol.asyncIterator]() {
        store.#assertOpen();
        try {
          for await (const id of store._ids(Date.now())) {
            yield id;
            // A listing that close() cut short (a store in memory clears its records) must not
            // end as if it were complete.
            store.#assertOpen();
          }
          store.#assertOpen();
        } catch (error) {
          if (store.#closed) store.#assertOpen();
          throw toStoreIoError(error, store.#named('ids'), { location: store.ioLocation() });
        }
      },
    };
  }

  clear(): Promise<void> {
    return this.#run('clear', () => this._clear());
  }

  /**
   * The live sessions of `owner`. Rejects with `ERR_INVALID_OWNER` for a bad owner, and with
   * `ERR_UNSUPPORTED` when the store keeps no owner index.
   */
  ownedBy(owner: string): Promise<OwnedSession[]> {
    return this.#run('ownedBy', () => {
      assertOwner(owner);
      if (!this.capabilities.ownerIndex) {
        throw new SessionError('ERR_UNSUPPORTED', 'This store keeps no owner index');
      }
      return this._ownedBy(owner, Date.now());
    });
  }

  /** Waits for operations in flight, then releases the backend. Idempotent. */
  close(): Promise<void> {
    if (this.#closing === undefined) {
      this.#closed = true;
      // Acquires end now, not once the operations in flight have: a lock taken meanwhile would
      // outlive the store. Asked by name, so lock kits from another copy of core stop too.
      (this.locks as Partial<Pick<LeaseLocks, 'stopAcquiring'>>).stopAcquiring?.();
      this.#closing = (async () => {
        if (this.#inflight > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
        // The backend is released even when the locks' close fails: its timers, files, sockets.
        try {
          await this.locks.close?.();
        } finally {
          await this._close();
        }
      })();
    }
    return this.#closing;
  }

  /**
   * Runs a store-specific public method the way the built-in ones run: it rejects with
   * `ERR_STORE_CLOSED` after `close()`, `close()` waits for it, and backend failures become
   * `ERR_STORE_IO`.
   */
  protected operation<T>(action: string, body: () => Promise<T>): Promise<T> {
    return this.#run(action, body);
  }

  /**
   * The path or server a backend failure's `ERR_STORE_IO` message names after its action (`set
   * on /var/lib/app/sessions failed: ENOSPC: …`). The default, `undefined`, names none: for a
   * store without one, or whose backend's own messages already name it.
   */
  protected ioLocation(): string | undefined {
    return undefined;
  }

  /**
   * True when `_set` copies `record.data` before it returns, as MemoryStore does: `set` then
   * spares its own copy of the caller's bytes. False by default, for a store that may write
   * them later.
   */
  protected get copiesOnSet(): boolean {
    return false;
  }

  protected abstract _get(id: string, now: number): HookAnswer<SessionRecord | undefined>;
  /**
   * `read` on the live record. By default the record `_get` answers; a store that keeps records
   * in memory lends its own instead of a copy. `readsText` is true when the caller's reader
   * reads a record's `RECORD_TEXT` where there is one (core's library adapters), so a store that
   * can fetch either text or bytes fetches text.
   */
  protected _lend<T>(
    id: string,
    now: number,
    read: (record: Readonly<SessionRecord>, id: string) => T,
    _readsText?: boolean,
  ): HookAnswer<T | undefined> {
    const answer = this._get(id, now);
    if (isThenable(answer)) {
      return answer.then((record) => (record === undefined ? undefined : read(record, id)));
    }
    return answer === undefined ? undefined : read(answer, id);
  }
  /**
   * The write hooks get `lease` when the caller passed a lock. `locks.fence` already keeps this
   * process's other waiters out; a store shared with other processes must also check the lease
   * in the same transaction as the write, and throw `lockLost()` when it no longer holds. A
   * store whose lock backend declares `releasesWithWrite` frees the lease in that transaction
   * when `lease.release` is set.
   */
  protected abstract _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
    lease: HeldLease | undefined,
  ): HookAnswer<boolean>;
  protected abstract _touch(
    id: string,
    expiresAt: number,
    now: number,
    lease: HeldLease | undefined,
  ): HookAnswer<boolean>;
  protected abstract _delete(
    id: string,
    now: number,
    lease: HeldLease | undefined,
  ): HookAnswer<boolean>;
  protected abstract _sweep(progress: SweepProgress): Promise<SweepResult>;
  protected abstract _count(now: number): Promise<number>;
  protected abstract _ids(now: number): AsyncIterable<string>;
  protected abstract _clear(): Promise<void>;
  /** Stores with `capabilities.ownerIndex` override this; it is never called otherwise. */
  protected _ownedBy(_owner: string, _now: number): Promise<OwnedSession[]> {
    return Promise.reject(new SessionError('ERR_UNSUPPORTED', 'This store keeps no owner index'));
  }
  protected abstract _close(): Promise<void>;

  #fenced<T>(
    lock: SessionLock,
    release: boolean | undefined,
    write: (lease: HeldLease | undefined) => HookAnswer<T>,
  ): Promise<T> {
    if (this.locks.fence === undefined) {
      throw new SessionError('ERR_UNSUPPORTED', "This store's lock manager cannot fence writes");
    }
    return this.locks.fence(
      lock,
      (lease) => asPromise(write(lease)),
      release === true ? { release } : undefined,
    );
  }

  #assertOpen(): void {
    if (this.#closed) throw closedError();
  }

  /**
   * Runs one operation: rejects at once after `close()`, counts it in flight until it settles,
   * and turns a backend failure into `ERR_STORE_IO`. Not `async`: a hook's promise costs one
   * `then`, with handlers made once per store and action, and a value answered at once none.
   */
  #run<T>(action: string, operation: () => HookAnswer<T>): Promise<T> {
    if (this.#closed) return Promise.reject(closedError());
    this.#inflight++;
    let answer: HookAnswer<T>;
    try {
      answer = operation();
    } catch (error) {
      this.#settled();
      return Promise.reject(failure(error, this.#named(action), this.ioLocation()));
    }
    if (!isThenable(answer)) {
      this.#settled();
      return settledWith(answer);
    }
    // Promise.resolve returns a native promise as it is, and adopts a hook's other thenables.
    return Promise.resolve(answer).then(
      this.#passValue as (value: T) => T,
      this.#onFailure(action),
    );
  }

  #onFailure(action: string): (error: unknown) => never {
    let handler = this.#failureHandlers.get(action);
    if (handler === undefined) {
      const named = this.#named(action);
      const location = this.ioLocation();
      handler = (error: unknown) => {
        this.#settled();
        throw failure(error, named, location);
      };
      this.#failureHandlers.set(action, handler);
    }
    return handler;
  }

  /** `action` as `ERR_STORE_IO` messages name it: with the store's `ioLocation()`, if any. */
  #named(action: string): string {
    const location = this.ioLocation();
    return location === undefined ? action : `${action} on ${location}`;
  }

  #settled(): void {
    this.#inflight--;
    if (this.#inflight === 0) this.#drained?.();
  }
}
