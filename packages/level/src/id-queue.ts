/**
 * Serializes the read-check-write steps of operations on the same session id within this
 * process, because LevelDB has no transactions. Different ids never wait for each other, and
 * an id's entry is freed when its last operation finishes.
 */
export class IdQueue {
  readonly #tails = new Map<string, Promise<void>>();

  /** Runs `operation` once every earlier operation on `id` has finished. */
  async run<T>(id: string, operation: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(id);
    let release!: () => void;
    const tail = new Promise<void>((resolve) => (release = resolve));
    this.#tails.set(id, tail);
    try {
      if (previous !== undefined) await previous;
      return await operation();
    } finally {
      if (this.#tails.get(id) === tail) this.#tails.delete(id);
      release();
    }
  }

  /**
   * Runs `operation` once every earlier operation on any of `ids` has finished. All ids are
   * queued in the same tick, so two such calls can never wait for each other in a cycle.
   */
  async runAll<T>(ids: Iterable<string>, operation: () => Promise<T>): Promise<T> {
    let release!: () => void;
    const tail = new Promise<void>((resolve) => (release = resolve));
    const held: string[] = [];
    const previous: Promise<void>[] = [];
    for (const id of new Set(ids)) {
      const before = this.#tails.get(id);
      if (before !== undefined) previous.push(before);
      this.#tails.set(id, tail);
      held.push(id);
    }
    try {
      if (previous.length > 0) await Promise.all(previous);
      return await operation();
    } finally {
      for (const id of held) if (this.#tails.get(id) === tail) this.#tails.delete(id);
      release();
    }
  }

  /** Ids with an operation running or waiting. */
  get size(): number {
    return this.#tails.size;
  }
}
