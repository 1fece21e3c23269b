export type {
  AcquireOptions,
  LockManager,
  SessionLock,
  SessionRecord,
  SessionStore,
  SetOptions,
  StoreCapabilities,
  SweepOptions,
  SweepResult,
} from './types.js';
export {
  SESSION_ERROR_CODES,
  SessionError,
  type SessionErrorCode,
  type SessionErrorOptions,
  isSessionError,
  toStoreIoError,
} from './errors.js';
export {
  MAX_SESSION_ID_LENGTH,
  MIN_SESSION_ID_LENGTH,
  assertSessionId,
  generateSessionId,
  generateToken,
  isSessionId,
} from './ids.js';
export {
  BaseStore,
  type BaseStoreOptions,
  DEFAULT_MAX_RECORD_BYTES,
  DEFAULT_SWEEP_LIMIT,
  SweepProgress,
} from './base-store.js';
export { MemoryStore, type MemoryStoreOptions } from './memory-store.js';
export { ExpiryHeap } from './expiry-heap.js';
export { KeyedLocks } from './locks/keyed.js';
export {
  StripedLocks,
  type StripedLocksOptions,
  type StripedLockStats,
  fnv1a32,
  stripeOf,
} from './locks/striped.js';
export {
  DEFAULT_LEASE_MS,
  DEFAULT_WAIT_MS,
  type LeaseBackend,
  LeaseLock,
  type LeaseLockInit,
  type NormalizedAcquireOptions,
  type PollOptions,
  lockManagerClosed,
  lockTimeout,
  normalizeAcquireOptions,
  pollAcquire,
} from './locks/lease.js';
export { sleep, yieldToEventLoop } from './util.js';

/**
 * A valid session id reserved for the single sweeper across processes. Generated ids are 43
 * characters, and strict session managers never adopt an id they did not issue, so no client
 * can hold it.
 */
export const SWEEP_LOCK_ID = '_sessile-sweeper_';
