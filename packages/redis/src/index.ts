export { RECORD_FORMAT } from './record-format.js';
export { type RedisConnection, RedisStore, type RedisStoreOptions } from './redis-store.js';
