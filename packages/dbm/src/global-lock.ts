import { dirname, join } from 'node:path';
import { SessionError } from '@sessile/core';
import {
  generateToken,
  type HostGuards,
  LeaseFiles,
  syncLockFileSystem,
  yieldToEventLoop,
} from '@sessile/core/store';

export interface GlobalLockStats {
  /** Times this process took the lock. */
  acquired: number;
  /** Acquisitions that found another process holding it and had to wait. */
  contended: number;
  /** Locks of dead or expired holders this process broke. */
  takeovers: number;
  /** Holds that ended with the lock no longer ours (the lease ran out mid-hold). */
  lost: number;
  /** Sum and maximum of the time between taking and releasing the lock, in ms. */
  totalHoldMs: number;
  longestHoldMs: number;
}

/**
 * Operations finish in microtasks (the file I/O is synchronous), so a caller awaiting them in a
 * loop would never let timers, I/O or a sweep's next batch run. Queued operations give the event
 * loop a turn at least this often.
 */
const EVENT_LOOP_TURN_MS = 2;
/**
 * The steps queued for one hold run back to back until this much time has passed; the rest wait
 * for the next hold, behind whoever queued in between.
 */
const STEPS_PER_HOLD_MS = 1;
/** The global lock's back-off between two claims tops out here: holds last microseconds. */
const MAX_POLL_DELAY_MS = 8;
/** The lock's one lease file, in the lock directory. */
const LOCK_FILE = '0.lock';

/**
 * mod_python's lock 0: one lock every process on the host takes around every operation. It is
 * a lease in core's `LeaseFiles` at `<directory>/0.lock`: one `pwrite` and one `link` to take,
 * one `fstat` and one `unlink` to release. A holder that crashed frees it once its lease
 * (`globalLockLeaseMs`) ends, or at once when its process is gone from this host. Within a
 * process callers queue in FIFO order, so only one of them polls the file; once refused, it is
 * also woken when the file is removed. The synchronous steps queued while a hold waits share it:
 * taking and releasing the lock costs four system calls, more than reading a record.
 */
