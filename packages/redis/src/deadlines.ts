import { SessionError } from '@sessile/core';

interface Pending {
  readonly action: string;
  fail(error: SessionError): void;
}

/** Operations that started within one window share a deadline. */
interface Window {
  /** When this window's operations fail: its close plus the timeout. */
  readonly deadline: number;
  readonly closesAt: number;
  readonly pending: Set<Pending>;
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
  readonly #windows: Window[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(timeoutMs: number, where: string) {
    this.#timeoutMs = timeoutMs;
    this.#windowMs = Math.max(5, Math.min(250, timeoutMs / 4));
    this.#where = where;
  }

  /** Settles with `operation`, or rejects once `timeoutMs` passed; `failure` maps its errors. */
  run<T>(action: string, operation: Promise<T>, failure: (error: unknown) => unknown): Promise<T> {
    const window = this.#current();
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = {
        action,
        fail(error) {
          window.pending.delete(pending);
          reject(error);
        },
      };
      window.pending.add(pending);
      operation.then(
        (value) => {
          if (window.pending.delete(pending)) resolve(value);
        },
        (error: unknown) => {
          if (window.pending.delete(pending)) reject(failure(error));
        },
      );
    });
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
    const window: Window = { closesAt, deadline: closesAt + this.#timeoutMs, pending: new Set() };
    this.#windows.push(window);
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#check(), this.#windowMs);
      this.#timer.unref();
    }
    return window;
  }

  #check(): void {
    const now = performance.now();
    const windows = this.#windows;
    while (windows.length > 0) {
      const oldest = windows[0] as Window;
      if (oldest.pending.size > 0 && oldest.deadline > now) break;
      windows.shift();
      for (const pending of oldest.pending) {
        pending.fail(
          new SessionError(
            'ERR_STORE_IO',
            `${this.#where}: ${pending.action} got no answer within commandTimeoutMs (${this.#timeoutMs} ms)`,
          ),
        );
      }
    }
    if (windows.length === 0) this.close();
  }
}
