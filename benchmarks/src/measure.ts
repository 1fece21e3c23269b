import { setMaxListeners } from 'node:events';
import { setImmediate as nextTurn } from 'node:timers/promises';

/** Latency percentiles and throughput of one measured run, all times in milliseconds. */
export interface LatencySummary {
  ops: number;
  errors: number;
  elapsedMs: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The first failure, when any operation failed. */
  firstError?: string;
}

/** Collects operation latencies without allocating per sample. */
export class LatencyRecorder {
  #samples = new Float64Array(4096);
  #count = 0;
  errors = 0;
  firstError: string | undefined;

  record(latencyMs: number): void {
    if (this.#count === this.#samples.length) {
      const grown = new Float64Array(this.#samples.length * 2);
      grown.set(this.#samples);
      this.#samples = grown;
    }
    this.#samples[this.#count++] = latencyMs;
  }

  recordError(error: unknown): void {
    this.errors++;
    this.firstError ??= describeError(error);
  }

  get count(): number {
    return this.#count;
  }

  summary(elapsedMs: number): LatencySummary {
    const sorted = this.#samples.slice(0, this.#count).sort();
    return {
      ops: this.#count,
      errors: this.errors,
      elapsedMs: round(elapsedMs),
      opsPerSec: elapsedMs > 0 ? Math.round((this.#count / elapsedMs) * 1000) : 0,
      p50Ms: round(percentile(sorted, 0.5)),
      p99Ms: round(percentile(sorted, 0.99)),
      maxMs: round(sorted.length > 0 ? (sorted[sorted.length - 1] ?? 0) : 0),
      ...(this.firstError === undefined ? {} : { firstError: this.firstError }),
    };
  }
}

export function percentile(sorted: ArrayLike<number>, fraction: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1);
  return sorted[Math.max(0, index)] ?? 0;
}

/** The middle value, or the mean of the two middle values of an even count; 0 for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** Rounds to 3 significant decimals for milliseconds, so JSON stays readable. */
export function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}

export interface LoadOptions {
  /** Operations in flight at once. */
  concurrency: number;
  /** Stop starting operations after this long. */
  durationMs: number;
  /** Stop after this many operations were started. */
  maxOps?: number;
  signal?: AbortSignal;
}

/**
 * Runs `operation(i)` with `concurrency` operations in flight until the duration, the op count
 * or the signal ends it, and records each latency. Every worker starts its next operation from
 * a fresh macrotask now and then, so synchronous backends cannot starve timers forever.
 */
export async function runLoad(
  options: LoadOptions,
  operation: (index: number) => Promise<unknown>,
): Promise<LatencySummary> {
  const recorder = new LatencyRecorder();
  const started = performance.now();
  const deadline = started + options.durationMs;
  const maxOps = options.maxOps ?? Number.POSITIVE_INFINITY;
  let next = 0;
  const worker = async () => {
    let sinceYield = 0;
    while (next < maxOps && !options.signal?.aborted) {
      const now = performance.now();
      if (now >= deadline) break;
      const index = next++;
      try {
        await operation(index);
        recorder.record(performance.now() - now);
      } catch (error) {
        recorder.recordError(error);
      }
      if (++sinceYield >= 64) {
        sinceYield = 0;
        await nextTurn();
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return recorder.summary(performance.now() - started);
}

export class TimeoutError extends Error {
  constructor(limitMs: number) {
    super(`timed out after ${Math.round(limitMs / 1000)} s`);
    this.name = 'TimeoutError';
  }
}

/**
 * Resolves with `work`'s result, or rejects with `TimeoutError` after `limitMs` and aborts the
 * signal handed to `work`, so a hung target cannot hold up the run.
 */
export async function withTimeLimit<T>(
  limitMs: number,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  // Stores may listen on the signal once per call (each sweep batch); that is not a leak.
  setMaxListeners(10_000, controller.signal);
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort(new TimeoutError(limitMs));
      reject(new TimeoutError(limitMs));
    }, limitMs);
  });
  try {
    return await Promise.race([work(controller.signal), expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Fires `count` calls of `operation` with at most `concurrency` in flight; for seeding. */
export async function fill(
  count: number,
  concurrency: number,
  operation: (index: number) => Promise<unknown>,
  signal?: AbortSignal,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    let sinceYield = 0;
    while (next < count) {
      signal?.throwIfAborted();
      await operation(next++);
      if (++sinceYield >= 64) {
        sinceYield = 0;
        await nextTurn();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}
