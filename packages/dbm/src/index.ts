export {
  type DbmCleanupMode,
  DbmStore,
  type DbmStoreOptions,
  type DbmStoreStats,
  type DbmSweepStats,
} from './dbm-store.js';
export type { GlobalLockStats } from './global-lock.js';
export type { FileInfo } from './hash-file.js';
export {
  type StripedFileLockStats,
  StripedFileLocks,
  sessionStripe,
} from './striped-file-locks.js';
