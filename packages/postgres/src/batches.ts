/** The most calls one batched statement carries. */
const MAX_BATCH = 100;
/**
 * The most record bytes one batched statement carries. node-postgres sends an array parameter as
 * text, two characters per byte, and a string past V8's limit (about 512 MiB) fails the whole
 * batch; a call bigger than this goes alone, its bytes sent as binary.
 */
const MAX_BATCH_BYTES = 16 * 1024 * 1024;

/** One kind of call that can be sent alone or many at once, each call on one id. */
export interface BatchKind<C, R> {
  /** One call, as its own statement: the path when the store is not busy. */
  one(call: C): Promise<R>;
  /** Many calls on distinct ids as one statement; the results in the calls' order. Without it, every call goes alone. */
  many?(calls: C[]): Promise<R[]>;
  /** The bytes a call adds to a batched statement's parameters, counted against `MAX_BATCH_BYTES`. */
  bytesOf?(call: C): number;
  /** Reads of one id commute, so they may run at once; any other call waits for the id's earlier calls. */
  readOnly?: boolean;
  /** A call on every id (`clear`): it waits for every earlier call, and every later call for it. */
  everyId?: boolean;
}

interface Waiting {
  kind: BatchKind<unknown, unknown>;
  id: string;
  call: unknown;
  /** When a queued call gives up, in `performance.now()` time. */
  deadline: number;
  resolve(result: unknown): void;
  reject(error: unknown): void;
}

/** No queued call ahead: what a call arriving at an empty queue is checked against. */
const NOTHING_BEHIND: ReadonlyMap<string, boolean> = new Map();

/** Statements in flight on one id, and how many of them write. */
interface Running {
  statements: number;
  writes: number;
}

/**
 * Coalesces concurrent calls into fewer statements. While fewer than `slots` statements are in
 * flight a call is sent at once, alone, so an idle store adds no wait. Past that, calls queue, and
 * each freed slot sends every queued call of the oldest ready call's kind as one statement (one
 * round trip, one commit), at most one call per id, so a statement never touches a row twice.
 * Calls on one id apply in the order they were made, as they would on one connection: a call
 * waits until every earlier call on its id has settled (reads only for earlier writes), so a
 * later write can never overtake an earlier one on another connection.
 */
export class Batches {
  readonly #slots: number;
  readonly #timeoutMs: number;
  readonly #timedOut: () => Error;
  readonly #queue: Waiting[] = [];
  readonly #running = new Map<string, Running>();
  #everyIdRunning = false;
  #inFlight = 0;
  /** One timer for the oldest queued call's deadline: the queue is in the order calls were made. */
  #expiry: ReturnType<typeof setTimeout> | undefined;

  /** A queued call rejects with `timedOut()` once `timeoutMs` passed since it was made. */
  constructor(slots: number, timeoutMs: number, timedOut: () => Error) {
    this.#slots = slots;
    this.#timeoutMs = timeoutMs;
    this.#timedOut = timedOut;
  }

