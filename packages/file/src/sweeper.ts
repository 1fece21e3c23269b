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
  /** Paths with a write in flight in the store's thread: left for the next pass. */
  busy: string[];
}

export interface SweepStep {
  removed: number;
  scanned: number;
  /** The last entry examined, where the next step starts; undefined when none was. */
  last: SweepEntry | undefined;
  /** The pass reached the end of the last shard. */
  ended: boolean;
  /** Some entry was left because a write to it was in flight. */
  leftBusy: boolean;
}

/** Where the sweep's per-entry work runs: on this thread, or on a worker thread. */
export interface Sweeper {
  /** Lists what it needs and sweeps the next entries of the pass; one round trip per step. */
  sweepStep(request: SweepStepRequest): Promise<SweepStep>;
  close(): Promise<void>;
}

/** What the sweep worker needs to rebuild the store's `RecordFiles` on its own thread. */
export interface SweepWorkerInit {
  settings: RecordFilesSettings;
  guardsDirectory: string;
  guardStaleMs: number;
  fileMode: number;
  directoryMode: number;
}

export type SweepRequest = SweepStepRequest & { id: number };

export type SweepReply =
  | { id: number; result: unknown }
  | { id: number; error: { message: string; code?: string } };

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/**
 * Runs the sweep's synchronous filesystem calls on a worker thread, so they never hold the
 * event loop: a call the disk makes wait (a busy journal, a discard) waits there, not in front
 * of requests. The worker starts with the first sweep, keeps the process alive only while a
 * call is pending, and is started again if it dies.
 */
export class WorkerSweeper implements Sweeper {
  readonly #init: SweepWorkerInit;
  readonly #pending = new Map<number, Pending>();
  #worker: Worker | undefined;
  #nextId = 0;

  constructor(init: SweepWorkerInit) {
    this.#init = init;
  }

  sweepStep(request: SweepStepRequest): Promise<SweepStep> {
    return this.#call({ ...request, id: 0 }) as Promise<SweepStep>;
  }

  async close(): Promise<void> {
    const worker = this.#worker;
    this.#worker = undefined;
    if (worker !== undefined) await worker.terminate();
  }

  #call(request: SweepRequest): Promise<unknown> {
    const worker = this.#worker ?? this.#start();
    const id = ++this.#nextId;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.ref();
      worker.postMessage({ ...request, id });
    });
  }

  #start(): Worker {
    const worker = new Worker(new URL('./sweep-worker.js', import.meta.url), {
      workerData: this.#init,
    });
    worker.unref();
    worker.on('message', (reply: SweepReply) => {
      const pending = this.#pending.get(reply.id);
      if (pending === undefined) return;
      this.#pending.delete(reply.id);
      if (this.#pending.size === 0) worker.unref();
      if ('error' in reply) {
        pending.reject(Object.assign(new Error(reply.error.message), { code: reply.error.code }));
      } else {
        pending.resolve(reply.result);
      }
    });
    const failAll = (error: Error) => {
      if (this.#worker === worker) this.#worker = undefined;
      for (const pending of this.#pending.values()) pending.reject(error);
      this.#pending.clear();
    };
    worker.on('error', failAll);
    worker.on('exit', (code) => failAll(new Error(`The sweep worker exited (code ${code})`)));
    this.#worker = worker;
    return worker;
  }
}
