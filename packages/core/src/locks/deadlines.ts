import { MAX_TIMER_MS } from '../util.js';

/**
 * Callbacks due at a time, served by one timer armed for the earliest. Adding a callback due
 * later than the armed time, and removing one, touch only a `Map`: a lock held for a few
 * milliseconds of a 30-second lease costs no timer of its own. The timer is never cleared early;
 * when it fires with nothing due it re-arms for what is left, or stops.
 */
export class Deadlines {
  readonly #dueAt = new Map<() => void, number>();
  #timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires; `Infinity` while none is armed. */
  #armedFor = Number.POSITIVE_INFINITY;

  /** Calls `callback` once at `dueAt` (ms since the epoch), replacing its earlier due time. */
  set(callback: () => void, dueAt: number): void {
    this.#dueAt.set(callback, dueAt);
    if (dueAt < this.#armedFor) this.#arm(dueAt);
  }

  delete(callback: () => void): void {
    this.#dueAt.delete(callback);
  }

  #arm(dueAt: number): void {
    clearTimeout(this.#timer);
    this.#armedFor = dueAt;
    const delayMs = Math.min(MAX_TIMER_MS, Math.max(0, dueAt - Date.now()));
    this.#timer = setTimeout(() => this.#fire(), delayMs);
    this.#timer.unref();
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedFor = Number.POSITIVE_INFINITY;
    const now = Date.now();
    const due: Array<() => void> = [];
    let next = Number.POSITIVE_INFINITY;
    for (const [callback, dueAt] of this.#dueAt) {
      if (dueAt <= now) {
        due.push(callback);
        this.#dueAt.delete(callback);
      } else if (dueAt < next) {
        next = dueAt;
      }
    }
    if (next !== Number.POSITIVE_INFINITY) this.#arm(next);
    // Called after re-arming: a callback may set itself again.
    for (const callback of due) {
      try {
        callback();
      } catch (error) {
        // Fails the way a timer of its own would have, without skipping the others due now.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
