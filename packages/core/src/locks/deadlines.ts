import { MAX_TIMER_MS } from '../util.js';

/** A callback that a `Deadlines` calls once when it comes due. */
export class Deadline {
  /** When it is due, in ms since the epoch; `Infinity` while not booked. */
  dueAt = Number.POSITIVE_INFINITY;
  /** True while in its `Deadlines`' list, booked or cancelled but not yet swept out. */
  listed = false;
  readonly callback: () => void;

  constructor(callback: () => void) {
    this.callback = callback;
  }
}

/** Cancelled entries a list may hold before it is compacted, if they are also half of it. */
const COMPACT_AFTER = 32;

/**
 * Deadlines served by one timer armed for the earliest. Booking one due later than the armed
 * time, and cancelling one, only write a field (no hashing, no timer): a lock held for a few
 * milliseconds of a 30-second lease costs no timer of its own. The timer is never cleared early;
 * when it fires with nothing due it re-arms for what is left, or stops.
 */
export class Deadlines {
  readonly #list: Deadline[] = [];
  /** Entries in `#list` that were cancelled and wait to be swept out. */
  #cancelled = 0;
  #timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires; `Infinity` while none is armed. */
  #armedFor = Number.POSITIVE_INFINITY;

  /** Books `deadline` for `dueAt` (ms since the epoch), replacing its earlier due time. */
  set(deadline: Deadline, dueAt: number): void {
    if (!deadline.listed) {
      deadline.listed = true;
      this.#list.push(deadline);
    } else if (deadline.dueAt === Number.POSITIVE_INFINITY) {
      this.#cancelled--;
    }
    deadline.dueAt = dueAt;
    if (dueAt < this.#armedFor) this.#arm(dueAt);
  }

  /** Cancels `deadline` if booked. */
  delete(deadline: Deadline): void {
    if (!deadline.listed || deadline.dueAt === Number.POSITIVE_INFINITY) return;
    deadline.dueAt = Number.POSITIVE_INFINITY;
    this.#cancelled++;
    if (this.#cancelled > COMPACT_AFTER && this.#cancelled * 2 > this.#list.length) {
      this.#sweep(Number.NEGATIVE_INFINITY);
    }
  }

  #arm(dueAt: number): void {
    clearTimeout(this.#timer);
    this.#armedFor = dueAt;
    const delayMs = Math.min(MAX_TIMER_MS, Math.max(0, dueAt - Date.now()));
    this.#timer = setTimeout(() => this.#fire(), delayMs);
    this.#timer.unref();
  }

  /** Drops cancelled entries and takes out those due by `now`; returns them and the next due time. */
  #sweep(now: number): { due: Deadline[]; next: number } {
    const list = this.#list;
    const due: Deadline[] = [];
    let next = Number.POSITIVE_INFINITY;
    let kept = 0;
    for (const deadline of list) {
      if (deadline.dueAt === Number.POSITIVE_INFINITY) {
        deadline.listed = false;
      } else if (deadline.dueAt <= now) {
        deadline.listed = false;
        deadline.dueAt = Number.POSITIVE_INFINITY;
        due.push(deadline);
      } else {
        if (deadline.dueAt < next) next = deadline.dueAt;
        list[kept++] = deadline;
      }
    }
    list.length = kept;
    this.#cancelled = 0;
    return { due, next };
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedFor = Number.POSITIVE_INFINITY;
    const { due, next } = this.#sweep(Date.now());
    if (next !== Number.POSITIVE_INFINITY) this.#arm(next);
    // Called after re-arming: a callback may book itself again.
    for (const deadline of due) {
      try {
        deadline.callback();
      } catch (error) {
        // Fails the way a timer of its own would have, without skipping the others due now.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
