export {
  openSessionAdapter,
  type ResponseEvents,
  type SessionAdapter,
  type SessionAdapterOptions,
} from './adapter-options.js';
export {
  BaseStore,
  type BaseStoreOptions,
  DEFAULT_MAX_RECORD_BYTES,
  DEFAULT_SWEEP_LIMIT,
  SweepProgress,
} from './base-store.js';
export {
  type AesGcmCodecOptions,
  aesGcmCodec,
  generateAesKey,
  jsonCodec,
  type SessionCodec,
  type SessionData,
  type SessionEnvelope,
} from './codecs.js';
export {
  MAX_COOKIE_AGE_MS,
  MIN_SECRET_LENGTH,
  SessionCookie,
  type SessionCookieAttributes,
  type SessionCookieNaming,
  type SessionCookieOptions,
  type VerifiedCookie,
} from './cookies.js';
export {
  isSessionError,
  SESSION_ERROR_CODES,
  SessionError,
  type SessionErrorCode,
  type SessionErrorOptions,
  toStoreIoError,
} from './errors.js';
export { ExpiryHeap } from './expiry-heap.js';
export {
  type AcceptExpressSessionOptions,
  ExpressSessionCookie,
  readingExpressSessions,
} from './express-session.js';
export {
  assertSessionId,
  generateSessionId,
  generateToken,
  isSessionId,
  MAX_SESSION_ID_LENGTH,
  MIN_SESSION_ID_LENGTH,
  SWEEP_LOCK_ID,
} from './ids.js';
export { KeyedQueue } from './keyed-queue.js';
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
export {
  type LeaseBackend,
  type LeaseClaim,
  LeaseLocks,
  type LeaseLocksOptions,
  MAX_POLL_DELAY_MS,
  MIN_POLL_DELAY_MS,
} from './locks/lease-locks.js';
export { MemoryLeases } from './locks/memory-leases.js';
export {
  fnv1a32,
  type StripedLockStats,
  StripedLocks,
  type StripedLocksOptions,
  stripeOf,
} from './locks/striped.js';
export {
  type ConnectionEvents,
  DEFAULT_ABSOLUTE_TIMEOUT_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_SWEEP_INTERVAL_MS,
  type OpenOptions,
  type SessionLockOptions,
  SessionManager,
  type SessionManagerOptions,
} from './manager.js';
export { MemoryStore, type MemoryStoreOptions } from './memory-store.js';
export {
  type CleanupPolicy,
  manual,
  type SweepEveryOptions,
  Sweeper,
  type SweeperOptions,
  type SweepRun,
  type SweepRunOptions,
  sweepByChance,
  sweepEvery,
} from './policies.js';
export { type CommitOutcome, Session, type SessionStatus } from './session.js';
export { openStoreAdapter, type StoreAdapterOptions } from './store-adapter.js';
export type {
  AcquireOptions,
  HeldLease,
  LockManager,
  SessionLock,
  SessionRecord,
  SessionStore,
  SetOptions,
  StoreCapabilities,
  SweepOptions,
  SweepResult,
  WriteOptions,
} from './types.js';
export {
  assertAbortSignal,
  assertDuration,
  assertKnownOptions,
  assertNonNegativeNumber,
  assertPositiveInteger,
  type DurationRule,
  describeValue,
  errorMessage,
  fileKindOf,
  MAX_TIMER_MS,
  pseudoFilesystemOf,
  sleep,
  yieldToEventLoop,
} from './util.js';
