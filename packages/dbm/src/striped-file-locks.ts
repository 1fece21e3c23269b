import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';
import type { HeldLease, SessionRecord } from '@sessile/core';
import {
  type ClaimedRecord,
  claimThenRead,
  type HostGuards,
  type LeaseBackend,
  type LeaseClaim,
  LeaseFiles,
  LeaseLocks,
  stripeOf,
  syncLockFileSystem,
} from '@sessile/core/store';

export interface StripedFileLockStats {
  /** Lock files in the pool, including file 0, the global lock. */
  stripes: number;
  /** Locks granted to this process. */
  acquired: number;
  /** Acquires that found their stripe held and had to wait. */
  waits: number;
  /** Waits caused by a different session id on the same stripe: the cost of striping. */
  collisions: number;
}

/** Which lock file a session id uses in a pool of `stripes`: never 0, which is the global lock. */
export function sessionStripe(id: string, stripes: number): number {
  return 1 + stripeOf(id, stripes - 1);
}

/** Where the stripes' lease files go, inside the lock directory. */
export const STRIPES_DIRECTORY = 'stripes';

/** Digests `tagOf` remembers: a session's claims come back to back, one request after another. */
const REMEMBERED_TAGS = 1024;
const tags = new Map<string, string>();

/** What a stripe's lease names its session by: a digest, so ids never reach the lock directory. */
function tagOf(id: string): string {
  let tag = tags.get(id);
  if (tag === undefined) {
    tag = createHash('sha256').update(id).digest('base64url').slice(0, 16);
    if (tags.size >= REMEMBERED_TAGS) tags.clear();
    tags.set(id, tag);
  }
  return tag;
}

/**
 * What the store lends its session locks so that a claim can read its record under the global
 * lock right after it (`acquireAndGet`), and a fenced write can free its stripe once it landed.
 */
export interface StripeRecords {
  /** What `get(id)` returns, read under the store's global lock. */
  read(id: string): Promise<SessionRecord | undefined>;
  /**
   * A turn of the event loop when one is due (the global lock's `turn`): a claim's calls are
   * synchronous, so a loop of acquires and releases would otherwise hold every timer back.
   */
  turn(): Promise<void> | undefined;
}

/**
 * The stripes' lease files, with the token of each lease this process holds, so that a fenced
 * write can check its lease inside the write's own hold of the global lock instead of under a
 * guard, and a lease being released fences no more writes from the moment its release begins.
 */
class StripeLeases implements LeaseBackend {
  readonly #files: LeaseFiles;
  readonly #pathOf: (key: string) => string;
  /** Key to the token of this process's lease on it. */
  readonly #held = new Map<string, string>();
  /** Set when the store lends its records: its fenced writes then free the stripe (`releaseHeld`). */
  readonly releasesWithWrite: boolean;
  readonly claimAndGet: ((claim: LeaseClaim) => Promise<ClaimedRecord>) | undefined;

  readonly #onTaken: () => void;
  readonly #turn: () => Promise<void> | undefined;

  constructor(
    files: LeaseFiles,
    pathOf: (key: string) => string,
    records: StripeRecords | undefined,
    onTaken: () => void,
  ) {
    this.#files = files;
    this.#onTaken = onTaken;
    this.#turn = () => records?.turn();
    this.#pathOf = pathOf;
    this.releasesWithWrite = records !== undefined;
    this.claimAndGet =
      records === undefined ? undefined : (claim) => this.#claimAndRead(claim, records);
  }

