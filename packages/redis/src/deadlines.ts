import { SessionError } from '@sessile/core';

/** Operations that started within one window share a deadline. */
interface Window {
  /** When this window's operations fail: its close plus the timeout. */
  readonly deadline: number;
  readonly closesAt: number;
  /** The unsettled operations, oldest first. */
  first: Waiting | undefined;
  last: Waiting | undefined;
}

/**
 * One unsettled operation, linked into its window's list: settling unlinks it with a few writes,
 * cheaper per command than hashing it into a Map and out again.
 */
interface Waiting {
  /** Undefined once the operation left its window: settled, or failed for want of an answer. */
  window: Window | undefined;
  previous: Waiting | undefined;
  next: Waiting | undefined;
  readonly action: string;
  readonly reject: (error: unknown) => void;
}

/** What `capture` took from the last promise made with it, read at once by its maker. */
let capturedResolve: (value: never) => void = () => {};
let capturedReject: (error: unknown) => void = () => {};

/** A promise's executor that needs no closure of its own per promise. */
function capture(resolve: (value: never) => void, reject: (error: unknown) => void): void {
  capturedResolve = resolve;
  capturedReject = reject;
}

/** Takes `waiting` out of its window's list; false when it had left already. */
function unlink(waiting: Waiting): boolean {
  const window = waiting.window;
  if (window === undefined) return false;
  waiting.window = undefined;
  const { previous, next } = waiting;
  if (previous === undefined) window.first = next;
  else previous.next = next;
  if (next === undefined) window.last = previous;
  else next.previous = previous;
  return true;
}

/**
 * Fails operations that run past one timeout, with one timer for all of them. A timer per
 * command (node-redis's `timeout` option, which also stops counting once the command is sent)
 * costs most of a GET's throughput. Operations leave their window as soon as they settle, so
 * the bookkeeping dies young and stays out of the old generation.
 */
export class Deadlines {
  readonly #timeoutMs: number;
  readonly #windowMs: number;
  readonly #where: string;
  readonly #failure: (action: string, error: unknown) => unknown;
  readonly #windows: Window[] = [];
  #timer: NodeJS.Timeout | undefined;
  #overdue = 0;
  #abort: DropSignal | undefined;

  /** `failure` maps an operation's own errors to what its caller gets. */
  constructor(
    timeoutMs: number,
    where: string,
    failure: (action: string, error: unknown) => unknown,
  ) {
    this.#timeoutMs = timeoutMs;
    this.#windowMs = Math.max(5, Math.min(250, timeoutMs / 4));
    this.#where = where;
    this.#failure = failure;
  }

  /**
   * Settles with `operation`, or rejects once `timeoutMs` passed. `map`, when given, turns the
   * operation's value into the answer within the same step, sparing a promise of its own; what
   * it throws rejects the answer as it is.
   */
  run<T, R = T>(action: string, operation: Promise<T>, map?: (value: T) => R): Promise<R> {
    const window = this.#current();
    const promise = new Promise<R>(capture);
    const resolve = capturedResolve as (value: R) => void;
    const reject = capturedReject;
    const waiting: Waiting = { window, previous: window.last, next: undefined, action, reject };
    if (window.last === undefined) window.first = waiting;
    else window.last.next = waiting;
    window.last = waiting;
    operation.then(
      (value) => {
        if (!unlink(waiting)) {
          this.#overdue--;
          return;
        }
        if (map === undefined) {
          resolve(value as unknown as R);
          return;
        }
        try {
          resolve(map(value));
        } catch (error) {
          reject(error);
        }
      },
      (error: unknown) => {
        if (unlink(waiting)) reject(this.#failure(action, error));
        else this.#overdue--;
      },
    );
    return promise;
  }

  /**
   * Aborts when an operation next fails for want of an answer (or `dropWaiting` is called). A
   * command sent with it that is still waiting to be written then (in a client's offline queue,
   * behind a socket a hung server no longer reads, or in a Sentinel client's wait for its
   * primary) is dropped, so no write that was reported failed reaches Redis later. The abort
   * comes before the rejections, in the same turn.
   */
  get signal(): AbortSignal {
    this.#abort ??= new DropSignal();
    return this.#abort.signal;
  }

  /** True while an operation has neither settled nor failed for want of an answer. */
  get busy(): boolean {
    for (const window of this.#windows) if (window.first !== undefined) return true;
    return false;
  }

  /** Operations that failed for want of an answer and are still waiting for it: the server may be hung. */
  get overdue(): number {
    return this.#overdue;
  }

  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #current(): Window {
    const now = performance.now();
    const last = this.#windows[this.#windows.length - 1];
    if (last !== undefined && last.closesAt > now) return last;
    const closesAt = now + this.#windowMs;
    const window: Window = {
      closesAt,
      deadline: closesAt + this.#timeoutMs,
      first: undefined,
      last: undefined,
    };
    this.#windows.push(window);
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#check(), this.#windowMs);
      this.#timer.unref();
    }
    return window;
  }