  run<C, R>(kind: BatchKind<C, R>, id: string, call: C): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const waiting: Waiting = {
        kind: kind as BatchKind<unknown, unknown>,
        id,
        call,
        deadline: 0,
        resolve: resolve as (result: unknown) => void,
        reject,
      };
      // An idle store sends at once, with no queue to scan: its statement has its own deadline.
      if (
        this.#queue.length === 0 &&
        this.#inFlight < this.#slots &&
        this.#mayStart(waiting, NOTHING_BEHIND)
      ) {
        this.#send([waiting]);
        return;
      }
      waiting.deadline = performance.now() + this.#timeoutMs;
      this.#queue.push(waiting);
      this.#dispatch();
      this.#armExpiry();
    });
  }

  #armExpiry(): void {
    const oldest = this.#queue[0];
    if (this.#expiry !== undefined || oldest === undefined) return;
    const delay = Math.max(0, oldest.deadline - performance.now());
    this.#expiry = setTimeout(() => this.#expire(), delay);
  }

  #expire(): void {
    this.#expiry = undefined;
    this.#dispatch();
    this.#armExpiry();
  }

  /** Rejects the queued calls whose deadline passed, oldest first, so none is sent late. */
  #dropOverdue(): void {
    const queue = this.#queue;
    if (queue.length === 0 || (queue[0] as Waiting).deadline > performance.now()) return;
    const now = performance.now();
    while (queue.length > 0 && (queue[0] as Waiting).deadline <= now) {
      (queue.shift() as Waiting).reject(this.#timedOut());
    }
  }

  #dispatch(): void {
    this.#dropOverdue();
    while (this.#inFlight < this.#slots) {
      const batch = this.#nextBatch();
      if (batch === undefined) return;
      this.#send(batch);
    }
  }

  /** Takes the oldest call that may start, and the queued calls of its kind that may join it. */
  #nextBatch(): Waiting[] | undefined {
    // Ids with a call left in the queue, mapped to whether one of those calls writes.
    const behind = new Map<string, boolean>();
    let everyIdBehind = false;
    const batch: Waiting[] = [];
    const ids = new Set<string>();
    const rest: Waiting[] = [];
    let bytes = 0;
    for (const waiting of this.#queue) {
      const size = waiting.kind.bytesOf?.(waiting.call) ?? 0;
      const joins =
        !everyIdBehind &&
        this.#mayStart(waiting, behind) &&
        (batch.length === 0 ||
          (waiting.kind === batch[0]?.kind &&
            waiting.kind.many !== undefined &&
            batch.length < MAX_BATCH &&
            bytes + size <= MAX_BATCH_BYTES &&
            !ids.has(waiting.id)));
      if (joins) {
        batch.push(waiting);
        ids.add(waiting.id);
        bytes += size;
      } else {
        rest.push(waiting);
        everyIdBehind ||= waiting.kind.everyId === true;
        behind.set(waiting.id, behind.get(waiting.id) === true || waiting.kind.readOnly !== true);
      }
    }
    if (batch.length === 0) return undefined;
    this.#queue.splice(0, this.#queue.length, ...rest);
    return batch;
  }

  /** Whether no earlier call on the call's id, in flight or still queued, must come first. */
  #mayStart(waiting: Waiting, behind: ReadonlyMap<string, boolean>): boolean {
    if (this.#everyIdRunning) return false;
    if (waiting.kind.everyId === true) return this.#running.size === 0 && behind.size === 0;
    const running = this.#running.get(waiting.id);
    if (waiting.kind.readOnly === true) {
      return (running?.writes ?? 0) === 0 && behind.get(waiting.id) !== true;
    }
    return running === undefined && !behind.has(waiting.id);
  }

  #send(batch: Waiting[]): void {
    const kind = batch[0]?.kind as BatchKind<unknown, unknown>;
    const writes = kind.readOnly === true ? 0 : 1;
    this.#inFlight++;
    if (kind.everyId === true) this.#everyIdRunning = true;
    for (const waiting of batch) {
      const running = this.#running.get(waiting.id) ?? { statements: 0, writes: 0 };
      running.statements++;
      running.writes += writes;
      this.#running.set(waiting.id, running);
    }
    let sent: Promise<unknown[]>;
    try {
      sent =
        kind.many === undefined || batch.length === 1
          ? kind.one((batch[0] as Waiting).call).then((result) => [result])
          : kind.many(batch.map((waiting) => waiting.call));
    } catch (error) {
      sent = Promise.reject(error);
    }
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
      .finally(() => {
        for (const waiting of batch) {
          const running = this.#running.get(waiting.id) as Running;
          running.statements--;
          running.writes -= writes;
          if (running.statements === 0) this.#running.delete(waiting.id);
        }
        if (kind.everyId === true) this.#everyIdRunning = false;
        this.#inFlight--;
        this.#dispatch();
      });
  }
}
