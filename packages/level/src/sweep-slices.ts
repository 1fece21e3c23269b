/**
 * Sizes a sweep's batches by time. Each batch runs a few synchronous stretches on the event loop
 * (parsing its index keys, checking its records and queueing the deletes), each as long as the
 * batch is big; a fixed 500 took 2 to 3 ms of CPU per stretch on a loaded 2-core machine, longer
 * when the process was descheduled mid-stretch. After each batch the size is set so the longest
 * stretch would take about `sliceMs`, growing at most twofold per batch.
 */
export class SweepSlices {
  readonly #min: number;
  readonly #max: number;
  readonly #sliceMs: number;
  #size: number;

  constructor(min: number, max: number, sliceMs: number) {
    this.#min = min;
    this.#max = max;
    this.#sliceMs = sliceMs;
    this.#size = min;
  }

  /** Entries the next batch may take. */
  get size(): number {
    return this.#size;
  }

  /** Reports that a stretch over `count` entries held the event loop for `ms`. */
  took(count: number, ms: number): void {
    if (count === 0) return;
    const fits = ms > 0 ? Math.floor((this.#sliceMs * count) / ms) : this.#max;
    this.#size = Math.max(this.#min, Math.min(this.#max, 2 * this.#size, fits));
  }
}
