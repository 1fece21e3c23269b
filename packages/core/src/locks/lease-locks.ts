import { toStoreIoError } from '../errors.js';
import { generateToken } from '../ids.js';
import type {
  AcquireOptions,
  HeldLease,
  LockedRecord,
  LockManager,
  SessionLock,
  SessionRecord,
} from '../types.js';
import {
  LeaseLock,
  lockLost,
  lockManagerClosed,
  lockTimeout,
  type NormalizedAcquireOptions,
  normalizeAcquireOptions,
} from './lease.js';
import type { LeaseBackend, LeaseClaim } from './lease-backend.js';

export type { ClaimedRecord, LeaseBackend, LeaseClaim } from './lease-backend.js';

/** The first pause of the head waiter's back-off; it doubles, with jitter, up to the backend's maximum. */
export const MIN_POLL_DELAY_MS = 1;
/** The back-off's ceiling for backends that cannot wake waiters. */
export const MAX_POLL_DELAY_MS = 25;

export interface LeaseLocksOptions {
  /** The key a session id locks. Default the id itself; a striped pool maps many ids to one key. */
  keyOf?: (id: string) => string;
  /**
   * Called once per acquire that has to wait, with the id holding the key in this process, if
   * any (`undefined` when the backend refused the claim for another process's holder).
   */
  onWait?: (id: string, localHolderId: string | undefined) => void;
}

interface Waiter {
  readonly id: string;
  readonly leaseMs: number;
  /** A `waitMs: 0` acquire: one claim, and a timeout on the first refusal. */
  readonly once: boolean;
  /** True once reported to `onWait`. */
  waited: boolean;
  /** True when the waiter also wants the record, read by `claimAndGet`. */
  readonly reads: boolean;
  /** True once the waiter has its lock, timed out, was aborted or closed. */
  settled: boolean;
  resolve(locked: { lock: LeaseLock; record: SessionRecord | undefined }): void;
  reject(error: unknown): void;
}

interface Slot {
  readonly key: string;
  /** The lock this process holds on the key, if any: local waiters never ask the backend then. */
  holder: LeaseLock | undefined;
  readonly queue: Waiter[];
  /** True while the head waiter's claim loop runs. */
  serving: boolean;
  /** Ends the head waiter's current pause early. */
  wake: (() => void) | undefined;
  /** Fenced writes running under the holder's lease: the key passes to nobody until they end. */
  fences: number;
  /** Releases waiting for the fenced writes before them to end. */
  readonly fencesEnded: Array<() => void>;
}

/**
 * The one lock manager: every store's locks are a `LeaseBackend` under it. It validates
 * arguments, queues one process's waiters per key in arrival order (only the head asks the
 * backend, backing off or woken by the backend), times waits out, honours abort signals, turns a
 * claim into a `LeaseLock`, and hands the key to the next local waiter on release.
 */
export class LeaseLocks implements LockManager {
  readonly #backend: LeaseBackend;
  readonly #keyOf: (id: string) => string;
  readonly #onWait: ((id: string, localHolderId: string | undefined) => void) | undefined;
  readonly #maxPollDelayMs: number;
  readonly #slots = new Map<string, Slot>();
  #closed = false;
  /** The slot of each lock this manager granted, so `fence` knows the lock and its key. */
  readonly #granted = new WeakMap<SessionLock, Slot>();
  /** Present when the backend can claim and read in one round trip (`claimAndGet`). */
  readonly acquireAndGet:
    | ((id: string, options?: AcquireOptions) => Promise<LockedRecord>)
    | undefined;

  constructor(backend: LeaseBackend, options: LeaseLocksOptions = {}) {
    this.#backend = backend;
    this.#keyOf = options.keyOf ?? ((id) => id);
    this.#onWait = options.onWait;
    this.#maxPollDelayMs = backend.maxPollDelayMs ?? MAX_POLL_DELAY_MS;
    this.acquireAndGet =
      backend.claimAndGet === undefined
        ? undefined
        : (id, acquireOptions) => this.#acquire(id, acquireOptions, true);
  }

  /** Keys held or waited for in this process. */
  get size(): number {
    return this.#slots.size;
  }

  get closed(): boolean {
    return this.#closed;
  }

