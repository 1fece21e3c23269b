import {
  closeSync,
  fstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { SessionError } from '@sessile/core';
import {
  decodeHolder,
  generateToken,
  type HolderRecord,
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
  /**
   * Claims put off because the lock's lease had ended (or was about to) while its holder, a
   * process on this host, was still alive (stopped, or stalled): it is waited for, never taken over.
   */
  liveHolderWaits: number;
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
 * A live holder's lease this close to its end is not claimed: core's claim takes over an ended
 * lease, and the lease may end between this process's look at its holder and the claim.
 */
const LIVE_HOLDER_MARGIN_MS = 1000;
/** As core's lease records name the host. */
const HOST = hostname().slice(0, 64);
/** Kernel clock ticks per second in `/proc/<pid>/stat`: 100 on every Linux build Node runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

/**
 * mod_python's lock 0: one lock every process on the host takes around every operation. It is
 * a lease in core's `LeaseFiles` at `<directory>/0.lock`: one `pwrite` and one `link` to take,
 * one `fstat` and one `unlink` to release. A holder that crashed frees it once its lease
 * (`globalLockLeaseMs`) ends, or at once when its process is gone from this host. Within a
 * process callers queue in FIFO order, so only one of them polls the file; once refused, it is
 * also woken when the file is removed. The synchronous steps queued while a hold waits share it:
 * taking and releasing the lock costs four system calls, more than reading a record.
 *
 * A lease is no fence: a holder stopped past its lease (SIGSTOP, a swap storm) and taken over
 * would, once it runs again, finish the change it had begun over the new holder's. So a lease
 * whose holder is a live process on this host is never taken over, however long ago it ended,
 * and every write of a hold first checks (`assertHeld`) that the lock is still its own.
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
  /** Set by `stopWaiting`: a refused claim is not tried again. */
  #stopWaiting = false;
  /** Ends the pause between two claims early. */
  #wake: (() => void) | undefined;
  /** The dbm file's identity, which a live holder keeps open. */
  readonly #file: (() => { dev: number; ino: number }) | undefined;
  /** The token of the hold in progress, checked before every write to the file. */
  #heldToken: string | undefined;
  #tail: Promise<void> = Promise.resolve();
  readonly #stats: GlobalLockStats = {
    acquired: 0,
    contended: 0,
    takeovers: 0,
    lost: 0,
    liveHolderWaits: 0,
    totalHoldMs: 0,
    longestHoldMs: 0,
  };

  constructor(
    directory: string,
    leaseMs: number,
    waitMs: number,
    guards: HostGuards,
    onHold: () => void = () => {},
    file?: () => { dev: number; ino: number },
  ) {
    this.#lockPath = join(directory, LOCK_FILE);
    this.#file = file;
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
   * Throws `ERR_STORE_IO` unless a hold is in progress and its lease is still this instance's
   * (not ended, and the lock file still its link). Called before every write to the file.
   */
  assertHeld(): void {
    const token = this.#heldToken;
    if (token !== undefined && this.#leases.holdsAtSync(this.#lockPath, token)) return;
    throw new SessionError(
      'ERR_STORE_IO',
      token === undefined
        ? `A write to the dbm file outside a hold of its global lock ${this.#lockPath}`
        : `The hold of the dbm file's global lock ${this.#lockPath} outlived its lease (globalLockLeaseMs): the change stopped before its next write`,
    );
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
      this.#heldToken = token;
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
        this.#heldToken = undefined;
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

  /**
   * For a store's `close()`: a hold that finds the lock held by another process or instance
   * rejects with `ERR_STORE_CLOSED` at once, the one waiting now included, and so do the steps
   * queued for it, instead of waiting up to `globalLockWaitMs`; a free lock is still taken.
   */
  stopWaiting(): void {
    this.#stopWaiting = true;
    this.#wake?.();
  }

  /** Rejects later holds with `ERR_STORE_CLOSED` and removes this lock's holder files. */
  async close(): Promise<void> {
    this.#closed = true;
    this.stopWaiting();
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
    let unwatch: (() => void) | undefined;
    let liveHolder: HolderRecord | undefined;
    try {
      for (let attempt = 0; ; attempt++) {
        // Checked before every claim, after the turn and each pause: a claim once `close` began
        // would make the instance's holder file again, and its heartbeat, after they were removed.
        if (this.#closed) throw new SessionError('ERR_STORE_CLOSED', 'The store is closed');
        liveHolder = this.#liveHolderNearEnd();
        if (liveHolder !== undefined) this.#stats.liveHolderWaits++;
        const token = `${this.#tokenPrefix}.${++this.#holds}`;
        // A lock directory removed by hand is made again by the claim.
        const outcome =
          liveHolder !== undefined
            ? 'refused'
            : await this.#leases.claimAt(this.#lockPath, token, Date.now() + this.#leaseMs);
        if (outcome !== 'refused') {
          this.#stats.acquired++;
          if (attempt > 0) this.#stats.contended++;
          if (outcome === 'reclaimed') this.#stats.takeovers++;
          return token;
        }
        if (this.#stopWaiting) {
          throw new SessionError(
            'ERR_STORE_CLOSED',
            `The store was closed while waiting for the dbm file's global lock ${this.#lockPath}`,
          );
        }
        if (Date.now() - started >= this.#waitMs) {
          const holder =
            liveHolder === undefined
              ? 'held by another process or store instance'
              : `held past its lease by process ${liveHolder.pid}, which is alive (stopped or stalled) and is never taken over while it is`;
          throw new SessionError(
            'ERR_STORE_BUSY',
            `Waited ${this.#waitMs} ms (globalLockWaitMs) for the dbm file's global lock ${this.#lockPath}, ${holder}; retry later`,
          );
        }
        // A release by another process ends the pause early, as does `stopWaiting`.
        unwatch ??= this.#leases.watchAt(this.#lockPath, () => this.#wake?.());
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delayMs * (0.5 + Math.random()));
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.#wake = undefined;
        delayMs = Math.min(MAX_POLL_DELAY_MS, delayMs * 2);
      }
    } finally {
      unwatch?.();
    }
  }

  /**
   * The lock file's lease when it has ended or ends within `LIVE_HOLDER_MARGIN_MS` while its
   * holder, another process on this host, still runs: core would take it over, and the holder,
   * once it runs again, would go on writing its change into the file. Else undefined: no lock
   * file, a torn or bare one, a holder on another host, in this process (whose steps cannot
   * interleave with ours) or gone.
   */
  #liveHolderNearEnd(): HolderRecord | undefined {
    let fd: number;
    try {
      fd = openSync(this.#lockPath, 'r');
    } catch {
      return undefined;
    }
    let record: HolderRecord | undefined;
    let writtenAt: number;
    try {
      const bytes = Buffer.alloc(512);
      const length = readSync(fd, bytes, 0, bytes.length, 0);
      record = decodeHolder(bytes.toString('latin1', 0, length));
      writtenAt = fstatSync(fd).mtimeMs;
    } catch {
      return undefined;
    } finally {
      closeSync(fd);
    }
    if (
      record?.expiresAt === undefined ||
      record.expiresAt - Date.now() > LIVE_HOLDER_MARGIN_MS ||
      record.host !== HOST ||
      record.pid <= 0 ||
      record.pid === process.pid
    ) {
      return undefined;
    }
    if (!holderRunning(record.pid, writtenAt)) return undefined;
    // A pid on this host may name another process than the holder: one in another PID namespace
    // (a container sharing the host name) whose holder died. The holder keeps the file open.
    return this.#file === undefined || hasOpen(record.pid, this.#file()) !== false
      ? record
      : undefined;
  }
}

/**
 * Whether process `pid` runs and is the one that wrote a lease at `writtenAt`: a process that
 * started after it (a pid used again after the holder died, as in a restarted container) is
 * not, nor is a zombie (it died, and its parent has not reaped it yet).
 */
function holderRunning(pid: number, writtenAt: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const seen = procStat(pid);
  if (seen === undefined) return true;
  // A second of slack: the start time counts in clock ticks, the boot time in seconds.
  return seen.state !== 'Z' && seen.state !== 'X' && seen.startedAt <= writtenAt + 1000;
}

/** Process `pid`'s state letter and when it started (ms since the epoch), from `/proc` (Linux). */
/**
 * Whether process `pid` has the file `file` open, from `/proc/<pid>/fd`; undefined where that
 * cannot be read (not Linux, or another user's process).
 */
function hasOpen(pid: number, file: { dev: number; ino: number }): boolean | undefined {
  let descriptors: string[];
  try {
    descriptors = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return undefined;
  }
  for (const descriptor of descriptors) {
    try {
      const opened = statSync(`/proc/${pid}/fd/${descriptor}`);
      if (opened.ino === file.ino && opened.dev === file.dev) return true;
    } catch {
      // Closed since the listing, or a descriptor of a kind stat cannot follow.
    }
  }
  return false;
}

function procStat(pid: number): { state: string; startedAt: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // Fields 3 and 22, counted after the command name, which may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const startTicks = Number(fields[19]);
    const bootSeconds = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'latin1'))?.[1]);
    if (!Number.isFinite(startTicks) || !Number.isFinite(bootSeconds)) return undefined;
    return {
      state: fields[0] ?? '',
      startedAt: bootSeconds * 1000 + (startTicks * 1000) / CLOCK_TICKS_PER_SECOND,
    };
  } catch {
    return undefined;
  }
}

/** A synchronous step waiting for the global lock, and how to settle its caller's promise. */
interface Step {
  step(): unknown;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}
