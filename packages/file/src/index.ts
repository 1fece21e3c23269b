export { FileStore, type FileStoreOptions } from './file-store.js';
export { FORMAT_VERSION, HEADER_BYTES } from './format.js';
export { SHARD_LENGTH } from './record-files.js';
