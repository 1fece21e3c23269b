export {
  DbmStore,
  type DbmStoreStats,
  type DbmSweepStats,
} from './dbm-store.js';
export type { DbmDurability } from './file-io.js';
export type { GlobalLockStats } from './global-lock.js';
export type { FileInfo } from './hash-file.js';
export type { DbmStoreOptions, DbmSweepMode } from './options.js';
export {
  type StripedFileLockStats,
  StripedFileLocks,
  sessionStripe,
} from './striped-file-locks.js';
