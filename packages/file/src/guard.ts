import { SessionError, sleep } from '@sessile/core';
import lockfile from 'proper-lockfile';
import type { LockfileFs } from './fs.js';
import { MIN_GUARD_STALE_MS, SerialQueues } from './serial.js';

/**
 * proper-lockfile reported the guard compromised (its lockfile was taken over as stale while
 * held), so the critical section may have overlapped another process's.
 */
export class GuardCompromisedError extends SessionError {
  constructor(cause: Error) {
    super(
      'ERR_STORE_IO',
      'A guard lockfile was taken over while held; the operation may have raced another process',
      { cause },
    );
  }
}

/**
 * Short critical sections on one file, for every process on the host: an in-process FIFO per
 * key first, so this process never spins against itself, then a proper-lockfile lock
 * (`<file>.lock`, a directory made by an atomic mkdir, so NFS-safe). A crashed holder's
 * lockfile is taken over once its mtime is `staleMs` old.
 */
export class FileGuards extends SerialQueues {
  readonly staleMs: number;
  readonly #fs: LockfileFs;

  /** `fs` is what proper-lockfile calls: Node's own, or the store's synchronous flavour. */
  constructor(staleMs: number, fs: LockfileFs) {
    super();
    this.staleMs = Math.max(staleMs, MIN_GUARD_STALE_MS);
    this.#fs = fs;
  }

  /**
   * Runs `body` while holding the cross-process guard of `file` (the in-process order is the
   * caller's job, through `serialize`). Waits while another process holds it; a holder that
   * died is taken over after `staleMs`.
   */
  async hold<T>(file: string, body: () => Promise<T>): Promise<T> {
    let compromised: Error | undefined;
    const options: lockfile.LockOptions = {
      realpath: false,
      fs: this.#fs,
      stale: this.staleMs,
      retries: 0,
      onCompromised: (error) => {
        compromised = error;
      },
    };
    // A holder that died is taken over after staleMs; waiting much longer means the disk is stuck.
    const deadline = Date.now() + 3 * this.staleMs + 5000;
    let delayMs = 1;
    let release: (() => Promise<void>) | undefined;
    while (release === undefined) {
      try {
        release = await lockfile.lock(file, options);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') throw error;
        if (Date.now() > deadline) {
          throw new SessionError('ERR_STORE_IO', 'Timed out waiting for a write guard lockfile', {
            cause: error,
          });
        }
        await sleep(delayMs * (0.5 + Math.random()));
        delayMs = Math.min(delayMs * 2, 25);
      }
    }
    try {
      const result = await body();
      if (compromised !== undefined) throw new GuardCompromisedError(compromised);
      return result;
    } finally {
      await release().catch(() => {});
    }
  }

  /** `serialize` plus `hold`: one writer for `file` across this process and the host. */
  run<T>(file: string, body: () => Promise<T>): Promise<T> {
    return this.serialize(file, () => this.hold(file, body));
  }
}
