import { Worker } from 'node:worker_threads';
import type {
  Sweeper,
  SweepReply,
  SweepRequest,
  SweepStep,
  SweepStepRequest,
  SweepWorkerInit,
} from './sweep-protocol.js';

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
