import { isSessionError, type SessionError, toStoreIoError } from '../errors.js';
import { generateToken } from '../ids.js';
import type {
  AcquireOptions,
  HeldLease,
  LockedRecord,
  LockManager,
  SessionLock,
} from '../types.js';
import { assertKnownOptions, describeValue } from '../util.js';
import {
  LeaseLock,
  lockLost,
  lockManagerClosed,
  lockTimeout,
  type NormalizedAcquireOptions,
  normalizeAcquireOptions,
} from './lease.js';
import type { LeaseBackend, LeaseClaim } from './lease-backend.js';
import {
  type ClaimResult,
  claimOnce,
  claimWithin,
  LeftBeforeClaimed,
  newSlot,
  pause,
  queueWaiter,
  removeWaiter,
  type Slot,
  settleWaiter,
  slotIdle,
  type Waiter,
} from './lease-slot.js';

export {
  type ClaimedRecord,
  claimThenRead,
  type LeaseBackend,
  type LeaseClaim,
  lostSocket,
} from './lease-backend.js';

/** The first pause of the head waiter's back-off; it doubles, with jitter, up to the backend's maximum. */
export const MIN_POLL_DELAY_MS = 1;
/** The back-off's ceiling for backends that cannot wake waiters. */
export const MAX_POLL_DELAY_MS = 25;
/** The first pause before a claim whose connection was lost is sent again; it doubles up to the backend's maximum poll delay. */
const RESEND_MIN_DELAY_MS = 10;

export interface LeaseLocksOptions {
  /** The key a session id locks. Default the id itself; a striped pool maps many ids to one key. */
  keyOf?: (id: string) => string;
  /**
   * Called once per acquire that has to wait, with the id holding the key in this process, if
   * any (`undefined` when the backend refused the claim for another process's holder).
   */
  onWait?: (id: string, localHolderId: string | undefined) => void;
  /**
   * The path or server the backend's failures name, as `lock acquire on <location> failed: …`.
   * Leave it out when the backend's own errors name it already.
   */
  location?: string;
}

