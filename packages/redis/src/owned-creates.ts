import type { CommandArgument, Send } from './connection.js';
import { timeText } from './keys.js';
import { CREATE_OWNED } from './scripts.js';

/** Records one script call writes at most, so one call never holds Redis for long. */
const MAX_BATCH = 64;
/**
 * A turn's creates are split over up to this many calls, so Redis runs one while this process
 * sends the next and takes the last one's reply; a single call would leave each side idle while
 * the other works. Measured with 64 creates in flight: about 1.4× the rate of one call of 64.
 */
const CALLS_PER_TURN = 4;
/** A floor, so that a few creates are not split into calls of one or two: each call has its own fixed cost. */
const MIN_BATCH = 8;

interface Pending {
  readonly key: string;
  readonly index: string;
  readonly args: CommandArgument[];
  resolve(created: boolean): void;
  reject(error: unknown): void;
}

/**
 * New records with an owner, where each record and its owner's index share one server: the
 * creates started in one turn of the event loop go to Redis as one script call, which writes
 * each entry and then its record. A script call costs Redis several times a plain `SET`, and one
 * call for many creates keeps that off each one. A create is held back until the turn ends, so
 * the store makes it through `Connection.inOrder`: a later call on its id waits for its answer.
 */
export class OwnedCreates {
  readonly #send: Send;
  #queue: Pending[] = [];

  constructor(send: Send) {
    this.#send = send;
  }

  /**
   * Writes `value` under `key` unless a record is there, after adding `id` to the owner's
   * `index` at `indexedUntil`. Resolves with whether it wrote the record.
   */
  create(
    key: string,
    index: string,
    value: CommandArgument,
    expireAt: number,
    id: string,
    indexedUntil: number,
  ): Promise<boolean> {
    return new Promise((resolve, reject) => {
      // After this turn's promise callbacks, so every create they start joins the same call.
      if (this.#queue.length === 0) process.nextTick(() => this.#flush());
      const args = [value, timeText(expireAt), id, String(indexedUntil)];
      this.#queue.push({ key, index, args, resolve, reject });
    });
  }

  #flush(): void {
    const queue = this.#queue;
    this.#queue = [];
    const size = Math.min(MAX_BATCH, Math.max(MIN_BATCH, Math.ceil(queue.length / CALLS_PER_TURN)));
    for (let start = 0; start < queue.length; start += size) {
      this.#run(queue.slice(start, start + size));
    }
  }

  #run(batch: Pending[]): void {
    const keys: string[] = [];
    const args: CommandArgument[] = [];
    for (const pending of batch) {
      keys.push(pending.key, pending.index);
      args.push(...pending.args);
    }
    CREATE_OWNED.run(this.#send, keys, args).then(
      (reply) => {
        const answers = reply as unknown[];
        for (const [i, pending] of batch.entries()) {
          const answer = answers[i];
          // Anything but 1 or 0 is the error that stopped this create alone.
          if (answer === 1 || answer === 0) pending.resolve(answer === 1);
          else pending.reject(new Error(String(answer)));
        }
      },
      (error: unknown) => {
        for (const pending of batch) pending.reject(error);
      },
    );
  }
}