  /**
   * Fails at once the operations already past their deadline, as the timer would on its next
   * tick: for a moment when commands still waiting are about to be written (a reconnect).
   */
  expireOverdue(): void {
    if (this.#windows.length > 0) this.#check();
  }

  /** Aborts `signal` and starts a new one for the commands sent from now on. */
  dropWaiting(): void {
    this.#abort?.abort();
    this.#abort = undefined;
  }

  #check(): void {
    const now = performance.now();
    const windows = this.#windows;
    while (windows.length > 0) {
      const oldest = windows[0] as Window;
      if (oldest.first !== undefined && oldest.deadline > now) break;
      windows.shift();
      if (oldest.first !== undefined) this.dropWaiting();
      for (let waiting = oldest.first; waiting !== undefined; waiting = oldest.first) {
        unlink(waiting);
        this.#overdue++;
        waiting.reject(noAnswer(this.#where, waiting.action, this.#timeoutMs));
      }
    }
    if (windows.length === 0) this.close();
  }
}

type AbortListener = ((event: Event) => void) | { handleEvent(event: Event): void };

/**
 * An `AbortSignal` whose listeners (node-redis's, one per command still waiting to be written)
 * are kept in a list of its own, in the order they came, and called last added first when it
 * aborts.
 *
 * The order matters: node-redis 5 (to 5.12.4 at least; fixed upstream by redis/node-redis#3320)
 * unlinks an aborted command from its write queue without fixing the next command's link back
 * when the aborted one was first in the queue. Aborting the queue from its head leaves the
 * queue's tail pointing at a command already dropped once the last one goes, and every
 * command the client takes from then on, the app's own included, is queued where nothing
 * writes it: until a reconnect, which a hung server that starts reading again never causes.
 * Dropped from the tail backwards, each command unlinked is the queue's last, which that code
 * gets right (a command the app aborts itself on the same client can still meet the bug).
 *
 * It also keeps each command's cost low. An `EventTarget` walks its whole listener list on every
 * `addEventListener` (for duplicates), so a burst of commands would cost the square of its size.
 * A `Set` that takes and drops a listener per command kept them alive long enough to reach the
 * old generation: creates at 64 in flight spent 5 µs each in garbage collection against 1.7 µs
 * with this list. Commands are written in the order they were queued, so the listener removed
 * is nearly always the list's first. The signal is still a real `AbortSignal` (`aborted`,
 * `reason`), with its own `addEventListener` and `removeEventListener` for the 'abort' event, the
 * only ones node-redis calls.
 */
class DropSignal {
  readonly signal: AbortSignal;
  readonly #controller = new AbortController();
  /** The listeners from `#first` on, oldest first; a removed one leaves a hole until it is passed. */
  #listeners: (AbortListener | undefined)[] = [];
  #first = 0;

  constructor() {
    const signal = this.#controller.signal;
    const add = signal.addEventListener.bind(signal);
    const remove = signal.removeEventListener.bind(signal);
    Object.defineProperties(signal, {
      addEventListener: {
        value: (type: string, listener: AbortListener | null, options?: unknown) => {
          if (type !== 'abort' || listener === null)
            return add(type, listener as never, options as never);
          if (!signal.aborted) this.#listeners.push(listener);
        },
      },
      removeEventListener: {
        value: (type: string, listener: AbortListener | null, options?: unknown) => {
          if (type !== 'abort' || listener === null)
            return remove(type, listener as never, options as never);
          this.#remove(listener);
        },
      },
    });
    this.signal = signal;
  }

  #remove(listener: AbortListener): void {
    const listeners = this.#listeners;
    const at = listeners.indexOf(listener, this.#first);
    if (at < 0) return;
    listeners[at] = undefined;
    if (at !== this.#first) return;
    let first = at + 1;
    while (first < listeners.length && listeners[first] === undefined) first++;
    if (first === listeners.length) {
      listeners.length = 0;
      first = 0;
    } else if (first >= 1024 && first * 2 >= listeners.length) {
      listeners.splice(0, first);
      first = 0;
    }
    this.#first = first;
  }

  abort(): void {
    if (this.signal.aborted) return;
    this.#controller.abort();
    const listeners = this.#listeners;
    const first = this.#first;
    this.#listeners = [];
    this.#first = 0;
    const event = new Event('abort');
    for (let at = listeners.length - 1; at >= first; at--) {
      const listener = listeners[at];
      if (listener === undefined) continue;
      if (typeof listener === 'function') listener.call(this.signal, event);
      else listener.handleEvent(event);
    }
  }
}

/** What an operation or a step of `open` rejects with when Redis did not answer in time. */
export function noAnswer(where: string, action: string, timeoutMs: number): SessionError {
  return new SessionError(
    'ERR_STORE_IO',
    `${where}: ${action} got no answer within commandTimeoutMs (${timeoutMs} ms)`,
  );
}