  /**
   * Claims the stripe, then reads the record under the global lock, in a hold it may share with
   * other operations. A fenced write checks its lease and writes in one step under that lock, so
   * a holder whose stripe was taken over either wrote before this read or writes nothing.
   */
  #claimAndRead(claim: LeaseClaim, records: StripeRecords): Promise<ClaimedRecord> {
    return claimThenRead(this, claim, records.read);
  }

  async claim(claim: LeaseClaim): Promise<boolean> {
    await this.#turn();
    if (!(await this.#files.claim(claim))) return false;
    this.#held.set(claim.key, claim.token);
    this.#onTaken();
    return true;
  }

  extend(claim: LeaseClaim): Promise<boolean> {
    return this.#files.extend(claim);
  }

  release(claim: LeaseClaim): Promise<boolean> {
    this.#forget(claim);
    return this.#files.release(claim);
  }

  expired(claim: LeaseClaim): void {
    this.#forget(claim);
    this.#files.expired(claim);
  }

  watch(key: string, wake: () => void): () => void {
    return this.#files.watch(key, wake);
  }

  /** Ends the claims' waits for the stripes' guards as the store's close() begins. */
  stopAcquiring(): void {
    this.#files.stopAcquiring();
  }

  close(): Promise<void> {
    this.#held.clear();
    return this.#files.close();
  }

  /**
   * Whether `lease` still holds its stripe. Called inside the global lock, with the write it
   * fences: a process that takes the stripe over must take the global lock before it can read
   * or write any record, so the check and the write cannot interleave with it.
   */
  holds(lease: HeldLease): boolean {
    const path = this.#pathOf(lease.key);
    return (
      this.#held.get(lease.key) === lease.token &&
      this.#files.holdsAtSync(path, lease.token) &&
      // One lstat even well inside the lease: a stripe's file removed by hand (taken for a stale
      // lock) lets another claim link its own at once, and the lock directory's check misses it.
      this.#files.recheckAt(path, lease.token)
    );
  }

  /**
   * Frees the stripe `lease` holds, once its fenced write has landed; called inside the write's
   * hold of the global lock. A failure is not the write's: the lease then ends by itself.
   */
  async releaseHeld(lease: HeldLease): Promise<void> {
    this.#forget(lease);
    await this.#files.releaseAt(this.#pathOf(lease.key), lease.token).catch(() => false);
  }

  /**
   * Keeps the leases whose files are in the lock directory now, taken since it was made again,
   * and takes the others for lost: their files went with the removed or replaced one.
   */
  recheckAll(): void {
    for (const [key, token] of this.#held) {
      if (!this.#files.recheckAt(this.#pathOf(key), token)) this.#held.delete(key);
    }
  }

  #forget(claim: { key: string; token: string }): void {
    if (this.#held.get(claim.key) === claim.token) this.#held.delete(claim.key);
  }
}

/**
 * mod_python's fixed pool of global mutexes, as lease files every process on the host shares
 * (core's `LeaseFiles`): the session id picks `stripes/<1 + fnv1a32(id) % (stripes - 1)>.lock` in
 * the lock directory, so different sessions on one stripe wait for each other
 * (`stats().collisions`); a lease names its session by a digest, so a waiter in another process
 * can tell a collision too. A release wakes the waiters of other processes through a watch on
 * that directory, open only while a claim here was refused and still waits.
 */
export class StripedFileLocks extends LeaseLocks {
  readonly stripes: number;
  readonly #counts: { acquired: number; waits: number; collisions: number };
  readonly #leases: StripeLeases;

  /**
   * With `records` (the store's), a claim reads its record right after it (`acquireAndGet`),
   * and a fenced write given `release` frees the stripe once it landed.
   */
  constructor(lockDirectory: string, stripes: number, guards: HostGuards, records?: StripeRecords) {
    const counts = { acquired: 0, waits: 0, collisions: 0 };
    // A directory of their own, so the watch that wakes waiters sees only the stripes' changes.
    const directory = join(lockDirectory, STRIPES_DIRECTORY);
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    // Every claim and release names its lease file: a template costs less than `join`.
    const prefix = `${directory}${sep}`;
    const pathOf = (key: string) => `${prefix}${key}.lock`;
    const files = new LeaseFiles({
      guards,
      fs: syncLockFileSystem,
      fileMode: 0o600,
      directoryMode: 0o700,
      pathOf,
      storeDirectory: dirname(lockDirectory),
      tagOf,
      wakeOnRelease: true,
      onRefused: ({ id, waited }, current) => {
        // Another process holds the stripe for a different session: a collision.
        if (!waited && current?.tag !== undefined && current.tag !== tagOf(id)) counts.collisions++;
      },
    });
    const leases = new StripeLeases(files, pathOf, records, () => counts.acquired++);
    super(leases, {
      location: lockDirectory,
      keyOf: (id) => String(sessionStripe(id, stripes)),
      onWait: (id, holderId) => {
        counts.waits++;
        if (holderId !== undefined && holderId !== id) counts.collisions++;
      },
    });
    this.stripes = stripes;
    this.#counts = counts;
    this.#leases = leases;
  }

  /**
   * Whether a fenced write's `lease` still holds its stripe; the store asks inside the global
   * lock, in the same hold as the write.
   */
  holds(lease: HeldLease): boolean {
    return this.#leases.holds(lease);
  }

  /** Frees the stripe a fenced write with `release` held; the store calls it in the write's hold. */
  releaseHeld(lease: HeldLease): Promise<void> {
    return this.#leases.releaseHeld(lease);
  }

  /**
   * After the lock directory was removed or replaced: takes the session locks this process held
   * in the old one for lost, so their fenced writes reject with `ERR_LOCK_LOST`, and keeps those
   * taken in the new one.
   */
  recheckHeld(): void {
    this.#leases.recheckAll();
  }

  stats(): StripedFileLockStats {
    return { stripes: this.stripes, ...this.#counts };
  }
}
