import { SessionError } from '@sessile/core';
import { sleep } from '@sessile/core/store';
import type BetterSqlite3 from 'better-sqlite3';
import { prepare } from './statements.js';

/**
 * The longest one statement blocks the event loop inside SQLite's own busy handler. Past it the
 * statement is retried asynchronously, so a lock held through another thread's fsync (the
 * checkpoint worker's WAL rewind, another process's commit) never stalls requests.
 */
const BUSY_SLICE_MS = 2;
/** The most operations one group commit holds, so a burst never blocks the event loop for long. */
const MAX_GROUP_SIZE = 256;

interface Job {
  run(): unknown;
  write: boolean;
  /** When a write stops waiting for another connection's lock: `busyTimeoutMs` after its call. */
  deadline: number;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** True for the errors SQLite reports when another connection holds the lock it needs. */
export function isBusyError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code === 'SQLITE_LOCKED');
}

/**
 * Sets SQLite's busy handler to one short slice; `retryWhileBusy` waits out the rest of
 * `busyTimeoutMs` asynchronously, so a locked database never stalls the event loop for long.
 */
export function setBusySlice(db: BetterSqlite3.Database, busyTimeoutMs: number): void {
  db.pragma(busySlice(busyTimeoutMs));
}

function busySlice(busyTimeoutMs: number): string {
  return `busy_timeout = ${Math.min(BUSY_SLICE_MS, busyTimeoutMs)}`;
}

/**
 * Runs `attempt` until it stops failing with SQLITE_BUSY or `busyTimeoutMs` has passed, backing
 * off between attempts. Each attempt must be all-or-nothing, such as one statement or one
 * transaction.
 */
export function retryWhileBusy<T>(attempt: () => T, busyTimeoutMs: number): Promise<T> {
  const deadline = Date.now() + busyTimeoutMs;
  return retryWhileBusyUntil(attempt, () => deadline);
}

/** As `retryWhileBusy`, until `deadline(busy)`, asked again after every attempt that met a lock. */
async function retryWhileBusyUntil<T>(
  attempt: () => T,
  deadline: (busy: unknown) => number,
): Promise<T> {
  let delayMs = 1;
  for (;;) {
    try {
      return attempt();
    } catch (error) {
      if (!isBusyError(error)) throw error;
      const remainingMs = deadline(error) - Date.now();
      if (remainingMs <= 0) throw error;
      await sleep(Math.min(remainingMs, delayMs * (0.5 + Math.random())));
      delayMs = Math.min(50, delayMs * 2);
    }
  }
}

/**
 * Runs every statement of one store on its connection, and makes operations take effect in the
 * order they were called. With group commit, everything queued while the event loop turns
 * commits in one transaction: the pages, locks and fsync of one commit are shared by every write
 * in it. Without it (a private in-memory database), a write runs at once. An operation that finds
 * the database locked by another process goes into a group too, and everything called after it
 * waits behind.
 */
export class Executor {
  readonly #db: BetterSqlite3.Database;
  /** Prepared once: `exec` would compile the statement again for every group. */
  readonly #begin: BetterSqlite3.Statement<[]>;
  readonly #beginRead: BetterSqlite3.Statement<[]>;
  readonly #commit: BetterSqlite3.Statement<[]>;
  readonly #busyTimeoutMs: number;
  readonly #groupCommit: boolean;
  readonly #afterWrite: (() => void) | undefined;
  readonly #beforeCommit: (() => void) | undefined;
  /** On an app's connection: the store's busy slice for each of its groups, then the app's own. */
  readonly #busySlice: BetterSqlite3.Statement<[]> | undefined;
  readonly #appBusyTimeout: BetterSqlite3.Statement<[]> | undefined;
  readonly #location: string | undefined;
  #queue: Job[] = [];
  #draining: Promise<void> | undefined;
  #closed = false;

