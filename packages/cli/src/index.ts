export { parseStoreAddress, type StoreAddress } from './addresses.js';
export { CliError, EXIT, type ExitCode } from './exit-codes.js';
export { openPeer, type PeerOptions, type PeerSession, type PeerSource } from './peers/index.js';
export { run } from './program.js';
