import { setMaxListeners } from 'node:events';
import { SessionError } from '@sessile/core';

/** Operations that started within one window share a deadline. */
interface Window {
  /** When this window's operations fail: its close plus the timeout. */
  readonly deadline: number;
  readonly closesAt: number;
  /** The unsettled operations' reject functions, each with its action's name. */
  readonly pending: Map<(error: unknown) => void, string>;
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
  #abort: AbortController | undefined;

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
    const pending = this.#current().pending;
    const failure = this.#failure;
    return new Promise<R>((resolve, reject) => {
      pending.set(reject, action);
      operation.then(
        (value) => {
          if (!pending.delete(reject)) {
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
          if (pending.delete(reject)) reject(failure(action, error));
          else this.#overdue--;
        },
      );
    });
  }

  /**
   * Aborts when an operation next fails for want of an answer. A command sent with it that is
   * still waiting to be written then (in a client's offline queue, or a Sentinel client's wait
   * for its primary) is dropped, so no write that was reported failed reaches Redis later.
   */
  get signal(): AbortSignal {
    if (this.#abort === undefined) {
      this.#abort = new AbortController();
      // Every command waiting to be written listens; Node would warn past 10.
      setMaxListeners(0, this.#abort.signal);
    }
    return this.#abort.signal;
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
    const window: Window = { closesAt, deadline: closesAt + this.#timeoutMs, pending: new Map() };
    this.#windows.push(window);
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#check(), this.#windowMs);
      this.#timer.unref();
    }
    return window;
  }

  /** Aborts `signal` and starts a new one for the commands sent from now on. */
  #dropWaiting(): void {
    this.#abort?.abort();
    this.#abort = undefined;
  }

  #check(): void {
    const now = performance.now();
    const windows = this.#windows;
    while (windows.length > 0) {
      const oldest = windows[0] as Window;
      if (oldest.pending.size > 0 && oldest.deadline > now) break;
      windows.shift();
      if (oldest.pending.size > 0) this.#dropWaiting();
      for (const [reject, action] of oldest.pending) {
        oldest.pending.delete(reject);
        this.#overdue++;
        reject(noAnswer(this.#where, action, this.#timeoutMs));
      }
    }
    if (windows.length === 0) this.close();
  }
}

/** What an operation or a step of `open` rejects with when Redis did not answer in time. */
export function noAnswer(where: string, action: string, timeoutMs: number): SessionError {
  return new SessionError(
    'ERR_STORE_IO',
    `${where}: ${action} got no answer within commandTimeoutMs (${timeoutMs} ms)`,
  );
}
