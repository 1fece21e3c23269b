/**
 * One stored session. The payload is opaque to stores; encoding it is the codec's job.
 * `expiresAt` is an absolute time in milliseconds since the epoch, never a relative ttl.
 */
export interface SessionRecord {
  data: Uint8Array;
  expiresAt: number;
  /**
   * Who the session belongs to, such as a user id: an opaque string of 1 to 256 characters
   * (`MAX_OWNER_LENGTH`), well-formed Unicode. Absent means no owner. A store whose
   * `capabilities.ownerIndex` is true indexes it, so `ownedBy` lists an owner's sessions without
   * a scan. `get` returns it, `touch` keeps it, and `set` replaces it (a record written without
   * an owner has none).
   */
  owner?: string | undefined;
}

/** One live session of an owner, as `ownedBy` returns it. */
export interface OwnedSession {
  id: string;
  record: SessionRecord;
}

/** Options every write (`set`, `touch`, `delete`) takes. */
export interface WriteOptions {
  /**
   * A lock on this id from this store's `locks`. The store writes only while that lock still
   * holds, checked atomically with the write; otherwise the call rejects with `ERR_LOCK_LOST`
   * and writes nothing. So a holder whose lease was taken over can never overwrite the next one.
   */
  lock?: SessionLock;
  /**
   * With `lock`: the caller releases the lock right after this write. A store whose lock manager
   * can frees the lease in the write's own transaction, saving a round trip, and
   * `lock.release()` then resolves at once; otherwise the lock stays held until `release()`.
   * Call `release()` either way.
   */
  release?: boolean;
}

/** The lease a fenced write runs under, as its backend knows it. */
export interface HeldLease {
  /** What the backend locks: the session id, or the stripe it shares. */
  readonly key: string;
  readonly token: string;
  /** True when the write must also free the lease, in the same transaction as the write. */
  readonly release?: boolean;
}

/** A lock and the record read under it, as `LockManager.acquireAndGet` resolves them. */
export interface LockedRecord {
  lock: SessionLock;
  /** What `store.get(id)` returns once the lock is held. */
  record: SessionRecord | undefined;
}

/** Conditions for `set`. Without `only`, `set` writes unconditionally. */
export interface SetOptions extends WriteOptions {
  /**
   * `'absent'` writes only when no live record has this id (create, so ids never collide).
   * `'present'` writes only when a live record has this id (update, so a late save cannot bring
   * back a session that was deleted or has expired). Either way the check and the write are atomic.
   */
  only?: 'absent' | 'present';
}

export interface SweepOptions {
  /** The time to sweep as of, in ms since the epoch. Records with `expiresAt <= now` are removed. Default `Date.now()`. */
  now?: number;
  /** The most records one call examines (and so removes). A positive integer; default 1000. */
  limit?: number;
  /**
   * Stop starting new batches once this many milliseconds have passed. `0` does at most one
   * batch. Default: no time limit (the `limit` still bounds the call).
   */
  budgetMs?: number;
  /** Stop at the next batch boundary once aborted. An already aborted signal does no work. */
  signal?: AbortSignal;
}

export interface SweepResult {
  /** Expired records this call deleted. */
  removed: number;
  /** Records (or index entries) this call examined. */
  scanned: number;
  /** True when no expired record is left as of `now`, as far as this call could tell. Call again until it is. */
  done: boolean;
}

export interface StoreCapabilities {
  /** Who may open the same data at once: this process only, every process on the host, or many hosts. */
  shared: 'process' | 'host' | 'cluster';
  /** `'sweep'`: expired records stay until `sweep` removes them. `'native'`: the backend drops them itself. */
  expiry: 'sweep' | 'native';
  /** True when records survive `close()` and reopening, and a process crash. */
  durable: boolean;
  /** True when the store keeps an expiry index, so a sweep's cost grows with expired records, not with all records. */
  expiryIndex: boolean;
  /**
   * True when the store keeps an owner index consistent with its records, and so implements
   * `ownedBy` at a cost that grows with that owner's sessions, not with all sessions.
   */
  ownerIndex: boolean;
}

