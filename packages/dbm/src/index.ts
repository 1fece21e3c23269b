export {
  DbmStore,
  type DbmCleanupMode,
  type DbmStoreOptions,
  type DbmStoreStats,
  type DbmSweepStats,
} from './dbm-store.js';
export type { FileInfo } from './hash-file.js';
export type { GlobalLockStats } from './global-lock.js';
export { StripedFileLocks, type StripedFileLockStats, sessionStripe } from './striped-file-locks.js';
