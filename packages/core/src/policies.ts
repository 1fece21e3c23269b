import { isSessionError, SessionError } from './errors.js';
import { SWEEP_LOCK_ID } from './ids.js';
import type { SessionLock, SessionStore } from './types.js';
import {
  assertAbortSignal,
  assertDuration,
  assertKnownOptions,
  assertNonNegativeNumber,
  assertPositiveInteger,
  describeValue,
  hasMethods,
  MAX_TIMER_MS,
  storeHint,
  yieldToEventLoop,
} from './util.js';

/** What one cleanup run did. `'busy'`: another run held the sweep lock, so this one did nothing. */
export interface SweepRun {
  outcome: 'swept' | 'busy';
  removed: number;
  scanned: number;
  /** True when the store reported no expired record left. */
  done: boolean;
}

/** How much one run may do. */
export interface SweepRunOptions {
  /** Records one `store.sweep()` call may examine. Default 1000. */
  limit?: number;
  /** A run stops starting new `sweep()` calls after this many ms; the next run resumes. Default 1000. */
  budgetMs?: number;
  /** Lease of the cross-process sweep lock; it must outlast a run. Default 60 000. */
  leaseMs?: number;
}

export interface SweeperOptions {
  /** Called with each run's error. The policy keeps running. Default: `console.error`. */
  onError?: (error: unknown) => void;
  /** Called after each run that was not skipped for being busy. */
  onSweep?: (run: SweepRun) => void;
  /** Aborting stops the policy, like `close()`. */
  signal?: AbortSignal;
}

/** When cleanup runs. Create one with `sweepByChance`, `sweepEvery` or `manual`. */
export interface CleanupPolicy {
  readonly kind: 'chance' | 'interval' | 'manual';
  /** Starts the policy over `store`. `SessionManager` calls this; call it yourself without a manager. */
  start(store: SessionStore, options?: SweeperOptions): Sweeper;
}

interface Trigger {
  kind: CleanupPolicy['kind'];
  probability: number;
  intervalMs: number;
  jitter: number;
}

function defaultOnError(error: unknown): void {
  console.error('[sessile] session cleanup failed:', error);
}

/**
 * A running cleanup policy over one store. Runs are single-flight in this process (a run
 * requested while one is in flight joins it) and single-runner across processes (each run
 * first takes the store's lock on `SWEEP_LOCK_ID` without waiting, and skips if it is held).
 */
