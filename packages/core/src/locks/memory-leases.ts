import type { LeaseBackend, LeaseClaim } from './lease-locks.js';

/** Leases in a `Map`, for locks that reach one process. An entry lives only while its key is held. */
export class MemoryLeases implements LeaseBackend {
  readonly #leases = new Map<string, { token: string; expiresAt: number }>();

  claim({ key, token, expiresAt }: LeaseClaim): boolean {
    const current = this.#leases.get(key);
    if (current !== undefined && current.expiresAt > Date.now()) return false;
    this.#leases.set(key, { token, expiresAt });
    return true;
  }

  extend({ key, token, expiresAt }: LeaseClaim): boolean {
    const current = this.#leases.get(key);
    if (current?.token !== token || current.expiresAt <= Date.now()) return false;
    current.expiresAt = expiresAt;
    return true;
  }

  release({ key, token }: LeaseClaim): boolean {
    const current = this.#leases.get(key);
    if (current?.token !== token) return false;
    this.#leases.delete(key);
    return current.expiresAt > Date.now();
  }

  expired({ key, token }: LeaseClaim): void {
    if (this.#leases.get(key)?.token === token) this.#leases.delete(key);
  }
}
