export { FileStore, type FileStoreOptions, SHARD_LENGTH } from './file-store.js';
export { FORMAT_VERSION, HEADER_BYTES } from './format.js';
