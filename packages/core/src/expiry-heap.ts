interface Entry {
  expiresAt: number;
  id: string;
}

/**
 * A binary min-heap of (expiresAt, id). Entries are never updated in place: a touch pushes a new
 * entry and the sweeper skips entries that no longer match the record (lazy deletion).
 */
export class ExpiryHeap {
  #entries: Entry[] = [];

  get size(): number {
    return this.#entries.length;
  }

  push(expiresAt: number, id: string): void {
    const entries = this.#entries;
    entries.push({ expiresAt, id });
    let child = entries.length - 1;
    while (child > 0) {
      const parent = (child - 1) >> 1;
      const a = entries[parent] as Entry;
      const b = entries[child] as Entry;
      if (a.expiresAt <= b.expiresAt) break;
      entries[parent] = b;
      entries[child] = a;
      child = parent;
    }
  }

  /** The earliest entry, without removing it. */
  peek(): Entry | undefined {
    return this.#entries[0];
  }

  pop(): Entry | undefined {
    const entries = this.#entries;
    const top = entries[0];
    const last = entries.pop();
    if (top === undefined || last === undefined || entries.length === 0) return top;
    entries[0] = last;
    let parent = 0;
    for (;;) {
      const left = parent * 2 + 1;
      const right = left + 1;
      let smallest = parent;
      if (
        left < entries.length &&
        (entries[left] as Entry).expiresAt < (entries[smallest] as Entry).expiresAt
      )
        smallest = left;
      if (
        right < entries.length &&
        (entries[right] as Entry).expiresAt < (entries[smallest] as Entry).expiresAt
      )
        smallest = right;
      if (smallest === parent) break;
      const swap = entries[parent] as Entry;
      entries[parent] = entries[smallest] as Entry;
      entries[smallest] = swap;
      parent = smallest;
    }
    return top;
  }

  /** Rebuilds the heap from the live entries only, dropping stale ones. */
  rebuild(live: Iterable<Entry>): void {
    this.#entries = [];
    for (const entry of live) this.push(entry.expiresAt, entry.id);
  }

  clear(): void {
    this.#entries = [];
  }
}
