import type { AcquireOptions, LockManager, SessionLock } from '../types.js';
import { assertPositiveInteger } from '../util.js';
import { normalizeAcquireOptions } from './lease.js';
import { LockTable } from './table.js';

/** 32-bit FNV-1a over the UTF-16 code units of `text`. Stable across processes and versions. */
export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** The stripe `id` maps to in a pool of `stripes` locks. */
export function stripeOf(id: string, stripes: number): number {
  return fnv1a32(id) % stripes;
}

export interface StripedLocksOptions {
  /** How many mutexes in the pool. Default 32, as in the setup mod_python's DbmSession was seen failing with. */
  stripes?: number;
}

export interface StripedLockStats {
  stripes: number;
  /** Locks granted. */
  acquired: number;
  /** Acquires that had to wait. */
  waits: number;
  /** Waits caused by a different id that shares the stripe: the cost of striping. */
  collisions: number;
}

/**
 * mod_python's fixed pool of mutexes: N locks, picked by a hash of the session id. Unrelated
 * sessions that share a stripe block each other; `stats().collisions` counts how often.
 */
export class StripedLocks implements LockManager {
  readonly stripes: number;
  readonly #table = new LockTable();
  #acquired = 0;
  #waits = 0;
  #collisions = 0;

  constructor(options: StripedLocksOptions = {}) {
    const stripes = options.stripes ?? 32;
    assertPositiveInteger(stripes, 'stripes');
    this.stripes = stripes;
  }

  async acquire(id: string, options?: AcquireOptions): Promise<SessionLock> {
    const normalized = normalizeAcquireOptions(id, options);
    const key = String(stripeOf(id, this.stripes));
    const holder = this.#table.holderOf(key);
    if (holder !== undefined) {
      this.#waits++;
      if (holder !== id) this.#collisions++;
    }
    const lock = await this.#table.acquire(key, id, normalized);
    this.#acquired++;
    return lock;
  }

  stats(): StripedLockStats {
    return {
      stripes: this.stripes,
      acquired: this.#acquired,
      waits: this.#waits,
      collisions: this.#collisions,
    };
  }

  async close(): Promise<void> {
    this.#table.close();
  }
}
