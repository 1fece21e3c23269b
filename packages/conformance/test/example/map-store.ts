import type { SessionRecord, StoreCapabilities, SweepResult } from '@sessile/core';
import {
  BaseStore,
  type BaseStoreOptions,
  KeyedLocks,
  type SweepProgress,
  yieldToEventLoop,
} from '@sessile/core/store';

/** The example from docs/writing-a-store.md: a complete store in one small class. */
export class MapStore extends BaseStore {
  readonly capabilities: StoreCapabilities = {
    shared: 'process',
    expiry: 'sweep',
    durable: false,
    expiryIndex: false,
    ownerIndex: false,
  };
  readonly locks = new KeyedLocks();
  readonly #records = new Map<string, SessionRecord>();
  // Where the last sweep stopped, so the next call resumes instead of starting over.
  #sweepCursor: Iterator<[string, SessionRecord]> | undefined;
  // The earliest expiry this pass left behind it: a later call's now may have passed it.
  #passKeptUntil = Number.POSITIVE_INFINITY;

  static async open(options: BaseStoreOptions = {}): Promise<MapStore> {
    return new MapStore(options);
  }

  protected async _get(id: string, now: number): Promise<SessionRecord | undefined> {
    const record = this.#live(id, now);
    return record && { data: new Uint8Array(record.data), expiresAt: record.expiresAt };
  }

  protected async _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
  ): Promise<boolean> {
    // No await between the check and the write, so the pair is atomic on the event loop.
    const exists = this.#live(id, now) !== undefined;
    if ((only === 'absent' && exists) || (only === 'present' && !exists)) return false;
    this.#records.set(id, { data: new Uint8Array(record.data), expiresAt: record.expiresAt });
    this.#keptByPass(record.expiresAt);
    return true;
  }

  protected async _touch(id: string, expiresAt: number, now: number): Promise<boolean> {
    const record = this.#live(id, now);
    if (record === undefined) return false;
    record.expiresAt = expiresAt;
    this.#keptByPass(expiresAt);
    return true;
  }

  protected async _delete(id: string, now: number): Promise<boolean> {
    const existed = this.#live(id, now) !== undefined;
    this.#records.delete(id);
    return existed;
  }

  protected async _sweep(progress: SweepProgress): Promise<SweepResult> {
    for (let batch = progress.nextBatchSize(100); batch > 0; batch = progress.nextBatchSize(100)) {
      this.#sweepCursor ??= this.#records.entries();
      for (let i = 0; i < batch; i++) {
        const next = this.#sweepCursor.next();
        if (next.done) {
          // The pass is over. It is done only if nothing it left behind has expired by this
          // call's now; otherwise another pass starts from the first record.
          const clean = this.#passKeptUntil > progress.now;
          this.#sweepCursor = undefined;
          this.#passKeptUntil = Number.POSITIVE_INFINITY;
          if (clean) return progress.result(true);
          break;
        }
        const [id, record] = next.value;
        progress.scanned++;
        if (record.expiresAt <= progress.now) {
          this.#records.delete(id);
          progress.removed++;
        } else {
          this.#passKeptUntil = Math.min(this.#passKeptUntil, record.expiresAt);
        }
      }
      await yieldToEventLoop();
    }
    return progress.result(false);
  }

  protected async _count(now: number): Promise<number> {
    let count = 0;
    for (const record of this.#records.values()) if (record.expiresAt > now) count++;
    return count;
  }

  protected async *_ids(now: number): AsyncIterable<string> {
    for (const [id, record] of this.#records) if (record.expiresAt > now) yield id;
  }

  protected async _clear(): Promise<void> {
    this.#records.clear();
  }

  protected async _close(): Promise<void> {
    this.#records.clear();
  }

  // A write during a pass may land behind the cursor, where the pass will not see it again.
  #keptByPass(expiresAt: number): void {
    if (this.#sweepCursor !== undefined) {
      this.#passKeptUntil = Math.min(this.#passKeptUntil, expiresAt);
    }
  }

  #live(id: string, now: number): SessionRecord | undefined {
    const record = this.#records.get(id);
    return record !== undefined && record.expiresAt > now ? record : undefined;
  }
}
