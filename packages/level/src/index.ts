export {
  type AnyLevel,
  DEFAULT_SUBLEVEL,
  LevelStore,
  type LevelStoreOptions,
  type RepairIndexResult,
} from './level-store.js';