export interface AcquireOptions {
  /** How long to wait for the lock before rejecting with `ERR_LOCK_TIMEOUT`. `0` tries once. Default 10 000. */
  waitMs?: number;
  /** How long the lock stays held without `extend()`. The lock is lost after that. Default 30 000. */
  leaseMs?: number;
  /** Aborting stops waiting; the acquire rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * A held lock on one session id. The lease never renews by itself: call `extend()` to keep it.
 * Supports `await using`, which releases it.
 */
export interface SessionLock extends AsyncDisposable {
  readonly id: string;
  /** Unique to this acquisition, across processes and hosts. */
  readonly token: string;
  /** Aborts when the lock is lost: its lease ran out, or another holder took it over. */
  readonly signal: AbortSignal;
  /** When the lease ends unless extended, in ms since the epoch. */
  readonly expiresAt: number;
  /** Pushes the lease end to `now + ms` (default: the acquire's `leaseMs`). Rejects with `ERR_LOCK_LOST` once lost. */
  extend(ms?: number): Promise<void>;
  /**
   * Frees the lock. Idempotent. Rejects with `ERR_LOCK_LOST` if the lease was lost before the
   * release, and with `ERR_STORE_IO` when the backend failed to free it; calling it again then
   * tries again, until the lease runs out.
   */
  release(): Promise<void>;
}

/**
 * Per-session mutual exclusion. It reaches exactly as far as the store's `capabilities.shared`:
 * async work in one process, every process on the host, or every host.
 */
export interface LockManager {
  /** Resolves once the lock on `id` is held. Rejects with `ERR_LOCK_TIMEOUT` after `waitMs`. */
  acquire(id: string, options?: AcquireOptions): Promise<SessionLock>;
  /**
   * `acquire(id)` followed by the store's `get(id)`, in one round trip: present only where the
   * backend can read the record as part of taking the lock. The record is the one a `get` right
   * after the acquire would return, never one written before the previous holder's last write.
   * `undefined` is allowed, so a lock manager that has it or not (`LeaseLocks`) fits under
   * `exactOptionalPropertyTypes`.
   */
  readonly acquireAndGet?:
    | ((id: string, options?: AcquireOptions) => Promise<LockedRecord>)
    | undefined;
  /** Rejects pending and future acquires with `ERR_STORE_CLOSED`. Held locks stay until released or expired. */
  close?(): Promise<void>;
  /**
   * Runs `write` only while `lock` still holds, and keeps this process's next waiter out until
   * it ends. Rejects with `ERR_LOCK_LOST` when the lock is no longer held. `write` gets the
   * lease, so a store shared by other processes checks it in the same transaction as the write.
   * With `release`, a backend that can frees the lease in that transaction too (`lease.release`);
   * the lock is then released once `write` resolves.
   */
  fence?<T>(
    lock: SessionLock,
    write: (lease: HeldLease) => Promise<T>,
    options?: { release?: boolean },
  ): Promise<T>;
}

/**
 * The contract every sessile store honours. Not found is a value (`undefined` or `false`),
 * never an error. Failures reject with a `SessionError`. Expired means absent, always: no
 * method ever returns or counts a record past its `expiresAt`, swept or not.
 */
export interface SessionStore {
  readonly capabilities: StoreCapabilities;
  readonly locks: LockManager;
  /** Records whose `data` is larger than this many bytes are rejected with `ERR_RECORD_TOO_LARGE`. */
  readonly maxRecordBytes: number;
  /** True once `close()` has been called. */
  readonly closed: boolean;

  /** The live record, or `undefined` when absent or expired. A record that cannot be decoded rejects with `ERR_CORRUPT_RECORD`. */
  get(id: string): Promise<SessionRecord | undefined>;
  /**
   * `get` for a caller that decodes the record at once: `read(record, id)`'s answer for the live
   * record, or `undefined` without calling `read` when absent or expired. The record is lent,
   * valid only during the call and never to be changed, which spares a store that keeps its
   * records in memory the copy `get` hands out. A throw in `read`, or a rejection of the promise
   * it returns, rejects the call with that error as it is.
   */
  lend?<T>(
    id: string,
    read: (record: Readonly<SessionRecord>, id: string) => T,
  ): Promise<T | undefined>;
  /** Writes the record, subject to `options.only`. Resolves `true` when it wrote. */
  set(id: string, record: SessionRecord, options?: SetOptions): Promise<boolean>;
  /** Sets a live record's `expiresAt`. Resolves `false` when absent or expired. */
  touch(id: string, expiresAt: number, options?: WriteOptions): Promise<boolean>;
  /** Removes the record. Resolves `true` when a live record was removed. */
  delete(id: string, options?: WriteOptions): Promise<boolean>;
  /** Removes expired records in bounded, resumable steps. */
  sweep(options?: SweepOptions): Promise<SweepResult>;
  /** The number of live records. */
  count(): Promise<number>;
  /** Streams the ids of live records, without loading them all at once. */
  ids(): AsyncIterable<string>;
  /** Removes every record of this store, and nothing else. */
  clear(): Promise<void>;
  /**
   * The live sessions whose record carries `owner`, with their records, in no set order. Never
   * an expired or deleted one, nor one since rewritten with another owner or none. Present when
   * `capabilities.ownerIndex` is true; its cost grows with that owner's sessions.
   */
  ownedBy?(owner: string): Promise<OwnedSession[]>;
  /**
   * Releases the backend. Idempotent. Every other method then rejects with `ERR_STORE_CLOSED`.
   * A sweep already running resolves, never rejects, with what it removed (`done: false` if it
   * stopped early), so the next process's sweep removes exactly the rest.
   */
  close(): Promise<void>;
}
