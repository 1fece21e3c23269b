import {
  canonicalPath,
  hidePassword,
  hidePasswordIn,
  parseRedisUrl,
  parseServerUrl,
  pathOf,
  postgresPlace,
  redisPlace,
  type StorePlace,
  splitScheme,
} from '../addresses.js';
import { usageError } from '../exit-codes.js';
import { openSessionFileStore } from './file-store.js';
import { openLevelSessionStore } from './level.js';
import type { PeerOptions, PeerSource } from './peer.js';
import {
  CONNECT_PG_SIMPLE_SCHEMA,
  CONNECT_PG_SIMPLE_TABLE,
  openConnectPgSimple,
} from './postgres.js';
import { CONNECT_REDIS_PREFIX, openConnectRedis } from './redis.js';
import { openSqlitePeer, SQLITE_PEER_TABLE, SQLITE_PEERS } from './sqlite.js';

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

/** A peer address, checked and parsed, its data not opened yet. */
export interface PeerAddress {
  /** Where the peer keeps its data, to tell it from the target's store (`sameStore`). */
  readonly place: StorePlace;
  open(): Promise<PeerSource>;
}

/** The table SqliteStore keeps its sessions in, the only one a `sqlite:` address opens. */
const SQLITE_STORE_TABLE = 'sessions';

/**
 * Parses a peer address such as `connect-sqlite3:./sessions.db`, opening nothing. An option left
 * unset takes the peer's own default; one set for a peer that does not read it is refused.
 */
export function parsePeerAddress(text: string, options: PeerOptions): PeerAddress {
  const split = splitScheme(text);
  if (split === undefined) {
    throw usageError(`${hidePasswordIn(text)}: not a peer address. Use one of ${PEER_ADDRESSES}`);
  }
  const { scheme, rest } = split;
  if (PEERS.has(scheme)) refuseOptionsNotFor(scheme, options);
  if (scheme === 'session-file-store' || scheme === 'level-session-store') {
    const path = pathOf(rest, text);
    const open = scheme === 'session-file-store' ? openSessionFileStore : openLevelSessionStore;
    return { place: { identity: canonicalPath(path) }, open: () => open(path, text, options) };
  }
  if (SQLITE_PEERS.includes(scheme)) {
    const path = pathOf(rest, text);
    const table = options.table ?? SQLITE_PEER_TABLE;
    // One file may hold SqliteStore's table beside the peer's, when the peer's has another name.
    const identity =
      table === SQLITE_STORE_TABLE ? canonicalPath(path) : `${canonicalPath(path)}?table=${table}`;
    return { place: { identity }, open: () => openSqlitePeer(scheme, path, text, options) };
  }
  if (scheme === 'connect-redis') {
    serverUrl(rest, text, ['redis:', 'rediss:']);
    const url = parseRedisUrl(rest, text);
    refuseStoreParameters(url, text, ['prefix']);
    // node-redis reads no parameter from the URL, so any one given would be passed over.
    const [unknown] = url.searchParams.keys();
    if (unknown !== undefined) {
      throw usageError(`${hidePasswordIn(text)}: unknown parameter '${unknown}' (known: none)`);
    }
    return {
      place: redisPlace(url, options.prefix ?? CONNECT_REDIS_PREFIX),
      open: () => openConnectRedis(url.href, `connect-redis:${hidePassword(url)}`, options),
    };
  }
  if (scheme === 'connect-pg-simple') {
    const url = serverUrl(rest, text, ['postgres:', 'postgresql:']);
    refuseStoreParameters(url, text, ['schema', 'table']);
    return {
      place: postgresPlace(
        url,
        options.schema ?? CONNECT_PG_SIMPLE_SCHEMA,
        options.table ?? CONNECT_PG_SIMPLE_TABLE,
      ),
      open: () => openConnectPgSimple(url.href, `connect-pg-simple:${hidePassword(url)}`, options),
    };
  }
  throw usageError(
    `${hidePasswordIn(text)}: unknown peer '${scheme}:'${storeInstead(scheme, rest, text)}. Use one of ${PEER_ADDRESSES}`,
  );
}

/** The peers whose data sits where each sessile store's address points: whose `import` was meant. */
const PEERS_BESIDE: Record<string, readonly string[]> = {
  sqlite: SQLITE_PEERS,
  level: ['level-session-store'],
  file: ['session-file-store'],
  dbm: [],
  redis: ['connect-redis'],
  rediss: ['connect-redis'],
  postgres: ['connect-pg-simple'],
  postgresql: ['connect-pg-simple'],
};

/** For a sessile store's address given to `import`: that `copy` reads it, and the peer's address. */
function storeInstead(scheme: string, rest: string, text: string): string {
  const peers = PEERS_BESIDE[scheme];
  if (peers === undefined) return '';
  const server = scheme.startsWith('redis') || scheme.startsWith('postgres');
  // A server peer takes the URL without a store's parameters (`?prefix=`), a path peer the path.
  const at = server ? (text.split('?')[0] as string) : rest;
  const peerAddresses = peers.map((peer) => `${peer}:${hidePasswordIn(at)}`);
  const peerText =
    peerAddresses.length === 0 ? '' : `; a peer's data there is ${peerAddresses.join(' or ')}`;
  return `. It names a sessile store, which sessile copy --from reads${peerText}`;
}

/** Opens a peer's data from an address such as `connect-sqlite3:./sessions.db`. */
export async function openPeer(text: string, options: PeerOptions): Promise<PeerSource> {
  return parsePeerAddress(text, options).open();
}
