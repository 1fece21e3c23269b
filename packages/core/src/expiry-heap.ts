interface Entry {
  expiresAt: number;
  id: string;
}

/**
 * A binary min-heap of (expiresAt, id). Entries are never updated in place: a touch pushes a new
 * entry and the sweeper skips entries that no longer match the record (lazy deletion).
 *
 * The pairs live in two parallel arrays, so a push allocates no object (one per write adds up to
 * a scavenge every few thousand writes), and a sweep reads and drops entries without building
 * them; only `peek` and `pop` build an entry for the caller.
 */
export class ExpiryHeap {
  #times: number[] = [];
  #ids: string[] = [];

  get size(): number {
    return this.#times.length;
  }

  push(expiresAt: number, id: string): void {
    const times = this.#times;
    const ids = this.#ids;
    let child = times.length;
    // Sift up by moving parents down into the hole, then write the new pair once.
    while (child > 0) {
      const parent = (child - 1) >> 1;
      const parentTime = times[parent] as number;
      if (parentTime <= expiresAt) break;
      times[child] = parentTime;
      ids[child] = ids[parent] as string;
      child = parent;
    }
    times[child] = expiresAt;
    ids[child] = id;
  }

  /** The earliest entry, without removing it. */
  peek(): Entry | undefined {
    if (this.#times.length === 0) return undefined;
    return { expiresAt: this.#times[0] as number, id: this.#ids[0] as string };
  }

  /** The earliest expiry, or `Infinity` when the heap is empty; allocates nothing. */
  get earliestExpiresAt(): number {
    return this.#times.length === 0 ? Number.POSITIVE_INFINITY : (this.#times[0] as number);
  }

  /** The id of the earliest entry, or `undefined` when the heap is empty. */
  get earliestId(): string | undefined {
    return this.#ids[0];
  }

  pop(): Entry | undefined {
    const top = this.peek();
    if (top !== undefined) this.dropEarliest();
    return top;
  }

  /** Removes the earliest entry (nothing when empty), without building it for the caller. */
  dropEarliest(): void {
    if (this.#times.length === 0) return;
    const times = this.#times;
    const ids = this.#ids;
    const lastTime = times.pop() as number;
    const lastId = ids.pop() as string;
    const length = times.length;
    if (length === 0) return;
    // Sift the last pair down from the root, moving smaller children up into the hole.
    let parent = 0;
    for (;;) {
      const left = parent * 2 + 1;
      if (left >= length) break;
      const right = left + 1;
      const child =
        right < length && (times[right] as number) < (times[left] as number) ? right : left;
      const childTime = times[child] as number;
      if (childTime >= lastTime) break;
      times[parent] = childTime;
      ids[parent] = ids[child] as string;
      parent = child;
    }
    times[parent] = lastTime;
    ids[parent] = lastId;
  }

  /** Rebuilds the heap from the live entries only, dropping stale ones. */
  rebuild(live: Iterable<Entry>): void {
    this.clear();
    for (const entry of live) this.push(entry.expiresAt, entry.id);
  }

  clear(): void {
    this.#times = [];
    this.#ids = [];
  }
}
