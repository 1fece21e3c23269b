export { RECORD_FORMAT } from './keys.js';
export { type RedisConnection, RedisStore, type RedisStoreOptions } from './redis-store.js';
