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
} from './errors.js';
export {
  type AcceptExpressSessionOptions,
  ExpressSessionCookie,
  readingExpressSessions,
} from './express-session.js';
export {
  generateSessionId,
  isOwner,
  isReservedId,
  isSessionId,
  MAX_OWNER_LENGTH,
  MAX_SESSION_ID_LENGTH,
  MIN_SESSION_ID_LENGTH,
  ownerLockId,
  RESERVED_ID_PREFIX,
  SWEEP_LOCK_ID,
} from './ids.js';
export {
  type ConnectionEvents,
  DEFAULT_ABSOLUTE_TIMEOUT_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_SWEEP_INTERVAL_MS,
  MAX_SESSION_TIMEOUT_MS,
  type OpenOptions,
  type RevokeOwnerOptions,
  type SessionLockOptions,
  SessionManager,
  type SessionManagerOptions,
} from './manager.js';
export {
  MemoryStore,
  type MemoryStoreOptions,
} from './memory-store.js';
export {
  type OwnerLimitAction,
  type SessionSummary,
  sessionHandle,
} from './owner-sessions.js';
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
export {
  type CommitOutcome,
  Session,
  type SessionStatus,
} from './session.js';
export type { StoreProbe } from './store-probe.js';
export type {
  AcquireOptions,
  HeldLease,
  LockedRecord,
  LockManager,
  OwnedSession,
  SessionLock,
  SessionRecord,
  SessionStore,
  SetOptions,
  StoreCapabilities,
  SweepOptions,
  SweepResult,
  WriteOptions,
} from './types.js';
