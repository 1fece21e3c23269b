import { join } from 'node:path';
import { isSessionError, type SessionLock, type SweepResult } from '@sessile/core';
import {
  errorCode,
  type HostGuards,
  type SweepProgress,
  yieldToEventLoop,
} from '@sessile/core/store';
import type { FileLocks } from './file-locks.js';
import { type FileSystem, NO_SPACE, overwriteText, unless } from './fs.js';
import { CURSOR_FILE, type StoreLayout, SWEEP_LEASE_FILE } from './layout.js';
import type { RecordFiles } from './record-files.js';
import type { Sweeper } from './sweep-protocol.js';
import { abortedByAny } from './sweeper.js';

/** The cursor file's size: one page, more than a cursor naming any directory entry needs. */
const CURSOR_BYTES = 4096;
/** Entries one sweep batch examines; the suite's budgetMs test needs this at or below 1000. */
const SWEEP_BATCH = 500;

interface SweepCursor {
  shard: string;
  name: string;
  /** No expired record was left behind since this pass over the shards began. */
  clean: boolean;
  /**
   * The earliest expiry of a record this pass kept: its steps judged with the `now` of their own
   * call, so a pass that ends with a later one is done only if none it kept has expired by then.
   */
  liveUntil: number;
}

const START_CURSOR: SweepCursor = {
  shard: '',
  name: '',
  clean: true,
  liveUntil: Number.POSITIVE_INFINITY,
};

export interface StoreSweepInit {
  layout: StoreLayout;
  fs: FileSystem;
  files: RecordFiles;
  guards: HostGuards;
  locks: FileLocks;
  sweeper: Sweeper;
  sweepLeaseMs: number;
  fileMode: number;
}

/**
 * The store's side of a sweep: one sweeper at a time (a lease file), a pass over the shards
 * in steps from where the last call stopped (the cursor file), each step run by the sweeper.
 */
export class StoreSweep {
  readonly #layout: StoreLayout;
  readonly #fs: FileSystem;
  readonly #files: RecordFiles;
  readonly #guards: HostGuards;
  readonly #locks: FileLocks;
  readonly #sweeper: Sweeper;
  readonly #sweepLeaseMs: number;
  readonly #fileMode: number;
  /** Aborted by the store's `close()`, so a long sweep in flight does not hold the close up. */
  readonly #closing = new AbortController();

  constructor(init: StoreSweepInit) {
    this.#layout = init.layout;
    this.#fs = init.fs;
    this.#files = init.files;
    this.#guards = init.guards;
    this.#locks = init.locks;
    this.#sweeper = init.sweeper;
    this.#sweepLeaseMs = init.sweepLeaseMs;
    this.#fileMode = init.fileMode;
  }

  /** Stops a sweep in flight before its next entry, as an aborted `signal` does. */
  stop(): void {
    this.#closing.abort();
  }

