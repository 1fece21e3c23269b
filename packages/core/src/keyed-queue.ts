/** One queued operation; `finished` exists only once a later operation waits for it. */
interface Slot {
  finished?: Promise<void>;
  release?: () => void;
}

/** The promise a later operation awaits, created only when one has to wait. */
function finishedOf(slot: Slot): Promise<void> {
  slot.finished ??= new Promise<void>((resolve) => (slot.release = resolve));
  return slot.finished;
}

/**
 * Per-key FIFO queues within one process: operations on one key run one at a time, in call
 * order, for backends without transactions or as the in-process half of a cross-process guard.
 * Different keys never wait for each other, a key's entry is freed when its last operation
 * finishes, and an operation nobody waits for allocates no promise of its own.
 */
export class KeyedQueue {
  // The last queued operation per key; every slot here is unfinished.
  readonly #tails = new Map<string, Slot>();

  /** Runs `operation` once every earlier operation on `id` has finished. */
  async run<T>(id: string, operation: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(id);
    const slot: Slot = {};
    this.#tails.set(id, slot);
    try {
      if (previous !== undefined) await finishedOf(previous);
      return await operation();
    } finally {
      if (this.#tails.get(id) === slot) this.#tails.delete(id);
      slot.release?.();
    }
  }

  /**
   * Runs `operation` once every earlier operation on any of `ids` has finished. All ids are
   * queued in the same tick, so two such calls can never wait for each other in a cycle.
   */
  async runAll<T>(ids: Iterable<string>, operation: () => Promise<T>): Promise<T> {
    const slot: Slot = {};
    const held: string[] = [];
    const previous: Promise<void>[] = [];
    for (const id of new Set(ids)) {
      const before = this.#tails.get(id);
      if (before !== undefined) previous.push(finishedOf(before));
      this.#tails.set(id, slot);
      held.push(id);
    }
    try {
      if (previous.length > 0) await Promise.all(previous);
      return await operation();
    } finally {
      for (const id of held) if (this.#tails.get(id) === slot) this.#tails.delete(id);
      slot.release?.();
    }
  }

  /**
   * A promise that settles once every operation on `id` queued so far has finished, or
   * `undefined` when none is running or waiting: a read that must see the writes made before it,
   * without holding up the writes made after it.
   */
  whenIdle(id: string): Promise<void> | undefined {
    const tail = this.#tails.get(id);
    return tail === undefined ? undefined : finishedOf(tail);
  }

  /** True while an operation on `key` is running or waiting. */
  has(key: string): boolean {
    return this.#tails.has(key);
  }

  /** Keys with an operation running or waiting. */
  get size(): number {
    return this.#tails.size;
  }

  /** Every key with an operation running or waiting. */
  keys(): string[] {
    return [...this.#tails.keys()];
  }
}
