import { Worker } from 'node:worker_threads';
import type BetterSqlite3 from 'better-sqlite3';
import { LOW_SPACE_WAL_PAGES, lowOnSpace, walSizeLimitBytes } from './wal-space.js';

/** SQLite's own default, used again if the worker cannot run. */
const AUTOCHECKPOINT_PAGES = 1000;
/**
 * Under a nonstop stream of commits the worker never finds the WAL fully copied at the instant a
 * write starts, which is when SQLite rewinds it. Past this size the connection finishes the
 * copy itself, which is then short because the worker has done most of it.
 */
const BACKSTOP_PAGES = 4000;
/**
 * Low on space the connection checkpoints itself at `LOW_SPACE_WAL_PAGES`, right after the
 * commit that crosses it, so the next write restarts the WAL and the WAL file stays near 1 MiB.
 * The worker has copied most of those pages by then, so the connection's copy is short. The
 * worker restarts the WAL itself only when no write holds the lock: one that waited for the lock
 * held the checkpoint lock meanwhile, which turned the connection's checkpoints away while a
 * stream of writes grew the WAL past 800 pages (3.3 MiB).
 */
const STOP_TIMEOUT_MS = 5000;
/** 32 writes add 32 to 128 pages to the WAL, well under the `LOW_SPACE_WAL_PAGES` at which it restarts. */
const WAKE_EVERY_WRITES = 32;

/** What the worker posts after each checkpoint. */
export interface WorkerReport {
  /** It found nothing new to copy, and looks again only after its idle interval. */
  idle: boolean;
  /** Its filesystem is low on space (see `LOW_SPACE_BYTES`). */
  lowSpace: boolean;
}

/**
 * Moves WAL checkpoints off the event loop. SQLite's automatic checkpoint runs inside whichever
 * commit crosses 1000 pages, copying megabytes and calling fsync right there. Here a worker
 * thread with its own connection checkpoints as the WAL grows, and the connection's automatic
 * checkpoint only steps in past `BACKSTOP_PAGES`. If the worker dies, the connection goes back
 * to SQLite's default, so the WAL never grows without bound. When writes pause the worker
 * truncates the WAL file, so an idle store holds no WAL space; on a nearly full disk the WAL is
 * kept to about 1 MiB under load as well.
 */
export class Checkpointer {
  readonly #db: BetterSqlite3.Database;
  readonly #worker: Worker | undefined;
  readonly #exited: Promise<void>;
  #stopping = false;
  #workerRunning = false;
  #lowSpace: boolean;
  /** The worker's last report said it idles; the next write wakes it. */
  #idle = false;
  /** Writes since the worker's last report. */
  #writes = 0;
  /** A wake is on its way and the worker has not reported since. */
  #woken = false;
  /** The connection's checkpoint settings lag behind the worker's state: the app refused them. */
  #stale = false;
  readonly #checkpointWaiters: Array<() => void> = [];

  /** `file` is the database's absolute path, which the worker opens in a thread of its own. */
  constructor(db: BetterSqlite3.Database, file: string) {
    this.#db = db;
    this.#lowSpace = lowOnSpace(file);
    let worker: Worker;
    try {
      worker = new Worker(new URL('./checkpoint-worker.js', import.meta.url), {
        workerData: { path: file },
      });
    } catch {
      // No worker threads here (a bundle without the worker file, a resource limit): SQLite checkpoints.
      this.#exited = Promise.resolve();
      this.#configure();
      return;
    }
    this.#workerRunning = true;
    this.#configure();
    worker.on('message', (report: WorkerReport) => {
      this.#idle = report.idle;
      this.#writes = 0;
      this.#woken = false;
      if (report.lowSpace !== this.#lowSpace || this.#stale) {
        this.#lowSpace = report.lowSpace;
        this.#configure();
      }
      this.#checkpointed();
    });
    const fallBack = () => {
      this.#workerRunning = false;
      this.#configure();
    };
    worker.on('error', fallBack);
    this.#exited = new Promise((resolve) => {
      worker.once('exit', () => {
        fallBack();
        this.#checkpointed();
        resolve();
      });
    });
    // After the listeners: adding a 'message' listener refs the worker's port again, and an
    // open store would then keep its process alive.
    worker.unref();
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

  /**
   * Wakes an idle worker on the first write, so it copies a burst as it comes rather than an
   * idle interval later. Low on space it also wakes a busy worker every `WAKE_EVERY_WRITES`
   * writes, so a fast stream of writes cannot outgrow the disk between two of its checkpoints.
   */
  wrote(): void {
    this.#writes++;
    // After the worker is gone no report comes: the store's own writes catch up instead.
    if (this.#stale) this.#configure();
    if (this.#woken || !this.#workerRunning) return;
    if (this.#idle || (this.#lowSpace && this.#writes >= WAKE_EVERY_WRITES)) {
      this.#woken = true;
      this.#worker?.postMessage('wake');
    }
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

  #checkpointed(): void {
    for (const wake of this.#checkpointWaiters.splice(0)) wake();
  }

  /** Sets the connection's own checkpoint and WAL size limit for the worker's state and the free space. */
  #configure(): void {
    if (this.#stopping || !this.#db.open) return;
    const autocheckpoint = this.#lowSpace
      ? LOW_SPACE_WAL_PAGES
      : this.#workerRunning
        ? BACKSTOP_PAGES
        : AUTOCHECKPOINT_PAGES;
    try {
      this.#db.pragma(`wal_autocheckpoint = ${autocheckpoint}`);
      this.#db.pragma(`journal_size_limit = ${walSizeLimitBytes(this.#lowSpace)}`);
      this.#stale = false;
    } catch {
      // An app iterating one of its statements on a shared connection, across an await, refuses
      // pragmas; thrown from the worker's event, that would end the process. Set them later.
      this.#stale = true;
    }
  }
}
