import { hidePassword, hidePasswordIn, parseServerUrl, pathOf, splitScheme } from '../addresses.js';
import { usageError } from '../exit-codes.js';
import { openSessionFileStore } from './file-store.js';
import type { PeerOptions, PeerSource } from './peer.js';
import { openConnectPgSimple } from './postgres.js';
import { openConnectRedis } from './redis.js';
import { openSqlitePeer, SQLITE_PEERS } from './sqlite.js';

export type { PeerOptions, PeerSession, PeerSource } from './peer.js';

export const PEER_ADDRESSES =
  'session-file-store:DIR, connect-sqlite3:FILE, better-sqlite3-session-store:FILE, connect-redis:redis://HOST[:PORT][/DB], connect-pg-simple:postgres://USER@HOST[:PORT]/DB';

function serverUrl(text: string, address: string, schemes: readonly string[]): URL {
  const url = parseServerUrl(text, address);
  if (!schemes.includes(url.protocol)) {
    throw usageError(`${hidePasswordIn(address)}: expected a ${schemes.join(' or ')} URL`);
  }
  return url;
}

/** Opens a peer's data from an address such as `connect-sqlite3:./sessions.db`. */
export async function openPeer(text: string, options: PeerOptions): Promise<PeerSource> {
  const split = splitScheme(text);
  if (split === undefined) {
    throw usageError(`${hidePasswordIn(text)}: not a peer address. Use one of ${PEER_ADDRESSES}`);
  }
  const { scheme, rest } = split;
  if (scheme === 'session-file-store') {
    return openSessionFileStore(pathOf(rest, text), text, options);
  }
  if (SQLITE_PEERS.includes(scheme))
    return openSqlitePeer(scheme, pathOf(rest, text), text, options);
  if (scheme === 'connect-redis') {
    const url = serverUrl(rest, text, ['redis:', 'rediss:']);
    return openConnectRedis(url.href, `connect-redis:${hidePassword(url)}`, options);
  }
  if (scheme === 'connect-pg-simple') {
    const url = serverUrl(rest, text, ['postgres:', 'postgresql:']);
    return openConnectPgSimple(url.href, `connect-pg-simple:${hidePassword(url)}`, options);
  }
  throw usageError(
    `${hidePasswordIn(text)}: unknown peer '${scheme}:'. Use one of ${PEER_ADDRESSES}`,
  );
}