  async acquire(id: string, options?: AcquireOptions): Promise<SessionLock> {
    return (await this.#acquire(id, options, false)).lock;
  }

  async #acquire(
    id: string,
    options: AcquireOptions | undefined,
    reads: boolean,
  ): Promise<LockedRecord> {
    const normalized = normalizeAcquireOptions(id, options);
    if (this.closed) throw lockManagerClosed();
    if (normalized.signal?.aborted) throw normalized.signal.reason;
    const key = this.#keyOf(id);
    let slot = this.#slots.get(key);
    if (slot === undefined) {
      slot = {
        key,
        holder: undefined,
        queue: [],
        serving: false,
        wake: undefined,
        fences: 0,
        fencesEnded: [],
      };
      this.#slots.set(key, slot);
    }
    const queued = slot.holder !== undefined || slot.queue.length > 0;
    if (queued) {
      this.#onWait?.(id, slot.holder?.id);
      if (normalized.waitMs === 0) {
        this.#dropIfIdle(slot);
        throw lockTimeout(0);
      }
    }
    return this.#enqueue(slot, id, normalized, queued, reads);
  }

  async fence<T>(
    lock: SessionLock,
    write: (lease: HeldLease) => Promise<T>,
    options?: { release?: boolean },
  ): Promise<T> {
    const slot = this.#granted.get(lock);
    if (slot === undefined) {
      throw new TypeError("lock was not acquired from this store's lock manager");
    }
    if (slot.holder !== lock || lock.expiresAt <= Date.now()) throw lockLost();
    slot.fences++;
    const release = options?.release === true && this.#backend.releasesWithWrite === true;
    const lease: HeldLease = release
      ? { key: slot.key, token: lock.token, release }
      : { key: slot.key, token: lock.token };
    try {
      const result =
        this.#backend.fence === undefined
          ? await write(lease)
          : await this.#backend.fence(lease, () => write(lease));
      // The write resolved, so it held the lease and freed it in the same transaction.
      if (release && slot.holder === lock) slot.holder.markReleased();
      return result;
    } finally {
      slot.fences--;
      if (slot.fences === 0) for (const ended of slot.fencesEnded.splice(0)) ended();
      if (slot.fences === 0 && slot.holder === undefined) {
        if (slot.queue.length > 0) this.#serve(slot);
        else this.#dropIfIdle(slot);
      }
    }
  }