export class GlobalLock {
  readonly #lockPath: string;
  readonly #leases: LeaseFiles;
  readonly #leaseMs: number;
  readonly #waitMs: number;
  /** Runs at the start of every hold, once the lock is taken; a throw fails the hold's steps. */
  readonly #onHold: () => void;
  /** Tokens are this instance's random prefix and a count: unique without a random draw per hold. */
  readonly #tokenPrefix = generateToken();
  #holds = 0;
  /** Steps waiting for the hold that the first of them asked for. */
  #steps: Step[] = [];
  #lastTurnAt = performance.now();
  #closed = false;
  #tail: Promise<void> = Promise.resolve();
  readonly #stats: GlobalLockStats = {
    acquired: 0,
    contended: 0,
    takeovers: 0,
    lost: 0,
    totalHoldMs: 0,
    longestHoldMs: 0,
  };

  constructor(
    directory: string,
    leaseMs: number,
    waitMs: number,
    guards: HostGuards,
    onHold: () => void = () => {},
  ) {
    this.#lockPath = join(directory, LOCK_FILE);
    this.#leases = new LeaseFiles({
      guards,
      fs: syncLockFileSystem,
      fileMode: 0o600,
      directoryMode: 0o700,
      pathOf: () => this.#lockPath,
      storeDirectory: dirname(directory),
    });
    this.#leaseMs = leaseMs;
    this.#waitMs = waitMs;
    this.#onHold = onHold;
  }

  stats(): GlobalLockStats {
    return { ...this.#stats };
  }

  /**
   * Runs one synchronous step under the lock, in one hold with the other steps queued before
   * that hold begins.
   */
  run<T>(step: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#steps.push({ step, resolve: resolve as (value: unknown) => void, reject });
      if (this.#steps.length === 1) this.#holdSteps();
    });
  }

  /** Asks for a hold for the queued steps; if none comes, every one of them fails with its error. */
  #holdSteps(): void {
    let ran = false;
    this.hold(() => {
      ran = true;
      this.#runSteps();
    }).catch((error: unknown) => {
      // Steps that ran are settled already; the queue then belongs to the next hold.
      if (ran) return;
      for (const queued of this.#steps.splice(0)) queued.reject(error);
    });
  }

  /** Inside a hold: runs the queued steps in order, and hands those left past the time limit to the next hold. */
  #runSteps(): void {
    const steps = this.#steps;
    this.#steps = [];
    const endAt = performance.now() + STEPS_PER_HOLD_MS;
    for (let i = 0; i < steps.length; i++) {
      if (i > 0 && performance.now() >= endAt) {
        this.#steps = steps.slice(i);
        this.#holdSteps();
        return;
      }
      const queued = steps[i] as Step;
      try {
        queued.resolve(queued.step());
      } catch (error) {
        queued.reject(error);
      }
    }
  }

  /**
   * Holds the lock across `body`, awaits included. `renew` restarts the lease; call it between
   * the steps of a long hold so other processes do not take the lock over.
   */
  async hold<T>(body: (renew: () => Promise<void>) => Promise<T> | T): Promise<T> {
    const leave = await this.#enter();
    try {
      if (this.#closed) throw new SessionError('ERR_STORE_CLOSED', 'The store is closed');
      await this.turn();
      const token = await this.#acquire();
      const started = performance.now();
      try {
        this.#onHold();
        return await body(async () => {
          if (!(await this.#leases.extendAt(this.#lockPath, token, Date.now() + this.#leaseMs))) {
            throw new SessionError(
              'ERR_STORE_IO',
              `Lost the dbm file's global lock ${this.#lockPath}: its lease ran out`,
            );
          }
        });
      } finally {
        const heldMs = performance.now() - started;
        this.#stats.totalHoldMs += heldMs;
        this.#stats.longestHoldMs = Math.max(this.#stats.longestHoldMs, heldMs);
        if (!(await this.#leases.releaseAt(this.#lockPath, token))) this.#stats.lost++;
      }
    } finally {
      leave();
    }
  }

  /**
   * A turn of the event loop when this process's file calls (holds, and the session-lock claims
   * that ask for one) have gone on without one for `EVENT_LOOP_TURN_MS`, else nothing to wait for.
   */
  turn(): Promise<void> | undefined {
    if (performance.now() - this.#lastTurnAt <= EVENT_LOOP_TURN_MS) return undefined;
    return yieldToEventLoop().then(() => {
      this.#lastTurnAt = performance.now();
    });
  }

  /** Rejects later holds with `ERR_STORE_CLOSED` and removes this lock's holder files. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#leases.close();
  }

  #enter(): Promise<() => void> {
    let leave!: () => void;
    const mine = new Promise<void>((resolve) => {
      leave = resolve;
    });
    const before = this.#tail;
    this.#tail = before.then(() => mine);
    return before.then(() => leave);
  }

  /** Takes the lock; resolves with its token. */
  async #acquire(): Promise<string> {
    const started = Date.now();
    let delayMs = 1;
    let wake: (() => void) | undefined;
    let unwatch: (() => void) | undefined;
    try {
      for (let attempt = 0; ; attempt++) {
        // Checked before every claim, after the turn and each pause: a claim once `close` began
        // would make the instance's holder file again, and its heartbeat, after they were removed.
        if (this.#closed) throw new SessionError('ERR_STORE_CLOSED', 'The store is closed');
        const token = `${this.#tokenPrefix}.${++this.#holds}`;
        // A lock directory removed by hand is made again by the claim.
        const outcome = await this.#leases.claimAt(
          this.#lockPath,
          token,
          Date.now() + this.#leaseMs,
        );
        if (outcome !== 'refused') {
          this.#stats.acquired++;
          if (attempt > 0) this.#stats.contended++;
          if (outcome === 'reclaimed') this.#stats.takeovers++;
          return token;
        }
        if (Date.now() - started >= this.#waitMs) {
          throw new SessionError(
            'ERR_STORE_BUSY',
            `Waited ${this.#waitMs} ms (globalLockWaitMs) for the dbm file's global lock ${this.#lockPath}, held by another process or store instance; retry later`,
          );
        }
        // A release by another process ends the pause early.
        unwatch ??= this.#leases.watchAt(this.#lockPath, () => wake?.());
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delayMs * (0.5 + Math.random()));
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
        delayMs = Math.min(MAX_POLL_DELAY_MS, delayMs * 2);
      }
    } finally {
      unwatch?.();
    }
  }
}

/** A synchronous step waiting for the global lock, and how to settle its caller's promise. */
interface Step {
  step(): unknown;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}
