import type { AcquireOptions, LockManager, SessionLock } from '../types.js';
import { normalizeAcquireOptions } from './lease.js';
import { LockTable } from './table.js';

/**
 * One FIFO lock per session id, within this process. Unrelated ids never wait for each other,
 * and a lock's state is freed when its last waiter leaves.
 */
export class KeyedLocks implements LockManager {
  readonly #table = new LockTable();

  acquire(id: string, options?: AcquireOptions): Promise<SessionLock> {
    const normalized = normalizeAcquireOptions(id, options);
    return this.#table.acquire(id, id, normalized);
  }

  /** Ids currently held or waited for. */
  get size(): number {
    return this.#table.size;
  }

  async close(): Promise<void> {
    this.#table.close();
  }
}
