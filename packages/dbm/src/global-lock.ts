import {
  closeSync,
  fstatSync,
  linkSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { SessionError } from '@sessile/core';
import { generateToken, sleep, yieldToEventLoop } from '@sessile/core/store';
import { HOLDER_BYTES, isCode, processAlive, removeIfPresent, withGuard } from './lock-file.js';

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
 * A holder whose process id is gone is stale once its lock is this old. The wait guards against a
 * live holder whose process id this process cannot see; every hold renews well within it.
 */
const DEAD_HOLDER_GRACE_MS = 1000;
const HOLDER_SUFFIX = '.holder';

interface Holder {
  token: string;
  leaseMs: number;
  pid: number;
}

function encode(holder: Holder): Buffer {
  const buf = Buffer.alloc(HOLDER_BYTES, 0x20);
  buf.write(`${holder.token} ${holder.leaseMs} ${holder.pid}\n`, 0, 'latin1');
  return buf;
}

function decode(buf: Buffer): Holder | undefined {
  const [token, leaseMs, pid] = buf.toString('latin1').trim().split(' ');
  const lease = Number(leaseMs);
  const processId = Number(pid);
  if (!token || !(lease > 0) || !Number.isInteger(processId)) return undefined;
  return { token, leaseMs: lease, pid: processId };
}

type Seen = { kind: 'absent' } | { kind: 'held'; ino: number; stale: boolean };

/**
 * mod_python's lock 0: one lock every process on the host takes around every operation.
 *
 * Each store instance owns a holder file (`0.<pid>.<token>.holder`) naming itself, and takes
 * the lock by hard-linking it to `0.lock`: one `link` to take, one `unlink` to release, which is
 * far cheaper than creating a file. The lease runs from the lock file's ctime, which `link` and
 * every renewal (a rewrite of the holder file) update; a holder whose process is gone is stale
 * after a second. Within a process callers queue in FIFO order, so only one of them polls the file.
 */
export class GlobalLock {
  readonly #directory: string;
  readonly #lockPath: string;
  readonly #guardPath: string;
  readonly #holderPath: string;
  readonly #holder: Holder;
  readonly #waitMs: number;
  #holderFd: number | undefined;
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

  constructor(directory: string, leaseMs: number, waitMs: number) {
    this.#directory = directory;
    this.#lockPath = join(directory, '0.lock');
    this.#guardPath = join(directory, '0.guard');
    this.#holder = { token: generateToken(), leaseMs, pid: process.pid };
    this.#holderPath = join(directory, `0.${process.pid}.${this.#holder.token}${HOLDER_SUFFIX}`);
    this.#waitMs = waitMs;
  }

  stats(): GlobalLockStats {
    return { ...this.#stats };
  }

  /** Runs one synchronous step under the lock. */
  run<T>(step: () => T): Promise<T> {
    return this.hold(() => step());
  }

  /**
   * Holds the lock across `body`, awaits included. `renew` restarts the lease; call it between
   * the steps of a long hold so other processes do not take the lock over.
   */
  async hold<T>(body: (renew: () => void) => Promise<T> | T): Promise<T> {
    const leave = await this.#enter();
    try {
      if (this.#closed) throw new SessionError('ERR_STORE_CLOSED', 'The store is closed');
      if (performance.now() - this.#lastTurnAt > EVENT_LOOP_TURN_MS) {
        await yieldToEventLoop();
        this.#lastTurnAt = performance.now();
      }
      const expiresAt = { value: await this.#acquire() };
      const started = performance.now();
      try {
        return await body(() => {
          expiresAt.value = this.#renew();
        });
      } finally {
        const heldMs = performance.now() - started;
        this.#stats.totalHoldMs += heldMs;
        this.#stats.longestHoldMs = Math.max(this.#stats.longestHoldMs, heldMs);
        await this.#release(expiresAt.value);
      }
    } finally {
      leave();
    }
  }

  /** Rejects later holds with `ERR_STORE_CLOSED` and removes this instance's holder file. */
  close(): void {
    this.#closed = true;
    if (this.#holderFd !== undefined) {
      closeSync(this.#holderFd);
      this.#holderFd = undefined;
    }
    removeIfPresent(this.#holderPath);
  }

  /** Deletes the holder files (of this lock and of session locks) left behind by killed processes. */
  removeOrphans(): void {
    for (const name of readdirSync(this.#directory)) {
      if (!name.endsWith(HOLDER_SUFFIX)) continue;
      const pid = Number(name.split('.')[1]);
      if (Number.isInteger(pid) && pid !== process.pid && !processAlive(pid)) {
        removeIfPresent(join(this.#directory, name));
      }
    }
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

  #ensureHolderFile(): number {
    if (this.#holderFd === undefined) {
      const fd = openSync(this.#holderPath, 'w', 0o600);
      writeSync(fd, encode(this.#holder), 0, HOLDER_BYTES, 0);
      this.#holderFd = fd;
    }
    return this.#holderFd;
  }

  /** Takes the lock; resolves with the lease end. */
  async #acquire(): Promise<number> {
    const started = Date.now();
    let delayMs = 1;
    for (let attempt = 0; ; attempt++) {
      if (await this.#attempt()) {
        this.#stats.acquired++;
        if (attempt > 0) this.#stats.contended++;
        return Date.now() + this.#holder.leaseMs;
      }
      if (Date.now() - started >= this.#waitMs) {
        throw new SessionError(
          'ERR_STORE_BUSY',
          `Waited ${this.#waitMs} ms (globalLockWaitMs) for the dbm file's global lock ${this.#lockPath}, held by another process or store instance; retry later`,
        );
      }
      await sleep(delayMs * (0.5 + Math.random()));
      delayMs = Math.min(8, delayMs * 2);
    }
  }

  async #attempt(): Promise<boolean> {
    for (let tries = 0; tries < 3; tries++) {
      this.#ensureHolderFile();
      try {
        linkSync(this.#holderPath, this.#lockPath);
        return true;
      } catch (error) {
        if (isCode(error, 'ENOENT')) {
          // Our holder file was removed from under us: write it again.
          if (this.#holderFd !== undefined) closeSync(this.#holderFd);
          this.#holderFd = undefined;
          continue;
        }
        if (!isCode(error, 'EEXIST')) throw error;
      }
      const seen = this.#inspect();
      if (seen.kind === 'absent') continue;
      if (!seen.stale) return false;
      await withGuard(this.#guardPath, () => {
        const again = this.#inspect();
        if (again.kind === 'held' && again.ino === seen.ino && again.stale) {
          removeIfPresent(this.#lockPath);
          this.#stats.takeovers++;
        }
      });
    }
    return false;
  }

  #inspect(): Seen {
    let buf: Buffer;
    let stats: { ino: number; ctimeMs: number };
    try {
      buf = readFileSync(this.#lockPath);
      stats = statSync(this.#lockPath);
    } catch (error) {
      if (isCode(error, 'ENOENT')) return { kind: 'absent' };
      throw error;
    }
    const holder = decode(buf);
    const now = Date.now();
    // A lock file that does not name a holder is garbage from another program: stale after a default lease.
    const leaseMs = holder?.leaseMs ?? 10_000;
    const expired = stats.ctimeMs + leaseMs <= now;
    const dead =
      holder !== undefined &&
      holder.pid !== process.pid &&
      stats.ctimeMs + Math.min(leaseMs, DEAD_HOLDER_GRACE_MS) <= now &&
      !processAlive(holder.pid);
    return { kind: 'held', ino: stats.ino, stale: expired || dead };
  }

  #renew(): number {
    const fd = this.#ensureHolderFile();
    if (fstatSync(fd).nlink < 2) {
      throw new SessionError('ERR_STORE_IO', "Lost the dbm file's global lock: its lease ran out");
    }
    // Rewriting the holder updates its ctime, where the lease runs from.
    writeSync(fd, encode(this.#holder), 0, HOLDER_BYTES, 0);
    return Date.now() + this.#holder.leaseMs;
  }

  async #release(expiresAt: number): Promise<void> {
    const fd = this.#ensureHolderFile();
    // Well inside the lease nobody may take the lock over, so no guard is needed.
    if (Date.now() < expiresAt - Math.min(1000, this.#holder.leaseMs / 2)) {
      if (fstatSync(fd).nlink >= 2) unlinkSync(this.#lockPath);
      else this.#stats.lost++;
      return;
    }
    await withGuard(this.#guardPath, () => {
      const seen = this.#inspect();
      if (seen.kind === 'held' && seen.ino === fstatSync(fd).ino) removeIfPresent(this.#lockPath);
      else this.#stats.lost++;
    });
  }
}
