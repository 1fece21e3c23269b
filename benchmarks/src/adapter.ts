import type { SessionStore } from '@sessile/core';
import type { SessionBody } from './body.js';

/** Where a target sits in the comparison. */
export type TargetKind = 'engine' | 'sessile' | 'peer';

/** A lock held on one session id; `release` frees it. */
export interface HeldLock {
  release(): Promise<void>;
}

/** What a cleanup run did, as far as the target can tell. */
export interface CleanupOutcome {
  /** Records removed, when the target reports it. */
  removed?: number;
  /** The longest single hold of a store-wide lock during the cleanup, when the store reports it (DbmStore). */
  longestLockHoldMs?: number;
  /** Total time a store-wide lock was held for the cleanup, when the store reports it. */
  lockHeldMs?: number;
}

/**
 * One opened target. Every store, raw engine and peer is driven through exactly these
 * operations, so a workload never knows what it is measuring.
 */
export interface OpenTarget {
  /** Stores a new session. */
  create(id: string, body: SessionBody, expiresAt: number): Promise<void>;
  /** The live session, or `undefined`. */
  read(id: string): Promise<SessionBody | undefined>;
  /** Overwrites an existing session. */
  update(id: string, body: SessionBody, expiresAt: number): Promise<void>;
  /** Moves a live session's expiry, without rewriting its body where the target can. */
  touch(id: string, expiresAt: number, body: SessionBody): Promise<void>;
  /**
   * Removes expired sessions the way this target removes them (its own sweep, reaper, prune or
   * DELETE). Absent when the target never cleans (see `cleanupNote`).
   */
  cleanup?(signal: AbortSignal): Promise<CleanupOutcome>;
  /** Why there is no `cleanup`, or how it cleans, for the report. */
  cleanupNote?: string;
  /**
   * How many of `expiredIds` are still stored after cleanup, served or not. `liveCount` is how
   * many live sessions the store holds, for targets that can only count everything.
   */
  expiredLeft?(expiredIds: readonly string[], liveCount: number): Promise<number>;
  /**
   * Takes the target's own per-session lock, where it has one. `'long'` waits and leases for
   * minutes, so a loaded machine never times out; `'default'` uses the store's own defaults, as
   * an app that passes no lock options gets them.
   */
  lock?(id: string, settings?: 'long' | 'default'): Promise<HeldLock>;
  /** The sessile store underneath, on the native sessile targets. */
  store?: SessionStore;
  close(): Promise<void>;
}

/** An express-session `Store` plus how many processes may share it. */
export interface HttpStoreFactory {
  /** False when the store's data lives in one process, so the HTTP app runs one worker. */
  sharedAcrossProcesses: boolean;
  /** Builds the express-session store inside a worker; `session` is the express-session module. */
  expressSessionStore(dir: string, session: unknown): Promise<unknown>;
  /** Builds sessile's locking middleware over this store, where the target is a sessile store. */
  sessileMiddleware?(dir: string): Promise<unknown>;
  /** Opens the sessile store itself, for the Koa and Hono apps; only on sessile stores. */
  openStore?(dir: string): Promise<SessionStore>;
}

/** A benchmark target: registered once, opened fresh for each workload. */
export interface Target {
  /** Short unique name used on the command line and in tables. */
  name: string;
  kind: TargetKind;
  /** One line: what this is and how it is configured. */
  description: string;
  /** What survives a crash, in a few words. */
  durability: string;
  /** The raw engine this target is built on, for the overhead ratio. */
  engine?: string;
  /** Peers doing the same job, for the speed ratio. */
  peers?: string[];
  /**
   * The peers whose express-session apps the HTTP workload serves in turns with this sessile
   * store's apps, so their ratios pair rates measured seconds apart. Default the first peer.
   */
  httpPeers?: string[];
  /**
   * The sessile target this one drives through `toExpressStore` and the peers' express-session
   * driver, so its ratio against a peer compares like with like.
   */
  viaExpressOf?: string;
  /** Runs only these workloads, when the others would only repeat another target's figures. */
  onlyWorkloads?: { names: string[]; reason: string };
  /** Needs a server on this machine (Redis, PostgreSQL); reported unavailable when it is not reachable. */
  needsServer?: boolean;
  /** Opens an empty instance in `dir` (a fresh temp directory). Throws `Unavailable` when it cannot run here. */
  open(dir: string): Promise<OpenTarget>;
  /** How the HTTP workload runs this target, when it can. */
  http?: HttpStoreFactory;
}

/** Thrown by `open` when a target cannot run on this machine; the run goes on without it. */
export class Unavailable extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'Unavailable';
  }
}

/** Imports a module by name at run time, so a missing or unbuilt package is a reason, not a crash. */
export async function importOptional<T = Record<string, unknown>>(specifier: string): Promise<T> {
  try {
    return (await import(specifier)) as T;
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new Unavailable(`${specifier} not loadable (${message})`);
  }
}