/** `new LeaseLocks`'s options: a misspelt `keyOf` would lock every id on its own key unseen. */
function checkLeaseLocksOptions(options: LeaseLocksOptions): void {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`LeaseLocks options must be an object, got ${describeValue(options)}`);
  }
  assertKnownOptions(options, ['keyOf', 'onWait', 'location'], 'LeaseLocks');
  for (const name of ['keyOf', 'onWait'] as const) {
    const given = options[name];
    if (given !== undefined && typeof given !== 'function') {
      throw new TypeError(`LeaseLocks: ${name} must be a function, got ${describeValue(given)}`);
    }
  }
  if (options.location !== undefined && typeof options.location !== 'string') {
    throw new TypeError(
      `LeaseLocks: location must be a string, got ${describeValue(options.location)}`,
    );
  }
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
  readonly #location: string | undefined;
  readonly #maxPollDelayMs: number;
  readonly #slots = new Map<string, Slot>();
  #closed = false;
  #closeDone: Promise<void> | undefined;
  /** How each first claim in flight leaves its acquire, which `close()` calls. */
  readonly #closing = new Set<(reason: unknown) => void>();
  /**
   * Claims in flight, and the hand-backs of claims taken after their waiter left: `close()` waits
   * for them before it closes the backend, so a key taken while it closed is freed through a
   * backend still open instead of staying held for its whole lease.
   */
  readonly #inFlight = new Set<Promise<unknown>>();
  /** Locks whose release the backend failed: close() tries them again with the held ones. */
  readonly #unreleased = new Set<LeaseLock>();
  /** Present when the backend can claim and read in one round trip (`claimAndGet`). */
  readonly acquireAndGet:
    | ((id: string, options?: AcquireOptions) => Promise<LockedRecord>)
    | undefined;

  constructor(backend: LeaseBackend, options: LeaseLocksOptions = {}) {
    checkLeaseLocksOptions(options);
    this.#backend = backend;
    this.#keyOf = options.keyOf ?? ((id) => id);
    this.#onWait = options.onWait;
    this.#location = options.location;
    this.#maxPollDelayMs = backend.maxPollDelayMs ?? MAX_POLL_DELAY_MS;
    this.acquireAndGet =
      backend.claimAndGet === undefined
        ? undefined
        : (id, acquireOptions) => this.#acquire(id, acquireOptions, true);
  }

  /**
   * A backend failure as `ERR_STORE_IO`, naming the backend's location when it has one, with
   * `id` and the id-shaped names of lease files redacted.
   */
  #ioError(error: unknown, action: string, id: string): SessionError {
    const location = this.#location;
    return toStoreIoError(error, location === undefined ? action : `${action} on ${location}`, {
      id,
      location,
    });
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
      slot = newSlot(key, this);
      this.#slots.set(key, slot);
    }
    const queued = slot.holder !== undefined || slot.queue.length > 0 || slot.firstClaim;
    if (queued) {
      this.#onWait?.(id, slot.holder?.id);
      if (normalized.waitMs === 0) {
        this.#dropIfIdle(slot);
        throw lockTimeout(0);
      }
    } else if (!slot.serving && slot.fences === 0) {
      return this.#track(this.#claimFirst(slot, id, normalized, reads));
    }
    return this.#enqueue(slot, id, normalized, queued, reads, Date.now() + normalized.waitMs);
  }

  /**
   * The acquire of an idle key: one claim with no claim loop, which most acquires need alone,
   * and with no timer or abort listener when the backend answers synchronously. Refused, it
   * becomes the head waiter, its wait counted from the acquire.
   */
  async #claimFirst(
    slot: Slot,
    id: string,
    options: NormalizedAcquireOptions,
    reads: boolean,
  ): Promise<LockedRecord> {
    const startedAt = Date.now();
    const claim: LeaseClaim = {
      key: slot.key,
      id,
      token: generateToken(),
      expiresAt: startedAt + options.leaseMs,
      waited: false,
    };
    slot.firstClaim = true;
    const { signal, waitMs } = options;
    let outcome: ClaimResult;
    try {
      const claimed = claimOnce(this.#backend, claim, reads);
      if (claimed instanceof Promise) this.#track(claimed);
      const leave = { signal, closing: this.#closing };
      outcome =
        claimed instanceof Promise
          ? await claimWithin(claimed, waitMs, startedAt + waitMs, leave, (late) => {
              // Taken after the acquire left: hand the key back before the next waiter claims.
              const handBack = late?.taken ? this.#backend.release(claim) : false;
              this.#track(
                Promise.resolve(handBack)
                  .catch(() => {})
                  .finally(() => this.#endFirstClaim(slot)),
              );
            })
          : claimed;
    } catch (error) {
      if (error instanceof LeftBeforeClaimed) throw error.reason;
      this.#abandon(claim);
      this.#endFirstClaim(slot);
      throw this.#ioError(error, 'lock acquire', id);
    }
    // Closed or aborted while an asynchronous claim was in flight: the acquire ends here.
    const left = this.closed ? lockManagerClosed() : signal?.aborted ? signal.reason : undefined;
    if (outcome.taken && left === undefined) {
      slot.firstClaim = false;
      slot.holder = this.#grant(slot, claim, options.leaseMs);
      return { lock: slot.holder, record: outcome.record };
    }
    if (outcome.taken) await Promise.resolve(this.#backend.release(claim)).catch(() => {});
    else this.#onWait?.(id, undefined);
    if (left !== undefined || waitMs === 0) {
      this.#endFirstClaim(slot);
      throw left ?? lockTimeout(0);
    }
    slot.firstClaim = false;
    return this.#enqueue(slot, id, options, true, reads, startedAt + waitMs, true);
  }

  /**
   * Releases a claim whose call failed, such as one that ran past the store's command timeout:
   * the backend may have taken it all the same, and the key would stay held for the whole lease
   * with nobody to release it. A release frees only a key that holds this claim's token, so it
   * is safe when the claim was never taken. Best effort: the backend may be down.
   */
  #abandon(claim: LeaseClaim): void {
    this.#track(
      Promise.resolve()
        .then(() => this.#backend.release(claim))
        .catch(() => {}),
    );
  }

  /** `work`, counted in flight until it settles (see `#inFlight`). */
  #track<T>(work: Promise<T>): Promise<T> {
    this.#inFlight.add(work);
    const settled = () => this.#inFlight.delete(work);
    work.then(settled, settled);
    return work;
  }

  #endFirstClaim(slot: Slot): void {
    slot.firstClaim = false;
    if (slot.queue.length > 0) this.#serve(slot);
    else this.#dropIfIdle(slot);
  }

  async fence<T>(
    lock: SessionLock,
    write: (lease: HeldLease) => Promise<T>,
    options?: { release?: boolean },
  ): Promise<T> {
    // A lock this manager granted carries its slot, so `fence` knows the lock and its key.
    const slot = lock instanceof LeaseLock ? (lock.grant as Slot | undefined) : undefined;
    if (slot?.owner !== this) {
      throw new TypeError("lock was not acquired from this store's lock manager");
    }
    // Released (even with its release still in flight), lost, or taken over.
    const holder = slot.holder;
    if (holder !== lock || !holder.held) throw lockLost();
    if (holder.expiresAt <= Date.now()) {
      // Its lease ran out before the lease-end timer ran (a stalled event loop): lost for good,
      // as the timer would have made it, so its holder does not try to release it as well.
      holder.end('its lease ran out before a fenced write');
      throw lockLost();
    }
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
    } catch (error) {
      // The backend found the lease gone (run out, or taken over): the lock is lost for good,
      // so its signal aborts and the next waiter here need not wait out the local lease.
      if (isSessionError(error, 'ERR_LOCK_LOST') && slot.holder === lock) {
        slot.holder.end('a fenced write found its lease no longer held');
      }
      throw error;
    } finally {
      slot.fences--;
      if (slot.fences === 0) for (const ended of slot.fencesEnded.splice(0)) ended();
      if (slot.fences === 0 && slot.holder === undefined) {
        if (slot.queue.length > 0) this.#serve(slot);
        else this.#dropIfIdle(slot);
      }
    }
  }

  /**
   * Rejects waiting and later acquires with `ERR_STORE_CLOSED`. Held locks stay until released
   * or expired, except over a backend that `releasesOnClose`, which frees them now, or whose own
   * `close` frees them (`LeaseFiles`, so that a closed store holds no file open).
   */
  close(): Promise<void> {
    this.#closeDone ??= this.#close();
    return this.#closeDone;
  }

  /**
   * The first half of `close()`, at once: waiting and later acquires reject with
   * `ERR_STORE_CLOSED`, while held locks, their fenced writes and the backend keep working. A
   * store calls it when its own `close()` begins, before the operations in flight have ended.
   */
  stopAcquiring(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#backend.stopAcquiring?.();
    for (const leave of [...this.#closing]) leave(lockManagerClosed());
    for (const slot of this.#slots.values()) {
      for (const waiter of slot.queue.splice(0)) settleWaiter(waiter, lockManagerClosed());
      slot.wake?.();
    }
  }

  async #close(): Promise<void> {
    this.stopAcquiring();
    // A claim the backend grants from here on is handed back, and no waiter is left to take it.
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    const held: LeaseLock[] = [...this.#unreleased];
    this.#unreleased.clear();
    for (const slot of this.#slots.values()) {
      if (slot.holder !== undefined) held.push(slot.holder);
      this.#dropIfIdle(slot);
    }
    if (this.#backend.releasesOnClose === true) {
      // A failed release leaves that lease to run out, as a crashed holder's would.
      await Promise.all(held.map((lock) => lock.release().catch(() => {})));
    }
    await this.#backend.close?.();
  }

  /**
   * Queues a waiter until `deadline`. `refused`: its first claim was just refused, so it goes
   * first (it arrived before everyone queued) and pauses before claiming again.
   */
  #enqueue(
    slot: Slot,
    id: string,
    options: NormalizedAcquireOptions,
    waited: boolean,
    reads: boolean,
    deadline: number,
    refused = false,
  ): Promise<LockedRecord> {
    const signal = options.signal ?? options.signalWhenWaiting?.();
    if (signal?.aborted) {
      if (refused) this.#endFirstClaim(slot);
      else this.#dropIfIdle(slot);
      return Promise.reject(signal.reason);
    }
    const { leaseMs, waitMs } = options;
    const init = { id, leaseMs, waitMs, waited, reads, deadline, signal, first: refused };
    const locked = queueWaiter(slot, init, (wasHead) => {
      // The next waiter becomes the head and tries at once, on its own deadline.
      if (wasHead) slot.wake?.();
      this.#dropIfIdle(slot);
    });
    this.#serve(slot, refused);
    return locked;
  }

  /** Runs the head waiter's claim loop until the key is held here or nobody waits. */
  #serve(slot: Slot, pauseFirst = false): void {
    if (
      slot.serving ||
      slot.firstClaim ||
      slot.holder !== undefined ||
      slot.fences > 0 ||
      this.closed
    ) {
      return;
    }
    slot.serving = true;
    this.#track(
      this.#claimLoop(slot, pauseFirst).finally(() => {
        slot.serving = false;
        this.#dropIfIdle(slot);
        // A waiter may have arrived while the loop was finishing.
        if (slot.queue.length > 0) this.#serve(slot);
      }),
    );
  }

  async #claimLoop(slot: Slot, pauseFirst: boolean): Promise<void> {
    let delayMs = MIN_POLL_DELAY_MS;
    const unwatch = this.#backend.watch?.(slot.key, () => slot.wake?.());
    try {
      if (pauseFirst) {
        await pause(slot, delayMs * (0.5 + Math.random()));
        delayMs = Math.min(this.#maxPollDelayMs, delayMs * 2);
      }
      for (;;) {
        const head = slot.queue[0];
        if (head === undefined || this.closed) return;
        let claim: LeaseClaim = {
          key: slot.key,
          id: head.id,
          token: generateToken(),
          expiresAt: Date.now() + head.leaseMs,
          waited: head.waited,
        };
        let outcome: ClaimResult;
        try {
          ({ outcome, claim } = await this.#claimAsHead(slot, head, claim));
        } catch (error) {
          this.#abandon(claim);
          removeWaiter(slot, head);
          settleWaiter(head, this.#ioError(error, 'lock acquire', head.id));
          continue;
        }
        if (outcome.taken) {
          if (head.settled) {
            // The waiter left (timeout, abort, close) while its claim was in flight: hand the key back.
            await Promise.resolve(this.#backend.release(claim)).catch(() => {});
            continue;
          }
          removeWaiter(slot, head);
          slot.holder = this.#grant(slot, claim, head.leaseMs);
          head.settled = true;
          head.resolve({ lock: slot.holder, record: outcome.record });
          return;
        }
        if (!head.waited) {
          head.waited = true;
          this.#onWait?.(head.id, undefined);
        }
        if (head.once) {
          removeWaiter(slot, head);
          settleWaiter(head, lockTimeout(0));
          continue;
        }
        if (head !== slot.queue[0]) {
          delayMs = MIN_POLL_DELAY_MS;
          continue;
        }
        await pause(slot, delayMs * (0.5 + Math.random()));
        delayMs = Math.min(this.#maxPollDelayMs, delayMs * 2);
      }
    } finally {
      unwatch?.();
    }
  }

  /**
   * The head waiter's claim, sent again while it fails with a lost connection (see
   * `LeaseBackend.lostConnection`): with the same token, after a jittered pause that doubles,
   * until it gets an answer, the waiter leaves (its `waitMs` ran out, its signal aborted, or
   * acquiring stopped: all of them end the pause at once), or the backend's `reconnectWithinMs`
   * has passed since the loss, when the last failure rejects. Answers with the claim that got
   * the answer, whose lease end is the one the backend holds. A waiter that left gets the last
   * failure, which the caller only uses to hand back the claim, in case a send took the key unseen.
   *
   * Only a waiting claim is sent again. An acquire's first claim, and a `waitMs: 0` acquire's,
   * fail at once with `ERR_STORE_IO`, as a `get` does on the same lost connection: nothing says
   * the store will be back within the request's time, and an app answering "unavailable" at
   * once serves its users better than one that holds every request through the outage. A
   * waiter has already agreed to wait, and a brief drop (whose first sign, a lost notification
   * connection, is often what wakes it) must not fail it while it has time left.
   */
  async #claimAsHead(
    slot: Slot,
    head: Waiter,
    claim: LeaseClaim,
  ): Promise<{ outcome: ClaimResult; claim: LeaseClaim }> {
    const backend = this.#backend;
    try {
      return { outcome: await claimOnce(backend, claim, head.reads), claim };
    } catch (error) {
      const resends = claim.waited && !head.once && backend.lostConnection?.(error) === true;
      if (!resends || head.settled) throw error;
      let lost = error;
      const giveUpAt = Date.now() + (backend.reconnectWithinMs ?? Number.POSITIVE_INFINITY);
      for (let delayMs = RESEND_MIN_DELAY_MS; ; ) {
        const pauseMs = delayMs * (0.5 + Math.random());
        if (Date.now() + pauseMs >= giveUpAt) throw lost;
        await pause(slot, pauseMs);
        // The waiter left (its wait ran out, aborted, or acquiring stopped): the caller hands back the claim.
        if (head.settled || this.closed) throw lost;
        const now = Date.now();
        // A first send's lease that has ended holds nothing: the resend may then take a new one.
        const expiresAt = claim.expiresAt > now ? claim.expiresAt : now + head.leaseMs;
        claim = { ...claim, expiresAt, resent: true };
        try {
          return { outcome: await claimOnce(backend, claim, head.reads), claim };
        } catch (resendError) {
          if (backend.lostConnection?.(resendError) !== true) throw resendError;
          lost = resendError;
        }
        delayMs = Math.min(this.#maxPollDelayMs, 2 * delayMs);
      }
    }
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
    const lock: LeaseLock = new LeaseLock({
      id: claim.id,
      token: claim.token,
      leaseMs,
      expiresAt: claim.expiresAt,
      grant: slot,
      hooks: {
        extend: async (token, expiresAt) => {
          try {
            return await backend.extend({ ...claim, token, expiresAt });
          } catch (error) {
            throw this.#ioError(error, 'lock extend', claim.id);
          }
        },
        release: async (token) => {
          try {
            // A write started before the release lands first, under the lease it was given.
            if (slot.fences > 0) await new Promise<void>((ended) => slot.fencesEnded.push(ended));
            const released = await backend.release(
              token === claim.token ? claim : { ...claim, token },
            );
            this.#unreleased.delete(lock);
            return released;
          } catch (error) {
            // Kept for close() to try again, as the app's own next release() does, until its
            // lease runs out.
            this.#unreleased.add(lock);
            const now = Date.now();
            for (const other of this.#unreleased) {
              if (other.expiresAt <= now) this.#unreleased.delete(other);
            }
            throw this.#ioError(error, 'lock release', claim.id);
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
    return lock;
  }

  #dropIfIdle(slot: Slot): void {
    if (slotIdle(slot) && this.#slots.get(slot.key) === slot) this.#slots.delete(slot.key);
  }
}
