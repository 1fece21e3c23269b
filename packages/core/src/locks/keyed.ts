import { LeaseLocks } from './lease-locks.js';
import { MemoryLeases } from './memory-leases.js';

/**
 * One FIFO lock per session id, within this process. Unrelated ids never wait for each other,
 * and a lock's state is freed when its last waiter leaves.
 */
export class KeyedLocks extends LeaseLocks {
  constructor() {
    super(new MemoryLeases());
  }
}
