import {
  hidePassword,
  hidePasswordIn,
  parseRedisUrl,
  parseServerUrl,
  pathOf,
  splitScheme,
} from '../addresses.js';
import { usageError } from '../exit-codes.js';
import { openSessionFileStore } from './file-store.js';
import { openLevelSessionStore } from './level.js';
import type { PeerOptions, PeerSource } from './peer.js';
import { openConnectPgSimple } from './postgres.js';
import { openConnectRedis } from './redis.js';
import { openSqlitePeer, SQLITE_PEERS } from './sqlite.js';

export type { PeerOptions, PeerSession, PeerSource } from './peer.js';

export const PEER_ADDRESSES =
  'session-file-store:DIR, level-session-store:DIR, connect-sqlite3:FILE, better-sqlite3-session-store:FILE, connect-redis:redis://HOST[:PORT][/DB], connect-pg-simple:postgres://USER@HOST[:PORT]/DB';

function serverUrl(text: string, address: string, schemes: readonly string[]): URL {
  const url = parseServerUrl(text, address);
  if (!schemes.includes(url.protocol)) {
    throw usageError(`${hidePasswordIn(address)}: expected a ${schemes.join(' or ')} URL`);
  }
  return url;
}

/**
 * Refuses the parameters a store address takes (`?prefix=`, `?schema=`, `?table=`) in a peer
 * address, where they would be passed over and the peer's default read instead: the peer's own
 * options say where its data is.
 */
function refuseStoreParameters(url: URL, address: string, names: readonly string[]): void {
  for (const [key, value] of url.searchParams) {
    if (names.includes(key)) {
      throw usageError(
        `${hidePasswordIn(address)}: a peer address takes no '${key}' parameter; give --${key} ${value} instead`,
      );
    }
  }
}

/** Each peer option and the peers that read it. */
const PEER_OPTION_READERS: Record<keyof PeerOptions, { flag: string; peers: readonly string[] }> = {
  table: { flag: '--table', peers: [...SQLITE_PEERS, 'connect-pg-simple'] },
  schema: { flag: '--schema', peers: ['connect-pg-simple'] },
  prefix: { flag: '--prefix', peers: ['connect-redis', 'level-session-store'] },
  ttlSeconds: { flag: '--ttl', peers: ['session-file-store'] },
  fileExtension: { flag: '--file-extension', peers: ['session-file-store'] },
};

const PEERS = new Set(Object.values(PEER_OPTION_READERS).flatMap(({ peers }) => peers));

/** Refuses an option the peer does not read, which would be passed over without a word. */
function refuseOptionsNotFor(scheme: string, options: PeerOptions): void {
  for (const [key, { flag, peers }] of Object.entries(PEER_OPTION_READERS)) {
    if (options[key as keyof PeerOptions] !== undefined && !peers.includes(scheme)) {
      throw usageError(`${flag} is read by ${peers.join(', ')}, not by ${scheme}`);
    }
  }
}

/**
 * Opens a peer's data from an address such as `connect-sqlite3:./sessions.db`. An option left
 * unset takes the peer's own default; one set for a peer that does not read it is refused.
 */
export async function openPeer(text: string, options: PeerOptions): Promise<PeerSource> {
  const split = splitScheme(text);
  if (split === undefined) {
    throw usageError(`${hidePasswordIn(text)}: not a peer address. Use one of ${PEER_ADDRESSES}`);
  }
  const { scheme, rest } = split;
  if (PEERS.has(scheme)) refuseOptionsNotFor(scheme, options);
  if (scheme === 'session-file-store') {
    return openSessionFileStore(pathOf(rest, text), text, options);
  }
  if (scheme === 'level-session-store') {
    return openLevelSessionStore(pathOf(rest, text), text, options);
  }
  if (SQLITE_PEERS.includes(scheme))
    return openSqlitePeer(scheme, pathOf(rest, text), text, options);
  if (scheme === 'connect-redis') {
    serverUrl(rest, text, ['redis:', 'rediss:']);
    const url = parseRedisUrl(rest, text);
    refuseStoreParameters(url, text, ['prefix']);
    // node-redis reads no parameter from the URL, so any one given would be passed over.
    const [unknown] = url.searchParams.keys();
    if (unknown !== undefined) {
      throw usageError(`${hidePasswordIn(text)}: unknown parameter '${unknown}' (known: none)`);
    }
    return openConnectRedis(url.href, `connect-redis:${hidePassword(url)}`, options);
  }
  if (scheme === 'connect-pg-simple') {
    const url = serverUrl(rest, text, ['postgres:', 'postgresql:']);
    refuseStoreParameters(url, text, ['schema', 'table']);
    return openConnectPgSimple(url.href, `connect-pg-simple:${hidePassword(url)}`, options);
  }
  throw usageError(
    `${hidePasswordIn(text)}: unknown peer '${scheme}:'. Use one of ${PEER_ADDRESSES}`,
  );
}
