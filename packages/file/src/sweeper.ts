import { Worker } from 'node:worker_threads';
import type { RecordFilesSettings, SweepEntry } from './record-files.js';

/** One step of a sweep pass: the next `size` entries after `after`, in (shard, name) order. */
export interface SweepStepRequest {
  /** The store's shard directories, sorted; those before `after.shard` are skipped. */
  shards: string[];
  /** The last entry already handled (`name` '' before a shard's first). */
  after: SweepEntry;
  size: number;
  now: number;
  /**
   * When the call's budget ends, in `Date.now()` ms (Infinity for none). Past its first
   * `MIN_STEP_ENTRIES` entries the step stops there, so a slow disk cannot stretch the call.
   */
  deadline: number;
  /** Paths with a write in flight in the store's thread: left for the next pass. */
  busy: string[];
}

/** What tells a running step to stop before its next entry: an `AbortSignal`, or the worker's flag. */
export interface StopSignal {
  readonly aborted: boolean;
}

export interface SweepStep {
  removed: number;
  scanned: number;
  /** The last entry examined, where the next step starts; undefined when none was. */
  last: SweepEntry | undefined;
  /** The pass reached the end of the last shard (a step that stopped early has not). */
  ended: boolean;
  /** Some entry was left because a write to it was in flight. */
  leftBusy: boolean;
}

/** Where the sweep's per-entry work runs: on this thread, or on a worker thread. */
export interface Sweeper {
  /**
   * Lists what it needs and sweeps the next entries of the pass; one round trip per step.
   * Once `stop` aborts, the step ends before its next entry.
   */
  sweepStep(request: SweepStepRequest, stop?: AbortSignal): Promise<SweepStep>;
  close(): Promise<void>;
}

/**
 * A signal that aborts when any of `sources` does, and `detach` to drop its listeners from them.
 * Not `AbortSignal.any`: on Node 20 a long-lived source keeps every signal made from it alive.
 */
export function abortedByAny(sources: ReadonlyArray<AbortSignal | undefined>): {
  signal: AbortSignal;
  detach(): void;
} {
  const controller = new AbortController();
  const abort = () => controller.abort();
  const listened = sources.filter((source) => source !== undefined);
  for (const source of listened) {
    if (source.aborted) abort();
    source.addEventListener('abort', abort, { once: true });
  }
  const detach = () => {
    for (const source of listened) source.removeEventListener('abort', abort);
  };
  return { signal: controller.signal, detach };
}

/** What the sweep worker needs to rebuild the store's `RecordFiles` on its own thread. */
export interface SweepWorkerInit {
  settings: RecordFilesSettings;
  guardsDirectory: string;
  guardStaleMs: number;
  fileMode: number;
  directoryMode: number;
  /** One Int32: the id of the request the store told to stop (see `WorkerSweeper.sweepStep`). */
  stop: SharedArrayBuffer;
}

export type SweepRequest = SweepStepRequest & { id: number };

export type SweepReply =
  | { id: number; result: unknown }
  | { id: number; error: { message: string; code?: string } };

interface Pending {
  /** The worker the request went to: a retired worker's exit must not fail its successor's calls. */
  worker: Worker;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/**
 * A worker idle this long exits, so its heap (tens of MiB once it has swept) goes back to the
 * system; the next sweep starts a new one (about 100 ms, mostly on the new thread).
 */
const WORKER_IDLE_MS = 2000;
/**
 * The worker's young generation, MiB. A sweep allocates only short-lived objects; at V8's
 * default the worker grew its young generation to 32 MiB for no gain in speed.
 */
const WORKER_YOUNG_GENERATION_MB = 4;

/**
 * Runs the sweep's synchronous filesystem calls on a worker thread, so they never hold the
 * event loop: a call the disk makes wait (a busy journal, a discard) waits there, not in front
 * of requests. The worker starts with a sweep, keeps the process alive only while a call is
 * pending, exits once idle for `WORKER_IDLE_MS`, and is started again if it dies.
 */
export class WorkerSweeper implements Sweeper {
  readonly #init: Omit<SweepWorkerInit, 'stop'>;
  readonly #pending = new Map<number, Pending>();
  /** Read by the worker between entries: a step whose id is here stops. */
  readonly #stop = new Int32Array(new SharedArrayBuffer(4));
  #worker: Worker | undefined;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #nextId = 0;

  constructor(init: Omit<SweepWorkerInit, 'stop'>) {
    this.#init = init;
  }

  async sweepStep(request: SweepStepRequest, stop?: AbortSignal): Promise<SweepStep> {
    const id = ++this.#nextId;
    const onAbort = () => Atomics.store(this.#stop, 0, id);
    if (stop?.aborted) onAbort();
    stop?.addEventListener('abort', onAbort, { once: true });
    try {
      return (await this.#call({ ...request, id })) as SweepStep;
    } finally {
      stop?.removeEventListener('abort', onAbort);
    }
  }

  async close(): Promise<void> {
    clearTimeout(this.#idleTimer);
    const worker = this.#worker;
    this.#worker = undefined;
    if (worker !== undefined) await worker.terminate();
  }

  #call(request: SweepRequest): Promise<unknown> {
    clearTimeout(this.#idleTimer);
    const worker = this.#worker ?? this.#start();
    return new Promise((resolve, reject) => {
      this.#pending.set(request.id, { worker, resolve, reject });
      worker.ref();
      worker.postMessage(request);
    });
  }

  #start(): Worker {
    const worker = new Worker(new URL('./sweep-worker.js', import.meta.url), {
      workerData: { ...this.#init, stop: this.#stop.buffer } satisfies SweepWorkerInit,
      resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB },
    });
    worker.unref();
    worker.on('message', (reply: SweepReply) => {
      const pending = this.#pending.get(reply.id);
      if (pending === undefined) return;
      this.#pending.delete(reply.id);
      if (this.#pending.size === 0) {
        worker.unref();
        this.#idleTimer = setTimeout(() => this.#retire(worker), WORKER_IDLE_MS);
        this.#idleTimer.unref();
      }
      if ('error' in reply) {
        pending.reject(Object.assign(new Error(reply.error.message), { code: reply.error.code }));
      } else {
        pending.resolve(reply.result);
      }
    });
    const failAll = (error: Error) => {
      if (this.#worker === worker) this.#worker = undefined;
      for (const [id, pending] of this.#pending) {
        if (pending.worker !== worker) continue;
        this.#pending.delete(id);
        pending.reject(error);
      }
    };
    worker.on('error', failAll);
    worker.on('exit', (code) => failAll(new Error(`The sweep worker exited (code ${code})`)));
    this.#worker = worker;
    return worker;
  }

  /** Ends an idle worker; a later sweep starts a new one. */
  #retire(worker: Worker): void {
    if (this.#worker !== worker || this.#pending.size > 0) return;
    this.#worker = undefined;
    worker.terminate().catch(() => {});
  }
}