export class Sweeper {
  readonly kind: CleanupPolicy['kind'];
  readonly #store: SessionStore;
  readonly #trigger: Trigger;
  readonly #limit: number;
  readonly #budgetMs: number;
  readonly #leaseMs: number;
  readonly #onError: (error: unknown) => void;
  readonly #onSweep: ((run: SweepRun) => void) | undefined;
  readonly #stop = new AbortController();
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = () => void this.close();
  #inflight: Promise<SweepRun> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    store: SessionStore,
    trigger: Trigger,
    runOptions: SweepRunOptions = {},
    options: SweeperOptions = {},
  ) {
    this.kind = trigger.kind;
    this.#store = store;
    this.#trigger = trigger;
    const settings = runSettings(runOptions);
    this.#limit = settings.limit;
    this.#budgetMs = settings.budgetMs;
    this.#leaseMs = settings.leaseMs;
    checkSweeperOptions(options);
    // A store's open() not awaited would otherwise fail every run, reported on a timer.
    if (!hasMethods(store, ['sweep']) || !hasMethods(store.locks, ['acquire'])) {
      throw new TypeError(
        `policy.start needs a SessionStore, got ${describeValue(store)}${storeHint(store)}`,
      );
    }
    this.#onError = options.onError ?? defaultOnError;
    this.#onSweep = options.onSweep;
    this.#signal = options.signal;
    if (this.#signal?.aborted) {
      this.#closed = true;
      return;
    }
    this.#signal?.addEventListener('abort', this.#onAbort, { once: true });
    if (trigger.kind === 'interval') this.#schedule();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** True while a run is in flight in this process. */
  get running(): boolean {
    return this.#inflight !== undefined;
  }

  /**
   * Tell the policy a response has been sent. `sweepByChance` starts a run with its
   * probability, on a later turn of the event loop, so never on the request's path.
   */
  afterResponse(): void {
    if (this.#closed || this.#trigger.kind !== 'chance') return;
    if (Math.random() >= this.#trigger.probability) return;
    setImmediate(() => this.#runReported());
  }

  /**
   * Runs cleanup now, whatever the policy, and resolves with what it did. Rejects with the
   * run's error (automatic runs report theirs to `onError` instead), and with
   * `ERR_STORE_CLOSED` once the policy is stopped.
   */
  run(): Promise<SweepRun> {
    if (this.#closed) {
      return Promise.reject(new SessionError('ERR_STORE_CLOSED', 'The cleanup policy is stopped'));
    }
    this.#inflight ??= this.#runOnce().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  /** Stops the policy: no new runs, a run in flight stops at its next batch. Resolves once it has. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      clearTimeout(this.#timer);
      this.#signal?.removeEventListener('abort', this.#onAbort);
      this.#stop.abort();
    }
    await this.#inflight?.catch(() => undefined);
  }

  async #runOnce(): Promise<SweepRun> {
    const store = this.#store;
    let lock: SessionLock;
    try {
      lock = await store.locks.acquire(SWEEP_LOCK_ID, { waitMs: 0, leaseMs: this.#leaseMs });
    } catch (error) {
      if (isSessionError(error, 'ERR_LOCK_TIMEOUT')) {
        return { outcome: 'busy', removed: 0, scanned: 0, done: false };
      }
      throw error;
    }
    const run: SweepRun = { outcome: 'swept', removed: 0, scanned: 0, done: false };
    // Not AbortSignal.any: on Node 20 the long-lived stop signal would keep every run's alive.
    const stopRun = new AbortController();
    const abortRun = () => stopRun.abort();
    this.#stop.signal.addEventListener('abort', abortRun, { once: true });
    lock.signal.addEventListener('abort', abortRun, { once: true });
    if (this.#stop.signal.aborted || lock.signal.aborted) stopRun.abort();
    try {
      const signal = stopRun.signal;
      const started = performance.now();
      for (;;) {
        const remainingMs = Math.max(0, this.#budgetMs - (performance.now() - started));
        const result = await store.sweep({ limit: this.#limit, budgetMs: remainingMs, signal });
        run.removed += result.removed;
        run.scanned += result.scanned;
        run.done = result.done;
        if (result.done || signal.aborted || performance.now() - started >= this.#budgetMs) break;
        await yieldToEventLoop();
      }
    } finally {
      this.#stop.signal.removeEventListener('abort', abortRun);
      lock.signal.removeEventListener('abort', abortRun);
      await lock.release().catch((error: unknown) => this.#report(error));
    }
    this.#onSweep?.(run);
    return run;
  }

  async #runReported(): Promise<void> {
    try {
      await this.run();
    } catch (error) {
      // A closed store ends the policy quietly; anything else is reported and retried next time.
      if (this.#store.closed) await this.close();
      else this.#report(error);
    }
  }

  #schedule(): void {
    if (this.#closed) return;
    const { intervalMs, jitter } = this.#trigger;
    const delayMs = intervalMs * (1 - jitter + 2 * jitter * Math.random());
    this.#timer = setTimeout(async () => {
      await this.#runReported();
      this.#schedule();
    }, delayMs);
    this.#timer.unref();
  }

  #report(error: unknown): void {
    try {
      this.#onError(error);
    } catch {
      // An error handler that throws must not stop the policy.
    }
  }
}

// Every option, so that an option added to SweeperOptions fails to compile until listed.
const SWEEPER_OPTIONS_PRESENT: Record<keyof SweeperOptions, true> = {
  onError: true,
  onSweep: true,
  signal: true,
};
const SWEEPER_OPTIONS = Object.keys(SWEEPER_OPTIONS_PRESENT);

/** `policy.start`'s options: a misspelt handler would otherwise be dropped without a word. */
function checkSweeperOptions(options: SweeperOptions): void {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`policy.start options must be an object, got ${describeValue(options)}`);
  }
  assertKnownOptions(options, SWEEPER_OPTIONS, 'policy.start');
  for (const name of ['onError', 'onSweep'] as const) {
    const handler = options[name];
    if (handler !== undefined && typeof handler !== 'function') {
      throw new TypeError(
        `policy.start: ${name} must be a function, got ${describeValue(handler)}`,
      );
    }
  }
  assertAbortSignal(options.signal, 'policy.start: signal');
}

// Every option, so that an option added to SweepRunOptions fails to compile until listed.
const RUN_OPTIONS_PRESENT: Record<keyof SweepRunOptions, true> = {
  limit: true,
  budgetMs: true,
  leaseMs: true,
};
const RUN_OPTIONS = Object.keys(RUN_OPTIONS_PRESENT);

/** `options` of the policy `where`, which takes `extra` options beyond a run's. */
function checkRunOptions(
  options: SweepRunOptions | undefined,
  where: string,
  extra: readonly string[] = [],
): SweepRunOptions {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('cleanup policy options must be an object');
  }
  assertKnownOptions(options, [...RUN_OPTIONS, ...extra], where);
  runSettings(options);
  return options;
}

/** A run's settings: `options` with the defaults filled in, each checked. */
function runSettings(options: SweepRunOptions): Required<SweepRunOptions> {
  const settings = {
    limit: options.limit ?? 1000,
    budgetMs: options.budgetMs ?? 1000,
    leaseMs: options.leaseMs ?? 60_000,
  };
  assertPositiveInteger(settings.limit, 'limit');
  assertNonNegativeNumber(settings.budgetMs, 'budgetMs');
  assertDuration(settings.leaseMs, 'leaseMs', { zero: false });
  if (settings.budgetMs >= settings.leaseMs) {
    throw new TypeError(
      `budgetMs must be less than leaseMs (${settings.leaseMs}), got ${settings.budgetMs}: the sweep lock's lease must outlast a run, which is cut off with ERR_LOCK_LOST when it does not`,
    );
  }
  return settings;
}

/**
 * mod_python's and PHP's model: after each response, a run starts with `probability`
 * (`1 / 1000` is PHP's default). It never runs on the request's path.
 */
export function sweepByChance(probability: number, options?: SweepRunOptions): CleanupPolicy {
  if (typeof probability !== 'number' || !(probability >= 0 && probability <= 1)) {
    throw new TypeError(
      `probability must be a number from 0 to 1, got ${describeValue(probability)}`,
    );
  }
  const runOptions = checkRunOptions(options, 'sweepByChance');
  return {
    kind: 'chance',
    start: (store, sweeperOptions) =>
      new Sweeper(
        store,
        { kind: 'chance', probability, intervalMs: 0, jitter: 0 },
        runOptions,
        sweeperOptions,
      ),
  };
}

export interface SweepEveryOptions extends SweepRunOptions {
  /** Each delay is `intervalMs` times a random factor in `[1 - jitter, 1 + jitter]`, so processes spread out. Default 0.1. */
  jitter?: number;
}

/** A run every `intervalMs` (with jitter) on an unref'd timer, so it never keeps the process alive. */
export function sweepEvery(intervalMs: number, options?: SweepEveryOptions): CleanupPolicy {
  const runOptions = checkRunOptions(options, 'sweepEvery', ['jitter']);
  const jitter = options?.jitter ?? 0.1;
  if (typeof jitter !== 'number' || !(jitter >= 0 && jitter < 1)) {
    throw new TypeError(
      `jitter must be a number from 0 to less than 1, got ${describeValue(jitter)}`,
    );
  }
  // The longest delay, with jitter, must still fit one timer.
  assertDuration(intervalMs, 'intervalMs', {
    zero: false,
    max: Math.floor(MAX_TIMER_MS / (1 + jitter)),
  });
  return {
    kind: 'interval',
    start: (store, sweeperOptions) =>
      new Sweeper(
        store,
        { kind: 'interval', probability: 0, intervalMs, jitter },
        runOptions,
        sweeperOptions,
      ),
  };
}

/** No automatic runs: call `run()` (or `SessionManager.sweep()`) yourself, from cron or a CLI. */
export function manual(options?: SweepRunOptions): CleanupPolicy {
  const runOptions = checkRunOptions(options, 'manual');
  return {
    kind: 'manual',
    start: (store, sweeperOptions) =>
      new Sweeper(
        store,
        { kind: 'manual', probability: 0, intervalMs: 0, jitter: 0 },
        runOptions,
        sweeperOptions,
      ),
  };
}