  /** Rejects waiting and later acquires with `ERR_STORE_CLOSED`. Held locks stay until released or expired. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const slot of this.#slots.values()) {
      for (const waiter of slot.queue.splice(0)) this.#settle(waiter, lockManagerClosed());
      slot.wake?.();
      this.#dropIfIdle(slot);
    }
    await this.#backend.close?.();
  }

  #enqueue(
    slot: Slot,
    id: string,
    options: NormalizedAcquireOptions,
    waited: boolean,
    reads: boolean,
  ): Promise<LockedRecord> {
    return new Promise<LockedRecord>((resolve, reject) => {
      const { signal, waitMs } = options;
      const leave = (error: unknown) => {
        if (waiter.settled) return;
        const index = slot.queue.indexOf(waiter);
        if (index !== -1) slot.queue.splice(index, 1);
        this.#settle(waiter, error);
        // The next waiter becomes the head and tries at once, on its own deadline.
        if (index === 0) slot.wake?.();
        this.#dropIfIdle(slot);
      };
      const onAbort = () => leave(signal?.reason);
      // waitMs 0 still makes one claim: the timer only ends waits that had to pause.
      const timer = waitMs === 0 ? undefined : setTimeout(() => leave(lockTimeout(waitMs)), waitMs);
      const waiter: Waiter = {
        id,
        leaseMs: options.leaseMs,
        once: waitMs === 0,
        waited,
        reads,
        settled: false,
        resolve: (locked) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve(locked);
        },
        reject: (error) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      slot.queue.push(waiter);
      this.#serve(slot);
    });
  }

  /** Runs the head waiter's claim loop until the key is held here or nobody waits. */
  #serve(slot: Slot): void {
    if (slot.serving || slot.holder !== undefined || slot.fences > 0 || this.closed) return;
    slot.serving = true;
    this.#claimLoop(slot).finally(() => {
      slot.serving = false;
      this.#dropIfIdle(slot);
      // A waiter may have arrived while the loop was finishing.
      if (slot.queue.length > 0) this.#serve(slot);
    });
  }

  async #claimLoop(slot: Slot): Promise<void> {
    let delayMs = MIN_POLL_DELAY_MS;
    const unwatch = this.#backend.watch?.(slot.key, () => slot.wake?.());
    try {
      for (;;) {
        const head = slot.queue[0];
        if (head === undefined || this.closed) return;
        const claim: LeaseClaim = {
          key: slot.key,
          id: head.id,
          token: generateToken(),
          expiresAt: Date.now() + head.leaseMs,
          waited: head.waited,
        };
        let taken: boolean;
        let record: SessionRecord | undefined;
        try {
          const claimAndGet = head.reads ? this.#backend.claimAndGet : undefined;
          if (claimAndGet === undefined) {
            taken = await this.#backend.claim(claim);
          } else {
            const outcome = await claimAndGet.call(this.#backend, claim);
            taken = outcome.taken;
            if (outcome.taken) record = outcome.record;
          }
        } catch (error) {
          this.#remove(slot, head);
          this.#settle(head, toStoreIoError(error, 'lock acquire'));
          continue;
        }
        if (taken) {
          if (head.settled) {
            // The waiter left (timeout, abort, close) while its claim was in flight: hand the key back.
            await Promise.resolve(this.#backend.release(claim)).catch(() => {});
            continue;
          }
          this.#remove(slot, head);
          slot.holder = this.#grant(slot, claim, head.leaseMs);
          this.#granted.set(slot.holder, slot);
          head.settled = true;
          head.resolve({ lock: slot.holder, record });
          return;
        }
        if (!head.waited) {
          head.waited = true;
          this.#onWait?.(head.id, undefined);
        }
        if (head.once) {
          this.#remove(slot, head);
          this.#settle(head, lockTimeout(0));
          continue;
        }
        if (head !== slot.queue[0]) {
          delayMs = MIN_POLL_DELAY_MS;
          continue;
        }
        await this.#pause(slot, delayMs * (0.5 + Math.random()));
        delayMs = Math.min(this.#maxPollDelayMs, delayMs * 2);
      }
    } finally {
      unwatch?.();
    }
  }

  #pause(slot: Slot, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        slot.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      slot.wake = done;
    });
  }

  #grant(slot: Slot, claim: LeaseClaim, leaseMs: number): LeaseLock {
    const backend = this.#backend;
    const free = () => {
      if (slot.holder?.token !== claim.token) return;
      slot.holder = undefined;
      if (slot.queue.length === 0) {
        this.#dropIfIdle(slot);
        return;
      }
      // Hand over on the next turn: over a synchronous backend a queue of waiters would
      // otherwise drain in microtasks alone, starving timers (waitMs) and every other request.
      // The turn is also the moment another process can claim the key.
      slot.serving = true;
      setImmediate(() => {
        slot.serving = false;
        this.#serve(slot);
        this.#dropIfIdle(slot);
      });
    };
    return new LeaseLock({
      id: claim.id,
      token: claim.token,
      leaseMs,
      expiresAt: claim.expiresAt,
      hooks: {
        extend: async (token, expiresAt) => {
          try {
            return await backend.extend({ ...claim, token, expiresAt });
          } catch (error) {
            throw toStoreIoError(error, 'lock extend');
          }
        },
        release: async (token) => {
          try {
            // A write started before the release lands first, under the lease it was given.
            if (slot.fences > 0) await new Promise<void>((ended) => slot.fencesEnded.push(ended));
            return await backend.release({ ...claim, token });
          } catch (error) {
            throw toStoreIoError(error, 'lock release');
          } finally {
            free();
          }
        },
        expired: (token) => {
          free();
          backend.expired?.({ ...claim, token });
        },
        released: free,
      },
    });
  }

  #remove(slot: Slot, waiter: Waiter): void {
    const index = slot.queue.indexOf(waiter);
    if (index !== -1) slot.queue.splice(index, 1);
  }

  #settle(waiter: Waiter, error: unknown): void {
    if (waiter.settled) return;
    waiter.settled = true;
    waiter.reject(error);
  }

  #dropIfIdle(slot: Slot): void {
    if (
      slot.holder === undefined &&
      slot.queue.length === 0 &&
      !slot.serving &&
      slot.fences === 0
    ) {
      if (this.#slots.get(slot.key) === slot) this.#slots.delete(slot.key);
    }
  }
}
