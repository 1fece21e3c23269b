import { SessionError } from '@sessile/core';

interface Pending {
  readonly action: string;
  readonly deadline: number;
  settled: boolean;
  fail(error: SessionError): void;
}

/**
 * Fails operations that run past one timeout, with one timer for all of them: a timer per
 * command (node-redis's `timeout` command option) costs about two thirds of a GET's throughput.
 * With one timeout for all, operations end their deadlines in the order they started.
 */
export class Deadlines {
  readonly #timeoutMs: number;
  readonly #where: string;
  readonly #queue: Pending[] = [];
  #head = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(timeoutMs: number, where: string) {
    this.#timeoutMs = timeoutMs;
    this.#where = where;
  }

  /** Settles with `operation`, or rejects once `timeoutMs` passed; `failure` maps its errors. */
  run<T>(action: string, operation: Promise<T>, failure: (error: unknown) => unknown): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = {
        action,
        deadline: performance.now() + this.#timeoutMs,
        settled: false,
        fail: (error) => {
          if (pending.settled) return;
          pending.settled = true;
          reject(error);
        },
      };
      this.#queue.push(pending);
      this.#arm();
      operation.then(
        (value) => {
          if (pending.settled) return;
          pending.settled = true;
          resolve(value);
        },
        (error: unknown) => {
          if (pending.settled) return;
          pending.settled = true;
          reject(failure(error));
        },
      );
    });
  }

  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #arm(): void {
    if (this.#timer !== undefined) return;
    const every = Math.max(5, Math.min(250, this.#timeoutMs / 4));
    this.#timer = setInterval(() => this.#check(), every);
    this.#timer.unref();
  }

  #check(): void {
    const now = performance.now();
    const queue = this.#queue;
    while (this.#head < queue.length) {
      const pending = queue[this.#head] as Pending;
      if (!pending.settled && pending.deadline > now) break;
      if (!pending.settled) {
        pending.fail(
          new SessionError(
            'ERR_STORE_IO',
            `${this.#where}: ${pending.action} got no answer within commandTimeoutMs (${this.#timeoutMs} ms)`,
          ),
        );
      }
      this.#head++;
    }
    if (this.#head === queue.length) {
      queue.length = 0;
      this.#head = 0;
      this.close();
    } else if (this.#head > 1024) {
      queue.splice(0, this.#head);
      this.#head = 0;
    }
  }
}
