import type { SessionStore } from '@sessile/core';
import {
  type CleanupOutcome,
  type HttpStoreFactory,
  importOptional,
  type OpenTarget,
  type Target,
  Unavailable,
} from '../adapter.js';
import { decodeBody, encodeBody } from './engines.js';
import { driveExpressStore, type ExpressStore } from './express-driver.js';

/** How to open one sessile store; everything else about driving it is shared. */
export interface SessileStoreSpec {
  name: string;
  description: string;
  durability: string;
  /** Package to import lazily, so a store that is not built yet is only "unavailable". */
  packageName: string;
  /** The exported class with a static `open(options)`. */
  className: string;
  options(dir: string): Record<string, unknown>;
  engine?: string;
  peers?: string[];
  /** See `Target.httpPeers`. */
  httpPeers?: string[];
  /** Records one `sweep` call may examine during cleanup. Default 1000 (bounded batches). */
  sweepLimit?: number;
  cleanupNote?: string;
  /** True when the data stays in one process (the HTTP app then runs one worker). */
  processLocal?: boolean;
  onlyWorkloads?: Target['onlyWorkloads'];
}

/** Lock leases long enough that a loaded machine never loses one mid-cycle. */
const LOCK_WAIT_MS = 120_000;
const LOCK_LEASE_MS = 120_000;

async function openStore(spec: SessileStoreSpec, dir: string): Promise<SessionStore> {
  const module = await importOptional(spec.packageName);
  const StoreClass = module[spec.className] as
    | { open(options: Record<string, unknown>): Promise<SessionStore> }
    | undefined;
  if (typeof StoreClass?.open !== 'function') {
    throw new Unavailable(`${spec.packageName} does not export ${spec.className}.open yet`);
  }
  return StoreClass.open(spec.options(dir));
}

/** What a store that reports its sweeps' store-wide lock holds (DbmStore's `stats()`) returns. */
interface SweepLockStats {
  lastSweep?: { globalLockHeldMs?: number; longestGlobalLockHoldMs?: number };
}

/** Adds the last sweep's global lock holds to `outcome`, for stores that report them. */
function addLockStats(store: SessionStore, outcome: CleanupOutcome): void {
  const stats = (store as { stats?: () => SweepLockStats }).stats;
  if (typeof stats !== 'function') return;
  const last = stats.call(store).lastSweep;
  if (last?.longestGlobalLockHoldMs === undefined || last.globalLockHeldMs === undefined) return;
  outcome.longestLockHoldMs = Math.max(
    outcome.longestLockHoldMs ?? 0,
    last.longestGlobalLockHoldMs,
  );
  outcome.lockHeldMs = (outcome.lockHeldMs ?? 0) + last.globalLockHeldMs;
}

/** Drives any `SessionStore` through the shared target operations. */
export function driveStore(
  store: SessionStore,
  spec: Pick<SessileStoreSpec, 'sweepLimit' | 'cleanupNote'>,
): OpenTarget {
  const sweepLimit = spec.sweepLimit ?? 1000;
  return {
    store,
    async create(id, body, expiresAt) {
      await store.set(id, { data: encodeBody(body), expiresAt }, { only: 'absent' });
    },
    async read(id) {
      const record = await store.get(id);
      return record && decodeBody(record.data);
    },
    async update(id, body, expiresAt) {
      await store.set(id, { data: encodeBody(body), expiresAt }, { only: 'present' });
    },
    async touch(id, expiresAt) {
      await store.touch(id, expiresAt);
    },
    cleanupNote:
      spec.cleanupNote ??
      `repeated \`sweep({ limit: ${sweepLimit} })\` until done; each call works in small batches and yields`,
    async cleanup(signal) {
      const outcome: CleanupOutcome = { removed: 0 };
      for (;;) {
        const result = await store.sweep({ limit: sweepLimit, signal });
        outcome.removed = (outcome.removed ?? 0) + result.removed;
        addLockStats(store, outcome);
        if (result.done) return outcome;
        signal.throwIfAborted();
      }
    },
    async expiredLeft() {
      // A sweep of everything afterwards removes exactly what the cleanup left behind.
      return (await store.sweep({ limit: Number.POSITIVE_INFINITY })).removed;
    },
    async lock(id, settings = 'long') {
      return settings === 'default'
        ? store.locks.acquire(id)
        : store.locks.acquire(id, { waitMs: LOCK_WAIT_MS, leaseMs: LOCK_LEASE_MS });
    },
    async close() {
      await store.close();
    },
  };
}

