/** The most calls one batched statement carries. */
const MAX_BATCH = 100;

/** One kind of call that can be sent alone or many at once, each call on one id. */
export interface BatchKind<C, R> {
  /** One call, as its own statement: the path when the store is not busy. */
  one(call: C): Promise<R>;
  /** Many calls on distinct ids as one statement; the results in the calls' order. */
  many(calls: C[]): Promise<R[]>;
}

interface Waiting {
  kind: BatchKind<unknown, unknown>;
  id: string;
  call: unknown;
  resolve(result: unknown): void;
  reject(error: unknown): void;
}

/**
 * Coalesces concurrent calls into fewer statements. While fewer than `slots` statements are in
 * flight a call is sent at once, alone, so an idle store adds no wait. Past that, calls queue, and
 * each freed slot sends every queued call of the oldest call's kind as one statement (one round
 * trip, one commit), at most one call per id, so a statement never touches a row twice.
 */
export class Batches {
  readonly #slots: number;
  readonly #queue: Waiting[] = [];
  #inFlight = 0;

  constructor(slots: number) {
    this.#slots = slots;
  }

  run<C, R>(kind: BatchKind<C, R>, id: string, call: C): Promise<R> {
    if (this.#inFlight < this.#slots && this.#queue.length === 0) {
      this.#inFlight++;
      return kind.one(call).finally(() => this.#release());
    }
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({
        kind: kind as BatchKind<unknown, unknown>,
        id,
        call,
        resolve: resolve as (result: unknown) => void,
        reject,
      });
    });
  }

  #release(): void {
    this.#inFlight--;
    const head = this.#queue[0];
    if (head === undefined) return;
    const ids = new Set<string>();
    const batch: Waiting[] = [];
    const rest: Waiting[] = [];
    for (const waiting of this.#queue) {
      if (waiting.kind === head.kind && batch.length < MAX_BATCH && !ids.has(waiting.id)) {
        ids.add(waiting.id);
        batch.push(waiting);
      } else {
        rest.push(waiting);
      }
    }
    this.#queue.splice(0, this.#queue.length, ...rest);
    this.#inFlight++;
    const sent =
      batch.length === 1
        ? head.kind.one(head.call).then((result) => [result])
        : head.kind.many(batch.map((waiting) => waiting.call));
    sent
      .then(
        (results) => {
          batch.forEach((waiting, i) => {
            waiting.resolve(results[i]);
          });
        },
        (error: unknown) => {
          for (const waiting of batch) waiting.reject(error);
        },
      )
      .finally(() => this.#release());
  }
}
