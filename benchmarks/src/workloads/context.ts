import { execFile } from 'node:child_process';
import { mkdtemp, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OpenTarget, Target } from '../adapter.js';
import { IdPool, makeSessionBody } from '../body.js';
import { fill } from '../measure.js';
import type { Profile } from '../profile.js';

/** Live sessions in the benchmarks expire an hour from now, far past any run. */
export const LIVE_FOR_MS = 3_600_000;

/**
 * Marks `dir` with ext2/3/4's "top of directory hierarchy" flag (`chattr +T`), so the kernel
 * places each of its subdirectories in a block group of its own. Resolves whether that worked
 * (it fails harmlessly elsewhere: another filesystem, no chattr).
 */
function spreadSubdirectories(dir: string): Promise<boolean> {
  return new Promise((resolve) => execFile('chattr', ['+T', dir], (error) => resolve(!error)));
}

/** Below this much free space, a finished target's directory is deleted at once. */
const KEEP_UNTIL_END_MIN_FREE_BYTES = 8 * 2 ** 30;

async function spaceIsShort(dir: string): Promise<boolean> {
  try {
    const { bavail, bsize } = await statfs(dir);
    return bavail * bsize < KEEP_UNTIL_END_MIN_FREE_BYTES;
  } catch {
    return true;
  }
}

function removeTree(dir: string): Promise<void> {
  return rm(dir, { recursive: true, force: true, maxRetries: 3 }).catch(() => {});
}

/**
 * Temp directories of one run, removed at the end even when a target hung. They live in one
 * run directory marked with `chattr +T` where the filesystem allows: ext4 then puts every
 * target's directory in a fresh block group. Without it they share one, and on ext4 without a
 * journal a target's file creations pay for every inode other targets freed in the last
 * minutes (the allocator skips recently deleted inodes one by one). For the same reason a
 * target's directory is kept until the end of the run once the target is done with it (unless
 * the disk is short of space): deleting tens of thousands of files mid-run would make the
 * next target to land in that block group pay for them.
 */
export class TempDirs {
  readonly #dirs = new Set<string>();
  readonly #done = new Set<string>();
  #root: Promise<{ path: string; spread: boolean }> | undefined;

  /** The run directory, and whether its subdirectories are spread over block groups. */
  root(): Promise<{ path: string; spread: boolean }> {
    this.#root ??= (async () => {
      const path = await mkdtemp(join(tmpdir(), 'sessile-bench-'));
      return { path, spread: await spreadSubdirectories(path) };
    })();
    return this.#root;
  }

  async make(label: string): Promise<string> {
    const { path } = await this.root();
    const dir = await mkdtemp(join(path, `${label.replace(/[^a-z0-9-]/gi, '')}-`));
    this.#dirs.add(dir);
    return dir;
  }

  /** Marks `dir` as no longer used; it is deleted at the end of the run, or now if space is short. */
  async remove(dir: string): Promise<void> {
    this.#dirs.delete(dir);
    if (await spaceIsShort(dir)) await removeTree(dir);
    else this.#done.add(dir);
  }

  async removeAll(): Promise<void> {
    const dirs = [...this.#dirs, ...this.#done];
    this.#dirs.clear();
    this.#done.clear();
    await Promise.all(dirs.map(removeTree));
    const root = await this.#root;
    this.#root = undefined;
    if (root !== undefined) await rm(root.path, { recursive: true, force: true }).catch(() => {});
  }
}

/**
 * One opened target shared by the throughput workloads: read, read-missing and mixed meet the
 * same preload, written once. The create workloads write into it too and then throw it away.
 */
export class SharedStore {
  #open: { target: OpenTarget; dir: string } | undefined;
  /** Ids of every session created in the open target, in creation order. */
  ids: string[] = [];
  readonly idPool = new IdPool();

  constructor(
    private readonly target: Target,
    private readonly dirs: TempDirs,
  ) {}

  /** The open target's directory, once it is open. */
  get dir(): string | undefined {
    return this.#open?.dir;
  }

  /** The open target, opening an empty one first if needed. */
  async get(): Promise<OpenTarget> {
    if (this.#open === undefined) {
      const dir = await this.dirs.make(this.target.name);
      try {
        this.#open = { target: await this.target.open(dir), dir };
      } catch (error) {
        await this.dirs.remove(dir);
        throw error;
      }
      this.ids = [];
    }
    return this.#open.target;
  }

  /**
   * Creates sessions (untimed) until the store holds at least `count`, or until `maxMs` has
   * passed, so a slow target gets a smaller preload instead of a timeout. Returns the store.
   */
  async ensure(
    count: number,
    concurrency: number,
    signal: AbortSignal,
    maxMs: number,
  ): Promise<OpenTarget> {
    const target = await this.get();
    const missing = count - this.ids.length;
    if (missing > 0) {
      const ids = this.idPool.take(missing);
      const expiresAt = Date.now() + LIVE_FOR_MS;
      const deadline = performance.now() + maxMs;
      await fill(
        missing,
        concurrency,
        async (i) => {
          if (performance.now() >= deadline) return;
          const id = ids[i] as string;
          await target.create(id, makeSessionBody(i), expiresAt);
          this.ids.push(id);
        },
        signal,
      );
    }
    return target;
  }

  /** Closes and forgets the open target. After a timeout the close is not waited for. */
  async discard(waitForClose = true): Promise<void> {
    const open = this.#open;
    this.#open = undefined;
    this.ids = [];
    if (open === undefined) return;
    const closing = open.target.close().catch(() => {});
    if (waitForClose) {
      await closing;
      await this.dirs.remove(open.dir);
    }
  }
}

export interface WorkloadContext {
  target: Target;
  profile: Profile;
  /** Aborted when the workload's time limit passes. */
  signal: AbortSignal;
  dirs: TempDirs;
  shared: SharedStore;
}

/** Opens a fresh target in its own temp dir for one workload, and always cleans it up. */
export async function withFreshTarget<T>(
  context: WorkloadContext,
  work: (target: OpenTarget) => Promise<T>,
): Promise<T> {
  const dir = await context.dirs.make(context.target.name);
  let opened: OpenTarget | undefined;
  try {
    opened = await context.target.open(dir);
    return await work(opened);
  } finally {
    if (opened !== undefined) {
      const closing = opened.close().catch(() => {});
      // A timed-out target may never close; its dir is removed at the end of the run.
      if (!context.signal.aborted) {
        await closing;
        await context.dirs.remove(dir);
      }
    } else {
      await context.dirs.remove(dir);
    }
  }
}

/** The fields of `R` that hold a number: the ones repeats take the median and spread of. */
export type NumericField<R> = {
  [K in keyof R]-?: NonNullable<R[K]> extends number ? K : never;
}[keyof R] &
  string;

export interface Workload<R extends object, N extends string = string> {
  name: N;
  title: string;
  /** One line for the report. */
  description: string;
  /** The figure the bar chart and the ratios use, and the one repeats take the median of. */
  primary: { field: NumericField<R>; label: string; higherIsBetter: boolean };
  limitMs(profile: Profile): number;
  /** Why this workload does not apply to a target, if it does not. */
  skipReason?(target: Target): string | undefined;
  /**
   * True when an `Unavailable` from this workload (missing middleware) means only this workload
   * cannot run on the target; otherwise it makes the target unavailable for the rest of the run.
   */
  unavailableHereOnly?: boolean;
  run(context: WorkloadContext): Promise<R>;
}
