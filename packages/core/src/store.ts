// `@sessile/core/store`: what a store or an HTTP adapter is built from. Applications need only
// `@sessile/core`.
export {
  commitLostNothing,
  type EarlyHeaders,
  openSessionAdapter,
  type ResponseEvents,
  type SessionAdapter,
  type SessionAdapterOptions,
  setGivenHeaders,
} from './adapter-options.js';
export {
  BaseStore,
  type BaseStoreOptions,
  DEFAULT_MAX_RECORD_BYTES,
  DEFAULT_SWEEP_LIMIT,
  type HookAnswer,
  SweepProgress,
} from './base-store.js';
export { REDACTED, type StoreIoContext, toStoreIoError } from './errors.js';
export { ExpiryHeap } from './expiry-heap.js';
export { assertOwner, assertSessionId, generateToken } from './ids.js';
export { KeyedQueue } from './keyed-queue.js';
export { HostGuards, type HostGuardsInit } from './locks/host-guards.js';
export { KeyedLocks } from './locks/keyed.js';
export {
  DEFAULT_LEASE_MS,
  DEFAULT_WAIT_MS,
  type LeaseHooks,
  LeaseLock,
  type LeaseLockInit,
  lockLost,
  lockManagerClosed,
  lockTimeout,
  type NormalizedAcquireOptions,
  normalizeAcquireOptions,
} from './locks/lease.js';
export { type ClaimOutcome, LeaseFiles, type LeaseFilesInit } from './locks/lease-files.js';
export {
  type ClaimedRecord,
  claimThenRead,
  type LeaseBackend,
  type LeaseClaim,
  LeaseLocks,
  type LeaseLocksOptions,
  lostSocket,
  MAX_POLL_DELAY_MS,
  MIN_POLL_DELAY_MS,
} from './locks/lease-locks.js';
export {
  decodeHolder,
  errorCode,
  GUARD_STALE_MS,
  type HolderRecord,
  type LockFileSystem,
  NO_SPACE,
  syncLockFileSystem,
  unless,
} from './locks/lock-files.js';
export { MemoryLeases } from './locks/memory-leases.js';
export { ResourceClaims } from './locks/resource-claims.js';
export {
  fnv1a32,
  type StripedLockStats,
  StripedLocks,
  type StripedLocksOptions,
  stripeOf,
} from './locks/striped.js';
// A store whose class answers `TAKES_TEXT` gets core's library adapters' records as TextRecords;
// one that lends a record with `RECORD_TEXT` to a reader that `readsText` spares it the UTF-8
// decode of the record's data.
export { LentText, READS_TEXT, RECORD_TEXT, TAKES_TEXT, TextRecord } from './record-text.js';
export { sessionProperty } from './session-property.js';
export {
  decodeLibrarySession,
  encodeLibrarySession,
  openStoreAdapter,
  type StoreAdapterOptions,
} from './store-adapter.js';
export {
  danglingLinkAbove,
  otherFilesIn,
  probeStoreDirectory,
  probeStoreFile,
  type StoreDirectoryRules,
  type StoreProbe,
} from './store-probe.js';
export { UnlinkGuard } from './unlink-guard.js';
export {
  assertAbortSignal,
  assertDuration,
  assertKnownOptions,
  assertNonNegativeNumber,
  assertPositiveInteger,
  type DurationRule,
  describeValue,
  errorMessage,
  escapeGlob,
  fileKindOf,
  MAX_DATE_MS,
  MAX_TIMER_MS,
  pseudoFilesystemOf,
  sleep,
  yieldToEventLoop,
} from './util.js';
