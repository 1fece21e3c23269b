export type { SqliteStoreOptions } from './options.js';
export { SCHEMA_VERSION } from './schema.js';
export { SqliteStore } from './sqlite-store.js';
