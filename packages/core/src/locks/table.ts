import { generateToken } from '../ids.js';
import {
  LeaseLock,
  lockManagerClosed,
  lockTimeout,
  type NormalizedAcquireOptions,
} from './lease.js';

interface Waiter {
  id: string;
  leaseMs: number;
  resolve(lock: LeaseLock): void;
  reject(error: unknown): void;
  cleanup(): void;
}

interface Slot {
  holder: LeaseLock | undefined;
  queue: Waiter[];
}

/**
 * In-process FIFO lock table keyed by an arbitrary string. A slot exists only while it is held
 * or waited for, so memory does not grow with the number of keys ever locked.
 */
export class LockTable {
  readonly #slots = new Map<string, Slot>();
  #closed = false;

  /** Keys currently held or waited for. */
  get size(): number {
    return this.#slots.size;
  }

  /** The id holding `key`, if any. */
  holderOf(key: string): string | undefined {
    return this.#slots.get(key)?.holder?.id;
  }

  acquire(key: string, id: string, options: NormalizedAcquireOptions): Promise<LeaseLock> {
    if (this.#closed) return Promise.reject(lockManagerClosed());
    if (options.signal?.aborted) return Promise.reject(options.signal.reason);
    let slot = this.#slots.get(key);
    if (slot === undefined) {
      slot = { holder: undefined, queue: [] };
      this.#slots.set(key, slot);
    }
    if (slot.holder === undefined && slot.queue.length === 0) {
      return Promise.resolve(this.#grant(key, slot, id, options.leaseMs));
    }
    if (options.waitMs === 0) return Promise.reject(lockTimeout(0));
    const queue = slot.queue;
    return new Promise<LeaseLock>((resolve, reject) => {
      const leave = () => {
        const index = queue.indexOf(waiter);
        if (index !== -1) queue.splice(index, 1);
        this.#dropIfIdle(key);
      };
      const onAbort = () => {
        leave();
        waiter.cleanup();
        reject(options.signal?.reason);
      };
      const timer = setTimeout(() => {
        leave();
        waiter.cleanup();
        reject(lockTimeout(options.waitMs));
      }, options.waitMs);
      const waiter: Waiter = {
        id,
        leaseMs: options.leaseMs,
        resolve,
        reject,
        cleanup: () => {
          clearTimeout(timer);
          options.signal?.removeEventListener('abort', onAbort);
        },
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      queue.push(waiter);
    });
  }

  /** Rejects every waiter and every later acquire with `ERR_STORE_CLOSED`. Holders keep their locks. */
  close(): void {
    this.#closed = true;
    for (const [key, slot] of this.#slots) {
      for (const waiter of slot.queue.splice(0)) {
        waiter.cleanup();
        waiter.reject(lockManagerClosed());
      }
      this.#dropIfIdle(key);
    }
  }

  #grant(key: string, slot: Slot, id: string, leaseMs: number): LeaseLock {
    const free = (token: string): boolean => {
      if (slot.holder?.token !== token) return false;
      slot.holder = undefined;
      this.#handOver(key, slot);
      return true;
    };
    const lock = new LeaseLock({
      id,
      token: generateToken(),
      leaseMs,
      expiresAt: Date.now() + leaseMs,
      backend: {
        extend: (token) => slot.holder?.token === token,
        release: free,
        expired: free,
      },
    });
    slot.holder = lock;
    return lock;
  }

  #handOver(key: string, slot: Slot): void {
    const next = slot.queue.shift();
    if (next === undefined) {
      this.#dropIfIdle(key);
      return;
    }
    next.cleanup();
    next.resolve(this.#grant(key, slot, next.id, next.leaseMs));
  }

  #dropIfIdle(key: string): void {
    const slot = this.#slots.get(key);
    if (slot !== undefined && slot.holder === undefined && slot.queue.length === 0) {
      this.#slots.delete(key);
    }
  }
}
