import type { AcquireOptions, SessionLock } from '../types.js';
import { assertKnownOptions, assertPositiveInteger, describeValue } from '../util.js';
import { LeaseLocks } from './lease-locks.js';
import { MemoryLeases } from './memory-leases.js';

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
export class StripedLocks extends LeaseLocks {
  readonly stripes: number;
  readonly #counts: Omit<StripedLockStats, 'stripes'>;

  constructor(options: StripedLocksOptions = {}) {
    if (typeof options !== 'object' || options === null) {
      throw new TypeError(`StripedLocks options must be an object, got ${describeValue(options)}`);
    }
    assertKnownOptions(options, ['stripes'], 'StripedLocks');
    const stripes = options.stripes ?? 32;
    assertPositiveInteger(stripes, 'stripes');
    const counts = { acquired: 0, waits: 0, collisions: 0 };
    super(new MemoryLeases(), {
      keyOf: (id) => String(stripeOf(id, stripes)),
      onWait: (id, holderId) => {
        counts.waits++;
        if (holderId !== undefined && holderId !== id) counts.collisions++;
      },
    });
    this.stripes = stripes;
    this.#counts = counts;
  }

  override async acquire(id: string, options?: AcquireOptions): Promise<SessionLock> {
    const lock = await super.acquire(id, options);
    this.#counts.acquired++;
    return lock;
  }

  stats(): StripedLockStats {
    return { stripes: this.stripes, ...this.#counts };
  }
}
