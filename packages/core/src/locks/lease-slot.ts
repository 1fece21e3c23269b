import type { LockedRecord, SessionRecord } from '../types.js';
import { type LeaseLock, lockTimeout } from './lease.js';
import type { LeaseBackend, LeaseClaim } from './lease-backend.js';

/** One acquire queued on a key in this process. */
export interface Waiter {
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

/** One key's state in this process: its holder, its queue and what runs on it. */
export interface Slot {
  /** The lock manager the slot belongs to. */
  readonly owner: object;
  readonly key: string;
  /** The lock this process holds on the key, if any: local waiters never ask the backend then. */
  holder: LeaseLock | undefined;
  readonly queue: Waiter[];
  /** True while the head waiter's claim loop runs. */
  serving: boolean;
  /** True while the claim of an acquire that found the key idle is in flight: it is not queued. */
  firstClaim: boolean;
  /** Ends the head waiter's current pause early. */
  wake: (() => void) | undefined;
  /** Fenced writes running under the holder's lease: the key passes to nobody until they end. */
  fences: number;
  /** Releases waiting for the fenced writes before them to end. */
  readonly fencesEnded: Array<() => void>;
}

export function newSlot(key: string, owner: object): Slot {
  return {
    owner,
    key,
    holder: undefined,
    queue: [],
    serving: false,
    firstClaim: false,
    wake: undefined,
    fences: 0,
    fencesEnded: [],
  };
}

/** True when nothing holds, waits for, claims or writes under the key: its slot can go. */
export function slotIdle(slot: Slot): boolean {
  return (
    slot.holder === undefined &&
    slot.queue.length === 0 &&
    !slot.serving &&
    !slot.firstClaim &&
    slot.fences === 0
  );
}

export function removeWaiter(slot: Slot, waiter: Waiter): void {
  const index = slot.queue.indexOf(waiter);
  if (index !== -1) slot.queue.splice(index, 1);
}

/** Waits `ms`, or less if `slot.wake` is called. */
export function pause(slot: Slot, ms: number): Promise<void> {
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

/**
 * One claim, with the record when `reads` and the backend can read with it. A synchronous
 * backend's answer comes back synchronously, without a promise.
 */
export function claimOnce(
  backend: LeaseBackend,
  claim: LeaseClaim,
  reads: boolean,
): ClaimResult | Promise<ClaimResult> {
  const claimAndGet = reads ? backend.claimAndGet : undefined;
  if (claimAndGet !== undefined) {
    return claimAndGet.call(backend, claim).then((outcome) => ({
      taken: outcome.taken,
      record: outcome.taken ? outcome.record : undefined,
    }));
  }
  const claimed = backend.claim(claim);
  if (typeof claimed === 'boolean') return claimed ? TAKEN : REFUSED;
  return Promise.resolve(claimed).then((taken) => (taken ? TAKEN : REFUSED));
}

export interface ClaimResult {
  readonly taken: boolean;
  readonly record: SessionRecord | undefined;
}

const TAKEN: ClaimResult = { taken: true, record: undefined };
const REFUSED: ClaimResult = { taken: false, record: undefined };

export function settleWaiter(waiter: Waiter, error: unknown): void {
  if (waiter.settled) return;
  waiter.settled = true;
  waiter.reject(error);
}

export interface WaiterInit {
  readonly id: string;
  readonly leaseMs: number;
  readonly waitMs: number;
  readonly waited: boolean;
  readonly reads: boolean;
  /** When the wait times out, in ms since the epoch. */
  readonly deadline: number;
  readonly signal: AbortSignal | undefined;
  /** Queue at the front: the acquire's first claim was just refused, so it came before the rest. */
  readonly first: boolean;
}

/**
 * Queues a waiter on `slot`, with a timer for its deadline and a listener on its signal; both
 * go once it settles. `left` runs after a timeout or an abort took it out of the queue.
 */
export function queueWaiter(
  slot: Slot,
  init: WaiterInit,
  left: (wasHead: boolean) => void,
): Promise<LockedRecord> {
  return new Promise<LockedRecord>((resolve, reject) => {
    const { signal, waitMs } = init;
    const leave = (error: unknown) => {
      if (waiter.settled) return;
      const index = slot.queue.indexOf(waiter);
      if (index !== -1) slot.queue.splice(index, 1);
      settleWaiter(waiter, error);
      left(index === 0);
    };
    const onAbort = () => leave(signal?.reason);
    // waitMs 0 still makes one claim: the timer only ends waits that had to pause.
    const timer =
      waitMs === 0
        ? undefined
        : setTimeout(() => leave(lockTimeout(waitMs)), Math.max(0, init.deadline - Date.now()));
    const waiter: Waiter = {
      id: init.id,
      leaseMs: init.leaseMs,
      once: waitMs === 0,
      waited: init.waited,
      reads: init.reads,
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
    if (init.first) slot.queue.unshift(waiter);
    else slot.queue.push(waiter);
  });
}

/** How `claimWithin` rejects when the acquire left before its claim answered. */
export class LeftBeforeClaimed {
  readonly reason: unknown;

  constructor(reason: unknown) {
    this.reason = reason;
  }
}

/**
 * An asynchronous claim, given up with `LeftBeforeClaimed` once `deadline` passes (none for
 * `waitMs: 0`), the acquire's `signal` aborts, or its lock manager closes (which calls what
 * this puts in `closing`): a backend that stops answering cannot outlast `waitMs`, nor make an
 * acquire outlast a close. `late` gets the claim's outcome (`undefined` if it failed) when it
 * settles after that.
 */
export function claimWithin(
  claimed: Promise<ClaimResult>,
  waitMs: number,
  deadline: number,
  { signal, closing }: { signal: AbortSignal | undefined; closing: Set<(reason: unknown) => void> },
  late: (outcome: ClaimResult | undefined) => void,
): Promise<ClaimResult> {
  return new Promise<ClaimResult>((resolve, reject) => {
    let left = false;
    const leave = (reason: unknown) => {
      if (left) return;
      left = true;
      settled();
      reject(new LeftBeforeClaimed(reason));
    };
    const onAbort = () => leave(signal?.reason);
    const timer =
      waitMs === 0
        ? undefined
        : setTimeout(() => leave(lockTimeout(waitMs)), Math.max(0, deadline - Date.now()));
    const settled = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      closing.delete(leave);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    closing.add(leave);
    claimed.then(
      (outcome) => {
        if (left) return late(outcome);
        settled();
        resolve(outcome);
      },
      (error: unknown) => {
        if (left) return late(undefined);
        settled();
        reject(error);
      },
    );
  });
}
