import type { CommandArgument, Send } from './connection.js';

/** Keys one `MGET` reads at most, so one command never holds Redis for long. */
const MAX_BATCH = 128;

interface Pending {
  readonly key: string;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/**
 * The record reads started in one turn of the event loop, sent as one `MGET` where every key
 * lives on one server (not a cluster). Each command costs node-redis a promise, an encoding and
 * a parse of its own, and Redis a dispatch: a read of a small session costs node-redis about as
 * much CPU as everything else on its way, and one `MGET` spreads that over the turn's reads. A
 * read waits at most for the end of the turn it started in.
 *
 * `MGET` answers nil for a key that holds another type as for a missing key, where `GET` answers
 * `WRONGTYPE` (which the store reports as a corrupt record): a nil is asked again by `GET`, so
 * only a read of an absent session pays a second command. That `GET` may come after writes
 * called after the read; the read answers as of its `MGET` all the same: absent, unless the key
 * holds another type.
 */
export class ReadBatches {
  readonly #send: Send;
  #queue: Pending[] = [];

  constructor(send: Send) {
    this.#send = send;
  }

  /** Resolves with `GET key`'s reply. */
  get(key: string): Promise<unknown> {
    return new Promise((resolve, reject) => {
      // After this turn's promise callbacks, so every read they start joins the same command.
      if (this.#queue.length === 0) process.nextTick(this.#flushLater);
      this.#queue.push({ key, resolve, reject });
    });
  }

  readonly #flushLater = () => this.flush();

  /**
   * Sends the reads queued so far, at once: the connection calls it before it sends any other
   * command, so that commands reach Redis in the order they were called (a `get` then a `set`
   * of one session, started in one turn, reads what was there before the `set`).
   */
  flush(): void {
    const queue = this.#queue;
    if (queue.length === 0) return;
    this.#queue = [];
    if (queue.length <= MAX_BATCH) {
      this.#run(queue);
      return;
    }
    for (let start = 0; start < queue.length; start += MAX_BATCH) {
      this.#run(queue.slice(start, start + MAX_BATCH));
    }
  }

  #run(batch: Pending[]): void {
    const first = batch[0] as Pending;
    if (batch.length === 1) {
      this.#getOne(first);
      return;
    }
    const words: CommandArgument[] = ['MGET'];
    for (const pending of batch) words.push(pending.key);
    this.#send(first.key, words).then(
      (replies) => {
        const values = replies as unknown[];
        for (let i = 0; i < batch.length; i++) {
          const pending = batch[i] as Pending;
          const value = values[i];
          if (value === null || value === undefined) this.#recheck(pending);
          else pending.resolve(value);
        }
      },
      (error: unknown) => {
        for (const pending of batch) pending.reject(error);
      },
    );
  }

  #getOne(pending: Pending): void {
    this.#send(pending.key, ['GET', pending.key]).then(pending.resolve, pending.reject);
  }

  /**
   * A key `MGET` answered nil for: absent, or `WRONGTYPE` when it holds another type. A string
   * there now was written after the `MGET`, by a call made after this read, perhaps this
   * process's own: the read answers absent, as it would have alone.
   */
  #recheck(pending: Pending): void {
    this.#send(pending.key, ['GET', pending.key]).then(() => pending.resolve(null), pending.reject);
  }
}
