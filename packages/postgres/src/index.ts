export type { PostgresStoreOptions } from './options.js';
export { PostgresStore } from './postgres-store.js';
export { SCHEMA_VERSION } from './schema.js';