  constructor(
    db: BetterSqlite3.Database,
    options: {
      busyTimeoutMs: number;
      groupCommit: boolean;
      afterWrite?: () => void;
      /** Runs before every write commits; a throw rejects the write and commits nothing. */
      beforeCommit?: () => void;
      /**
       * The busy timeout of an app's own connection, set again after each group, so the
       * app's statements wait for other connections as long as it chose, not the store's slice.
       */
      appBusyTimeoutMs?: number;
      /** The database file that the error of a connection closed outside the store names. */
      location?: string;
    },
  ) {
    this.#db = db;
    this.#begin = prepare(db, 'BEGIN IMMEDIATE');
    this.#beginRead = prepare(db, 'BEGIN');
    this.#commit = prepare(db, 'COMMIT');
    this.#busyTimeoutMs = options.busyTimeoutMs;
    this.#groupCommit = options.groupCommit;
    this.#afterWrite = options.afterWrite;
    this.#beforeCommit = options.beforeCommit;
    this.#location = options.location;
    const { appBusyTimeoutMs } = options;
    if (appBusyTimeoutMs !== undefined) {
      this.#busySlice = prepare(db, `PRAGMA ${busySlice(options.busyTimeoutMs)}`);
      this.#appBusyTimeout = prepare(db, `PRAGMA busy_timeout = ${appBusyTimeoutMs}`);
    }
  }

  /**
   * Runs a read-only operation. It waits behind queued writes so it sees them. With group
   * commit, the reads of one event-loop turn share one read transaction: outside a transaction
   * each statement takes and drops the WAL's read lock itself, and those system calls cost
   * about three times the lookup of a session.
   */
  read<T>(operation: () => T): Promise<T> {
    if (this.#groupCommit || this.#draining !== undefined) return this.#enqueue(operation, false);
    return this.#runNow(operation, false);
  }

  /** Runs a write: one statement, or a function that is atomic on its own. Resolves once it is committed. */
  write<T>(operation: () => T): Promise<T> {
    const afterWrite = this.#afterWrite;
    const write =
      afterWrite === undefined
        ? operation
        : () => {
            const result = operation();
            afterWrite();
            return result;
          };
    if (this.#groupCommit || this.#draining !== undefined) return this.#enqueue(write, true);
    return this.#runNow(write, true);
  }

  /** Waits for queued operations to commit, then refuses new ones. */
  async close(): Promise<void> {
    while (this.#draining !== undefined) await this.#draining;
    this.#closed = true;
  }

  #runNow<T>(operation: () => T, write: boolean): Promise<T> {
    if (this.#closed) return Promise.reject(closedError());
    try {
      // Inside the app's transaction a write would commit or roll back with it: a group refuses it.
      if (write && this.#db.inTransaction) return this.#enqueue(operation, write);
      // An autocommit write commits inside operation(), so the check goes right before it.
      if (write) this.#beforeCommit?.();
      return Promise.resolve(operation());
    } catch (error) {
      // Each operation is all-or-nothing, so one that met a lock can simply run again in a group.
      if (isBusyError(error)) return this.#enqueue(operation, write);
      // A group's BEGIN tells whether the app holds the connection (iterating a statement).
      if (write && error instanceof TypeError && this.#db.open)
        return this.#enqueue(operation, write);
      return Promise.reject(this.#failure(error));
    }
  }

  #enqueue<T>(operation: () => T, write: boolean): Promise<T> {
    if (this.#closed) return Promise.reject(closedError());
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({
        run: operation,
        write,
        deadline: Date.now() + this.#busyTimeoutMs,
        resolve: resolve as (value: unknown) => void,
        reject,
      });
      this.#draining ??= this.#drain();
    });
  }

  async #drain(): Promise<void> {
    try {
      let wait = true;
      while (this.#queue.length > 0) {
        // Let every operation started in this turn of the event loop join the group.
        if (wait) await new Promise<void>((resolve) => setImmediate(resolve));
        const queue = this.#queue;
        let reads = 0;
        while (reads < queue.length && reads < MAX_GROUP_SIZE && !queue[reads]?.write) reads++;
        // Reads queued ahead of every write need no write lock, so they never wait for one; the
        // writes behind them go next, without waiting for another turn.
        wait = reads === 0;
        if (reads > 0) await this.#readGroup(queue.splice(0, reads));
        else await this.#commitGroup(queue.splice(0, MAX_GROUP_SIZE));
      }
    } finally {
      this.#draining = undefined;
    }
  }

  /**
   * Commits a group that starts with a write, reads after it included, in one write transaction.
   * When the group cannot commit, its writes reject and its reads run as a read group, so they
   * answer on a full disk, a deleted file or a locked database as they would alone.
   */
  async #commitGroup(group: Job[]): Promise<void> {
    let outcomes: Outcome[] | undefined;
    let pending = group;
    try {
      // Only a BEGIN that met another connection's lock waits, and it has begun nothing. Each
      // write waits `busyTimeoutMs` from its own call, not from when its group began: a group
      // queued behind one that waited would otherwise wait as long again.
      outcomes = await retryWhileBusyUntil(
        () => this.#runWrites(pending),
        (busy) => {
          pending = this.#rejectOverdue(pending, busy);
          return latestDeadline(pending);
        },
      );
    } catch (error) {
      this.#rejectWrites(pending, error);
    }
    if (outcomes !== undefined) return this.#settleAll(pending, outcomes);
    const reads = pending.filter((job) => !job.write);
    if (reads.length > 0) await this.#readGroup(reads);
  }

  /** Rejects the writes of `group` whose wait for the lock is over; the rest of the group. */
  #rejectOverdue(group: Job[], busy: unknown): Job[] {
    const now = Date.now();
    if (!group.some((job) => job.write && job.deadline <= now)) return group;
    const failure = this.#failure(busy);
    return group.filter((job) => {
      if (!job.write || job.deadline > now) return true;
      job.reject(failure);
      return false;
    });
  }

  /**
   * BEGIN, the group's jobs and COMMIT in one synchronous stretch, so no other code on the
   * connection (an app sharing `database`) runs inside the store's transaction. Only BEGIN
   * throws; a group that cannot commit rejects its writes here and returns `undefined`.
   */
  #runWrites(group: Job[]): Outcome[] | undefined {
    return this.#inBusySlice(() => this.#runWritesInSlice(group));
  }

