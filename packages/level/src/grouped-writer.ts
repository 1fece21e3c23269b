import type { AbstractBatchOperation, AbstractLevel } from 'abstract-level';

type Bytes = Uint8Array<ArrayBufferLike>;
type Keyspace = AbstractLevel<unknown, Bytes, Bytes>;
export type Operation = AbstractBatchOperation<Keyspace, Bytes, Bytes>;

/** Wraps each commit, for example to reopen the database and try again after a write error. */
export type WriteGuard = (attempt: () => Promise<void>) => Promise<void>;

// A group stops taking writes past this many operations, so one LevelDB batch stays bounded.
const MAX_GROUP_OPERATIONS = 1024;
const MAX_GROUP_BYTES = 4 * 1024 * 1024;

interface Settle {
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** Writes that go to LevelDB in one batch, or one job that runs on its own (`task`). */
interface Group {
  operations: Operation[];
  bytes: number;
  settle: Settle[];
  task?: () => Promise<void>;
}

/**
 * Group commit: the writes that arrive while a LevelDB batch is being written (or in the same
 * tick) go together in the next batch, so a busy store pays one native call and one trip to
 * the thread pool per group instead of per write. Each write's operations stay in one batch,
 * so they remain atomic, and a write resolves only once its batch is in LevelDB. If a batch
 * fails, every write in it rejects with that error.
 *
 * It is also the store's only way to write: one group or job at a time, each through `guard`,
 * so nothing reaches LevelDB while an earlier write has failed and is being dealt with.
 */
export class GroupedWriter {
  readonly #db: Keyspace;
  readonly #guard: WriteGuard;
  readonly #queue: Group[] = [];
  #writing = false;

  constructor(db: Keyspace, guard: WriteGuard = (attempt) => attempt()) {
    this.#db = db;
    this.#guard = guard;
  }

  /** Writes `operations` atomically, together with other writes waiting at the same time. */
  write(operations: Operation[]): Promise<void> {
    return new Promise((resolve, reject) => {
      let group = this.#queue.at(-1);
      if (
        group === undefined ||
        group.task !== undefined ||
        group.operations.length >= MAX_GROUP_OPERATIONS ||
        group.bytes >= MAX_GROUP_BYTES
      ) {
        group = { operations: [], bytes: 0, settle: [] };
        this.#enqueue(group);
      }
      for (const operation of operations) {
        group.operations.push(operation);
        group.bytes += operation.key.byteLength;
        if (operation.type === 'put') group.bytes += operation.value.byteLength;
      }
      group.settle.push({ resolve, reject });
    });
  }

  /** Runs `task`, which writes to the database by other means, in turn with the batches. */
  exclusive(task: () => Promise<void>): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#enqueue({ operations: [], bytes: 0, settle: [{ resolve, reject }], task });
    });
  }

  #enqueue(group: Group): void {
    this.#queue.push(group);
    // Writes made in the rest of this tick join the group before it starts.
    if (!this.#writing) queueMicrotask(() => this.#next());
  }

  #next(): void {
    if (this.#writing) return;
    const group = this.#queue.shift();
    if (group === undefined) return;
    this.#writing = true;
    const attempt = group.task ?? (() => this.#commit(group.operations));
    let running: Promise<void>;
    try {
      running = this.#guard(attempt);
    } catch (error) {
      running = Promise.reject(error);
    }
    running.then(
      () => {
        this.#writing = false;
        this.#next();
        for (const { resolve } of group.settle) resolve();
      },
      (error: unknown) => {
        this.#writing = false;
        this.#next();
        for (const { reject } of group.settle) reject(error);
      },
    );
  }

  // A chained batch hands each key and value to LevelDB directly, which costs the main thread
  // less than an array batch whose operation objects are read property by property.
  async #commit(operations: Operation[]): Promise<void> {
    const batch = this.#db.batch();
    try {
      for (const operation of operations) {
        if (operation.type === 'put') batch.put(operation.key, operation.value);
        else batch.del(operation.key);
      }
    } catch (error) {
      await batch.close();
      throw error;
    }
    await batch.write();
  }
}