/** Sessions in the HTTP app live an hour after their last request. */
const HTTP_IDLE_TIMEOUT_MS = 3_600_000;

interface SessileExpress {
  toExpressStore(store: SessionStore): ExpressStore & { close(): Promise<void> };
  sessile(options: { store: SessionStore; secret: string; idleTimeoutMs: number }): unknown;
}

async function sessileExpress(): Promise<SessileExpress> {
  const module = await importOptional<Partial<SessileExpress>>('@sessile/express');
  if (typeof module.toExpressStore !== 'function' || typeof module.sessile !== 'function') {
    throw new Unavailable('@sessile/express does not export toExpressStore and sessile yet');
  }
  return module as SessileExpress;
}

function httpFactory(spec: SessileStoreSpec): HttpStoreFactory {
  return {
    sharedAcrossProcesses: spec.processLocal !== true,
    openStore: (dir) => openStore(spec, dir),
    async expressSessionStore(dir) {
      const { toExpressStore } = await sessileExpress();
      return toExpressStore(await openStore(spec, dir));
    },
    async sessileMiddleware(dir) {
      const { sessile } = await sessileExpress();
      // Locking is sessile's default: each request holds its session's lock from load to commit.
      return sessile({
        store: await openStore(spec, dir),
        secret: 'sessile-benchmark-secret, 32 characters or more',
        idleTimeoutMs: HTTP_IDLE_TIMEOUT_MS,
      });
    },
  };
}

export function sessileStore(spec: SessileStoreSpec): Target {
  return {
    name: spec.name,
    kind: 'sessile',
    description: spec.description,
    durability: spec.durability,
    ...(spec.engine === undefined ? {} : { engine: spec.engine }),
    ...(spec.peers === undefined ? {} : { peers: spec.peers }),
    ...(spec.httpPeers === undefined ? {} : { httpPeers: spec.httpPeers }),
    ...(spec.onlyWorkloads === undefined ? {} : { onlyWorkloads: spec.onlyWorkloads }),
    async open(dir) {
      return driveStore(await openStore(spec, dir), spec);
    },
    http: httpFactory(spec),
  };
}

/** The workloads where the adapter path differs from the native one; the rest would repeat the native target. */
const EXPRESS_WORKLOADS = [
  'create',
  'create-preloaded',
  'read',
  'read-missing',
  'mixed',
  'create-after-deletes',
];

/**
 * The same store behind `toExpressStore`, driven by the very code that drives the peers: the
 * like-for-like comparison, and (against the native target) the adapter's own cost.
 */
export function sessileViaExpress(spec: SessileStoreSpec): Target {
  return {
    name: `${spec.name}-express`,
    kind: 'sessile',
    description: `${spec.description}, through \`toExpressStore\` and express-session's callback \`Store\` API, as the peers are driven`,
    durability: spec.durability,
    ...(spec.peers === undefined ? {} : { peers: spec.peers }),
    viaExpressOf: spec.name,
    onlyWorkloads: {
      names: EXPRESS_WORKLOADS,
      reason: `same store as \`${spec.name}\`: cleanup, locks and HTTP go through it there`,
    },
    async open(dir) {
      const { toExpressStore } = await sessileExpress();
      const store = await openStore(spec, dir);
      const adapted = toExpressStore(store);
      return driveExpressStore({
        store: adapted,
        cleanupNote: `none here: \`${spec.name}\` measures the sweep`,
        close: () => adapted.close(),
      });
    },
  };
}
