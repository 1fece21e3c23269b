/** A sweep in flight, as the cursor sees it. */
export interface SweepTicket {
  readonly now: number;
  readonly epoch: number;
}

/**
 * Where the last sweep stopped, so the next one starts there instead of stepping over every
 * deletion marker LevelDB keeps until compaction (which made repeated sweeps quadratic). It
 * claims that no index entry exists at or below `key`. The claim is dropped when an index entry
 * is written at or below the cursor's time, or at or below the `now` of a sweep in flight, whose
 * iterator may have missed it.
 */
export class SweepCursor {
  #key: Uint8Array | undefined;
  #expiresAt = Number.NEGATIVE_INFINITY;
  #epoch = 0;
  readonly #running = new Set<SweepTicket>();

  /** The next sweep starts after this key, or at the start of the index when `undefined`. */
  get key(): Uint8Array | undefined {
    return this.#key;
  }

  begin(now: number): SweepTicket {
    const ticket = { now, epoch: this.#epoch };
    this.#running.add(ticket);
    return ticket;
  }

  /**
   * Ends a sweep. `last` is the highest index entry it deleted along with everything before it,
   * or `undefined` when it failed or deleted nothing.
   */
  finish(ticket: SweepTicket, last: { key: Uint8Array; expiresAt: number } | undefined): void {
    this.#running.delete(ticket);
    if (last === undefined || ticket.epoch !== this.#epoch) return;
    if (this.#key === undefined || Buffer.compare(last.key, this.#key) > 0) {
      this.#key = last.key;
      this.#expiresAt = last.expiresAt;
    }
  }

  /**
   * Call once an index entry for `expiresAt` is written, or once a write that may have written
   * it failed: a failed write can still be found in the database after a reopen.
   */
  written(expiresAt: number): void {
    let guard = this.#expiresAt;
    for (const ticket of this.#running) if (ticket.now > guard) guard = ticket.now;
    if (expiresAt <= guard) this.reset();
  }

  /** Drops the claim, so the next sweep starts at the start of the index; sweeps in flight do not move it. */
  reset(): void {
    this.#key = undefined;
    this.#expiresAt = Number.NEGATIVE_INFINITY;
    this.#epoch++;
  }
}