  async sweep(progress: SweepProgress): Promise<SweepResult> {
    // The budget bounds the whole call, so a step that starts late stops early (see sweepStep).
    const deadline = Date.now() + progress.budgetMs;
    // Its own lease file, not SWEEP_LOCK_ID: core's cleanup policies hold that one around
    // their calls to sweep(), and this lock also covers callers that use no policy.
    let lock: SessionLock | undefined;
    try {
      lock = await this.#locks.tryLease(
        join(this.#layout.path, SWEEP_LEASE_FILE),
        this.#sweepLeaseMs,
      );
    } catch (error) {
      if (!NO_SPACE.includes(errorCode(error) as string)) throw error;
      // A full disk refuses the lease's record, yet only removing expired sessions frees space:
      // this call sweeps from the start, without lease or cursor. Removals are safe beside
      // writers (see RecordFiles), so a second sweeper meanwhile costs time, never a record.
      const stop = abortedByAny([progress.signal, this.#closing.signal]);
      try {
        return await this.#sweepFromCursor(progress, undefined, deadline, stop.signal);
      } finally {
        stop.detach();
      }
    }
    // Another process (or call) is sweeping: one sweeper at a time, so this call does nothing.
    if (lock === undefined) return progress.result(false);
    // A step in flight stops before its next entry when the caller aborts or the lease is lost.
    const stop = abortedByAny([progress.signal, lock.signal, this.#closing.signal]);
    try {
      return await this.#sweepFromCursor(progress, lock, deadline, stop.signal);
    } finally {
      stop.detach();
      await lock.release().catch(() => {});
    }
  }

  /** Without `lock` (a full disk), a pass from the start that reads and writes no cursor. */
  async #sweepFromCursor(
    progress: SweepProgress,
    lock: SessionLock | undefined,
    deadline: number,
    stop: AbortSignal,
  ): Promise<SweepResult> {
    const cursor = lock === undefined ? { ...START_CURSOR } : await this.#readCursor();
    if (cursor.shard === '' && cursor.name === '') {
      // Once per pass: holder files of write guards whose process died without closing.
      await this.#guards.removeDeadHolders(this.#files.leftoverGuardStaleMs());
    }
    const shards = await this.#layout.listShards();
    let position: SweepCursor = { ...cursor };
    for (;;) {
      const size = progress.nextBatchSize(SWEEP_BATCH);
      if (size === 0) return progress.result(false);
      const step = await this.#sweeper.sweepStep(
        {
          shards,
          after: { shard: position.shard, name: position.name },
          size,
          now: progress.now,
          deadline,
          // A record with a write in flight in this process is left to the next pass.
          busy: this.#guards.busyKeys(),
        },
        stop,
      );
      progress.removed += step.removed;
      progress.scanned += step.scanned;
      // Lost the single-sweeper lease: another process may own the cursor now.
      if (lock?.signal.aborted) return progress.result(false);
      if (step.leftBusy) position.clean = false;
      position.liveUntil = Math.min(position.liveUntil, step.liveUntil);
      if (step.ended) {
        // The pass over every shard ended: done when nothing expired as of `now` is left behind.
        if (lock !== undefined) await this.#writeCursor(START_CURSOR);
        return progress.result(position.clean && position.liveUntil > progress.now);
      }
      // Stopped before its first entry (an abort): the cursor stays where it was.
      if (step.last === undefined) return progress.result(false);
      position = { ...position, shard: step.last.shard, name: step.last.name };
      // Saved per batch, so even a sweeper that dies resumes near where it stopped.
      if (lock !== undefined) {
        await this.#writeCursor(position);
        if (lock.expiresAt - Date.now() < this.#sweepLeaseMs / 2 && !(await extended(lock)))
          return progress.result(false);
      }
      await yieldToEventLoop();
    }
  }

  async #readCursor(): Promise<SweepCursor> {
    const text = await unless(['ENOENT'], undefined, () =>
      this.#fs.readText(join(this.#layout.path, CURSOR_FILE)),
    );
    if (text === undefined) return { ...START_CURSOR };
    try {
      // JSON writes Infinity as null.
      const value = JSON.parse(text) as Partial<Omit<SweepCursor, 'liveUntil'>> & {
        liveUntil?: number | null;
      };
      const liveUntil = value.liveUntil === null ? Number.POSITIVE_INFINITY : value.liveUntil;
      if (
        typeof value.shard === 'string' &&
        typeof value.name === 'string' &&
        typeof value.clean === 'boolean' &&
        typeof liveUntil === 'number'
      ) {
        return { shard: value.shard, name: value.name, clean: value.clean, liveUntil };
      }
    } catch {
      // A damaged cursor only costs a pass from the start.
    }
    return { ...START_CURSOR };
  }

  /**
   * Overwrites the cursor in place (see `overwriteText`): a sweep batch never creates or frees an
   * inode for it. A cursor torn by a crash fails to parse and only costs a pass from the start.
   */
  #writeCursor(cursor: SweepCursor): Promise<void> {
    const file = join(this.#layout.path, CURSOR_FILE);
    return overwriteText(this.#fs, file, JSON.stringify(cursor), CURSOR_BYTES, this.#fileMode);
  }
}

/**
 * Extends a single-worker lease (the sweeper's, the owner index's rebuilder's); false when it ran
 * out first (a stalled event loop, a wait for the lease file's guard): that only ends this call,
 * like a lease lost during a step.
 */
export async function extended(lock: SessionLock): Promise<boolean> {
  try {
    await lock.extend();
    return true;
  } catch (error) {
    if (isSessionError(error, 'ERR_LOCK_LOST')) return false;
    throw error;
  }
}
