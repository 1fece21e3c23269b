import { join } from 'node:path';
import { SessionError, type SessionLock } from '@sessile/core';
import { yieldToEventLoop } from '@sessile/core/store';
import type { FileLocks } from './file-locks.js';
import type { StoreLayout } from './layout.js';
import type { OwnerIndex } from './owner-index.js';
import type { RecordFiles } from './record-files.js';
import { extended } from './store-sweep.js';

/** The single rebuilder's lease, at the store's top. */
export const OWNERS_REBUILD_LEASE_FILE = '.owners-rebuild';
/** The rebuilder's lease: one that dies blocks the others at most this long (less on its host). */
const REBUILD_LEASE_MS = 30_000;
/** How long a process waiting for another's rebuild sleeps between looks, at most (ms). */
const MAX_WAIT_STEP_MS = 250;

export interface OwnerRebuildInit {
  layout: StoreLayout;
  /**
   * The store's record files with calls through libuv's thread pool, whatever the store's `io`:
   * a rebuild reads every record's first bytes, which must not hold the event loop.
   */
  files: () => RecordFiles;
  /** The store's own index, on its own calls: what `ready` asks whether the index is complete. */
  owners: OwnerIndex;
  locks: FileLocks;
}

/**
 * Lists every record that carries an owner in the owner index again when the index was lost
 * (removed by hand, or made by an older version that kept no `.complete`). One process at a
 * time rebuilds, under a lease; the others wait for its `.complete`, or take over once its lease
 * ends. A rebuild only adds entries, and an entry too many is harmless (`ownedBy` checks each
 * record), so writers, removers and sweeps carry on beside it: an entry a writer or remover
 * takes away meanwhile is one its record no longer needs (see `OwnerIndex`), and a record
 * written meanwhile adds its own entry.
 */
export class OwnerRebuild {
  readonly #layout: StoreLayout;
  readonly #files: () => RecordFiles;
  readonly #owners: OwnerIndex;
  readonly #locks: FileLocks;
  readonly #closing = new AbortController();
  #running: Promise<void> | undefined;

  constructor(init: OwnerRebuildInit) {
    this.#layout = init.layout;
    this.#files = init.files;
    this.#owners = init.owners;
    this.#locks = init.locks;
  }

  /**
   * Resolves once the index can be trusted to list every record that carries an owner: at once
   * when its `.complete` is there (one `access`), after this process or another has rebuilt it
   * when it was lost. An index from an older version is rebuilt in the background, and trusted
   * meanwhile: its writers kept it whole, and an upgrade must not hold every login up for a pass
   * over all records. True when it had to wait for a rebuild.
   */
  async ready(): Promise<boolean> {
    const state = await this.#owners.state();
    if (state === 'complete') return false;
    this.#running ??= this.#rebuild().finally(() => {
      this.#running = undefined;
    });
    if (state === 'unverified') {
      this.#running.catch(() => {});
      return false;
    }
    await this.#running;
    return true;
  }

  /** Starts a rebuild in the background when one is needed (at open); `ready` waits for it. */
  start(): void {
    this.ready().catch(() => {});
  }

  /** Stops a rebuild (or a wait for another process's) before its next step, and waits for it. */
  async close(): Promise<void> {
    this.#closing.abort();
    await this.#running?.catch(() => {});
  }

  async #rebuild(): Promise<void> {
    const leaseFile = join(this.#layout.path, OWNERS_REBUILD_LEASE_FILE);
    for (let waitMs = 5; ; waitMs = Math.min(2 * waitMs, MAX_WAIT_STEP_MS)) {
      this.#assertOpen();
      const lock = await this.#locks.tryLease(leaseFile, REBUILD_LEASE_MS);
      if (lock !== undefined) {
        try {
          // Another process may have finished between the look and the lease.
          if ((await this.#owners.state()) === 'complete') return;
          if (await this.#pass(lock)) return;
        } finally {
          await lock.release().catch(() => {});
        }
      }
      // Another process rebuilds (or this pass could not finish): wait for a `.complete`, or for
      // the other's lease to end (it died), then try again.
      await sleep(waitMs, this.#closing.signal);
      if ((await this.#owners.state()) === 'complete') return;
    }
  }

  /**
   * One pass over every record: each one's owner, from its first bytes, gets its entry. False
   * when it could not finish (the lease was lost, or the index was removed again meanwhile).
   */
  async #pass(lock: SessionLock): Promise<boolean> {
    const files = this.#files();
    const owners = files.owners;
    const started = await owners.startRebuild();
    let finished = false;
    try {
      for await (const shard of this.#layout.shards()) {
        const directory = join(this.#layout.path, shard);
        for await (const entries of this.#layout.entryChunks(directory)) {
          this.#assertOpen();
          if (lock.signal.aborted || !(await renewed(lock))) return false;
          await files.forEachBounded(entries, async (entry) => {
            if (!entry.isFile() || !files.isRecordName(shard, entry.name)) return;
            const found = await files.ownerOf(entry.name, join(directory, entry.name));
            if (found.present && found.owner !== undefined) {
              await owners.add(found.owner, entry.name, true);
            }
          });
          await yieldToEventLoop();
        }
      }
      finished = await owners.finishRebuild(started);
      return finished;
    } finally {
      if (!finished) await owners.abandonRebuild(started).catch(() => {});
    }
  }

  #assertOpen(): void {
    if (this.#closing.signal.aborted) {
      throw new SessionError(
        'ERR_STORE_CLOSED',
        'The store was closed during a rebuild of its owner index',
      );
    }
  }
}

/** Extends the lease once half of it is gone; false when it was lost meanwhile. */
function renewed(lock: SessionLock): Promise<boolean> | boolean {
  return lock.expiresAt - Date.now() >= REBUILD_LEASE_MS / 2 || extended(lock);
}

/** Resolves after `ms`, or at once when `signal` aborts; never holds the process open. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    timer.unref();
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}
