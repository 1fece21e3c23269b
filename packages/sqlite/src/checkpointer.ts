import { Worker } from 'node:worker_threads';
import type BetterSqlite3 from 'better-sqlite3';

/** SQLite's own default, used again if the worker cannot run. */
const AUTOCHECKPOINT_PAGES = 1000;
/**
 * Under a nonstop stream of commits the worker never finds the WAL fully copied at the instant a
 * write starts, which is when SQLite rewinds it. Past this size the connection finishes the
 * copy itself, which is then short because the worker has done most of it.
 */
const BACKSTOP_PAGES = 4000;
/** After a burst, SQLite cuts the WAL file back to this size when it next rewinds it. */
const WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;
const STOP_TIMEOUT_MS = 5000;

/**
 * Moves WAL checkpoints off the event loop. SQLite's automatic checkpoint runs inside whichever
 * commit crosses 1000 pages, copying megabytes and calling fsync right there. Here a worker
 * thread with its own connection checkpoints as the WAL grows, and the connection's automatic
 * checkpoint only steps in past `BACKSTOP_PAGES`. If the worker dies, the connection goes back
 * to SQLite's default, so the WAL never grows without bound.
 */
export class Checkpointer {
  readonly #worker: Worker | undefined;
  readonly #exited: Promise<void>;
  #stopping = false;
  readonly #checkpointWaiters: Array<() => void> = [];

  constructor(db: BetterSqlite3.Database) {
    const fallBack = () => {
      if (!this.#stopping && db.open) db.pragma(`wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`);
    };
    db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
    let worker: Worker;
    try {
      worker = new Worker(new URL('./checkpoint-worker.js', import.meta.url), {
        workerData: { path: db.name },
      });
    } catch {
      // No worker threads here (a bundle without the worker file, a resource limit): SQLite checkpoints.
      this.#exited = Promise.resolve();
      return;
    }
    db.pragma(`wal_autocheckpoint = ${BACKSTOP_PAGES}`);
    worker.unref();
    worker.on('message', () => this.#wake());
    worker.on('error', fallBack);
    this.#exited = new Promise((resolve) => {
      worker.once('exit', () => {
        fallBack();
        this.#wake();
        resolve();
      });
    });
    this.#worker = worker;
  }

  /**
   * Resolves after the worker's next checkpoint (which rewinds the WAL itself once it is fully
   * copied), or after `maxWaitMs`. A background writer that awaits it between batches never
   * lets the WAL outrun the worker.
   */
  nextCheckpoint(maxWaitMs: number): Promise<void> {
    if (this.#worker === undefined) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, maxWaitMs);
      this.#checkpointWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  #wake(): void {
    for (const wake of this.#checkpointWaiters.splice(0)) wake();
  }

  /** Closes the worker's connection and waits for the thread to end. */
  async stop(): Promise<void> {
    this.#stopping = true;
    const worker = this.#worker;
    if (worker === undefined) return;
    worker.postMessage('close');
    const timer = setTimeout(() => void worker.terminate(), STOP_TIMEOUT_MS);
    await this.#exited;
    clearTimeout(timer);
  }
}