  /** Runs `work` under the store's busy slice on an app's connection, then sets the app's back. */
  #inBusySlice<T>(work: () => T): T {
    const slice = this.#busySlice;
    if (slice === undefined) return work();
    try {
      slice.run();
    } catch (error) {
      // The app is iterating a statement, which refuses pragmas: work runs as its statements do.
      if (error instanceof TypeError) return work();
      throw error;
    }
    try {
      return work();
    } finally {
      this.#appBusyTimeout?.run();
    }
  }

  #runWritesInSlice(group: Job[]): Outcome[] | undefined {
    const db = this.#db;
    const appTransaction = db.inTransaction;
    try {
      this.#begin.run();
    } catch (error) {
      // better-sqlite3 refuses BEGIN while the app iterates a statement, SQLite inside its transaction.
      if (db.open && (appTransaction || error instanceof TypeError)) throw this.#heldByApp(error);
      throw error;
    }
    const outcomes: Outcome[] = [];
    try {
      for (const job of group) {
        try {
          outcomes.push({ ok: true, value: job.run() });
        } catch (error) {
          // A failed statement undoes only itself, unless SQLite had to roll the whole transaction back.
          if (!db.inTransaction) throw error;
          outcomes.push({ ok: false, value: error });
        }
      }
      this.#beforeCommit?.();
      this.#commit.run();
      return outcomes;
    } catch (error) {
      rollBack(db);
      this.#rejectWrites(group, error);
      return undefined;
    }
  }

  /**
   * Runs a group of reads in one deferred transaction, which takes no write lock. Reads change
   * nothing, so a group that met another connection's lock simply runs again.
   */
  async #readGroup(group: Job[]): Promise<void> {
    let outcomes: Outcome[];
    try {
      outcomes = await retryWhileBusy(() => this.#runReads(group), this.#busyTimeoutMs);
    } catch (error) {
      return this.#rejectAll(group, error);
    }
    this.#settleAll(group, outcomes);
  }

  #runReads(group: Job[]): Outcome[] {
    return this.#inBusySlice(() => this.#runReadsInSlice(group));
  }

  #runReadsInSlice(group: Job[]): Outcome[] {
    const grouped = this.#beginReadIfFree();
    const outcomes: Outcome[] = [];
    try {
      for (const job of group) {
        try {
          outcomes.push({ ok: true, value: job.run() });
        } catch (error) {
          if (isBusyError(error)) throw error;
          outcomes.push({ ok: false, value: error });
        }
      }
    } finally {
      // Ending a transaction that wrote nothing: a prepared COMMIT, not a freshly compiled ROLLBACK.
      try {
        if (grouped) this.#commit.run();
      } catch {
        rollBack(this.#db);
      }
    }
    return outcomes;
  }

  /**
   * Begins the read group's transaction, unless the app holds the shared connection: inside its
   * own transaction, or iterating a statement (better-sqlite3 then refuses BEGIN, but not a
   * SELECT). The reads then run as they would alone, each a statement of its own.
   */
  #beginReadIfFree(): boolean {
    if (this.#db.inTransaction) return false;
    try {
      this.#beginRead.run();
      return true;
    } catch (error) {
      if (error instanceof TypeError) return false;
      throw error;
    }
  }

  /** The app holds the shared connection across an await, so waiting here could never end. */
  #heldByApp(error: unknown): SessionError {
    const database = this.#location ?? 'the in-memory database';
    return new SessionError(
      'ERR_STORE_BUSY',
      `The connection to ${database} is busy: the app holds it (inside its own transaction, or iterating one of its statements), and the store cannot write there; retry once the app has finished`,
      { cause: error },
    );
  }

  #settleAll(group: Job[], outcomes: Outcome[]): void {
    group.forEach((job, i) => {
      const outcome = outcomes[i];
      if (outcome?.ok) job.resolve(outcome.value);
      else job.reject(this.#failure(outcome?.value));
    });
  }

  #rejectAll(group: Job[], error: unknown): void {
    const failure = this.#failure(error);
    for (const job of group) job.reject(failure);
  }

  #rejectWrites(group: Job[], error: unknown): void {
    const failure = this.#failure(error);
    for (const job of group) if (job.write) job.reject(failure);
  }

  /**
   * `error` as the operation rejects with it. better-sqlite3 throws a `TypeError` on a connection
   * the app closed, which core would pass on as the caller's misuse: it is a store failure.
   */
  #failure(error: unknown): unknown {
    if (!(error instanceof TypeError) || this.#db.open) return error;
    const database = this.#location ?? 'the database';
    return new SessionError(
      'ERR_STORE_IO',
      `The connection to ${database} is not open: it was closed outside the store (database.close()); open the store again on an open connection`,
      { cause: error },
    );
  }
}

/** When the last write of `group` stops waiting for a lock; long past when it holds none. */
function latestDeadline(group: readonly Job[]): number {
  let latest = Number.NEGATIVE_INFINITY;
  for (const job of group) if (job.write && job.deadline > latest) latest = job.deadline;
  return latest;
}

/** What one job of a group came to: its value, or the error it threw. */
interface Outcome {
  ok: boolean;
  value: unknown;
}

function rollBack(db: BetterSqlite3.Database): void {
  try {
    if (db.inTransaction) db.exec('ROLLBACK');
  } catch {
    // SQLite has already rolled back; nothing is left to undo.
  }
}

function closedError(): SessionError {
  return new SessionError('ERR_STORE_CLOSED', 'The store is closed');
}
