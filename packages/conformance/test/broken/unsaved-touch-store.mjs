// A durable store kept in memory and written whole to one JSON file by every set and delete. Its
// defect: touch changes memory only, so a touch reaches the disk only with a later set or delete,
// and one made just before close() is lost. LazyTouchStore, below, also saves at close(), so only
// a crash loses its touches; SweepOutlivesCloseStore saves its touches but sweeps on after
// close(). Plain JavaScript, since the suite's forked children import them.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { BaseStore, KeyedLocks, yieldToEventLoop } from '@sessile/core/store';

export class UnsavedTouchStore extends BaseStore {
  capabilities = {
    shared: 'process',
    expiry: 'sweep',
    durable: true,
    expiryIndex: false,
    ownerIndex: false,
  };
  locks = new KeyedLocks();
  #rows = new Map();

  constructor(path) {
    super();
    this.path = path;
    if (existsSync(path))
      this.#rows = new Map(Object.entries(JSON.parse(readFileSync(path, 'utf8'))));
  }

  static async open(path) {
    return new UnsavedTouchStore(path);
  }

  _get(id, now) {
    const row = this.#live(id, now);
    return row && { data: Buffer.from(row.data, 'base64'), expiresAt: row.expiresAt };
  }

  _set(id, record, only, now) {
    const exists = this.#live(id, now) !== undefined;
    if ((only === 'absent' && exists) || (only === 'present' && !exists)) return false;
    this.#rows.set(id, {
      data: Buffer.from(record.data).toString('base64'),
      expiresAt: record.expiresAt,
    });
    this.save();
    return true;
  }

  _touch(id, expiresAt, now) {
    const row = this.#live(id, now);
    if (row === undefined) return false;
    row.expiresAt = expiresAt;
    return true;
  }

  _delete(id, now) {
    const existed = this.#live(id, now) !== undefined;
    this.#rows.delete(id);
    this.save();
    return existed;
  }

  /** Whether a sweep asks `nextBatchSize` before every batch, as it should, or only the first. */
  asksEveryBatch = true;

  async _sweep(progress) {
    const first = progress.nextBatchSize(100);
    const next = () => (this.asksEveryBatch ? progress.nextBatchSize(100) : first);
    for (let batch = first; batch > 0; batch = next()) {
      const expired = [...this.#rows].filter(([, row]) => row.expiresAt <= progress.now);
      for (const [id] of expired.slice(0, batch)) this.#rows.delete(id);
      progress.removed += Math.min(batch, expired.length);
      progress.scanned += Math.min(batch, expired.length);
      this.save();
      if (expired.length <= batch) return progress.result(true);
      await yieldToEventLoop();
    }
    return progress.result(false);
  }

  async _count(now) {
    return [...this.#rows.values()].filter((row) => row.expiresAt > now).length;
  }

  async *_ids(now) {
    for (const [id, row] of this.#rows) if (row.expiresAt > now) yield id;
  }

  async _clear() {
    this.#rows.clear();
    this.save();
  }

  async _close() {}

  #live(id, now) {
    const row = this.#rows.get(id);
    return row !== undefined && row.expiresAt > now ? row : undefined;
  }

  save() {
    writeFileSync(`${this.path}.tmp`, JSON.stringify(Object.fromEntries(this.#rows)));
    renameSync(`${this.path}.tmp`, this.path);
  }
}

/** Saves its touches at close() too, as a store that defers them to its next write might. */
export class LazyTouchStore extends UnsavedTouchStore {
  static async open(path) {
    return new LazyTouchStore(path);
  }

  async _close() {
    this.save();
  }
}

/**
 * Saves every touch, but a sweep asks `nextBatchSize` for its first batch only, then goes on in
 * batches of that size to its end: close() does not stop it (nor do limit and budget).
 */
export class SweepOutlivesCloseStore extends UnsavedTouchStore {
  asksEveryBatch = false;

  static async open(path) {
    return new SweepOutlivesCloseStore(path);
  }

  _touch(id, expiresAt, now) {
    const touched = super._touch(id, expiresAt, now);
    if (touched) this.save();
    return touched;
  }
}
