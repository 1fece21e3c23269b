import type { SessionStore } from '@sessile/core';
import type { StoreAddress } from './addresses.js';
import { CliError, EXIT } from './exit-codes.js';

interface KeyRange {
  gte?: Uint8Array;
  lt?: Uint8Array;
  limit: number;
}

/** `LevelStore.db` as the CLI reads it: keys as bytes, as the store's README documents. */
interface Keyspace {
  keys(range: KeyRange): { all(): Promise<Uint8Array[]> };
  get(key: Uint8Array): Promise<Uint8Array | undefined>;
}

const byte = (char: string) => Uint8Array.of(char.charCodeAt(0));

/**
 * The keys a LevelStore opened on a path never writes: everything but its three keyspaces, the
 * owner index `'o'`, the records `'r'` and the expiry index `'x'` (see @sessile/level's README,
 * "On-disk format").
 */
const FOREIGN_RANGES: readonly Omit<KeyRange, 'limit'>[] = [
  { lt: byte('o') },
  { gte: byte('p'), lt: byte('r') },
  { gte: byte('s'), lt: byte('x') },
  { gte: byte('y') },
];

/** level-session-store's session counter, in a directory it opened and in an app's database. */
const PEER_COUNTERS = ['__length__', '_session/__length__'];

/**
 * Refuses a `level:` directory that holds keys LevelStore never writes: the peer
 * level-session-store's data (which `import` reads), or another program's database. LevelStore
 * opens any LevelDB directory and would show it as an empty store, and its sweep reads keys of
 * its own keyspaces that another program may have written. The check costs one seek per range.
 */
export async function assertLevelStoreData(
  store: SessionStore,
  address: StoreAddress,
): Promise<void> {
  const db = (store as unknown as { db?: Keyspace }).db;
  if (db === undefined) return;
  let found: Uint8Array | undefined;
  for (const range of FOREIGN_RANGES) {
    [found] = await db.keys({ ...range, limit: 1 }).all();
    if (found !== undefined) break;
  }
  if (found === undefined) return;
  const encoder = new TextEncoder();
  const counters = await Promise.all(
    PEER_COUNTERS.map(async (key) => (await db.get(encoder.encode(key))) !== undefined),
  );
  const where = address.path as string;
  const peerIndex = counters.indexOf(true);
  let what: string;
  if (peerIndex !== -1) {
    const prefix = peerIndex === 0 ? '' : ' --prefix _session/';
    what = `holds level-session-store's sessions (its '${PEER_COUNTERS[peerIndex]}' key), not a sessile store. To move them into sessile: sessile import --from level-session-store:${where}${prefix} --to <another store>`;
  } else if (found[0] === byte('!')[0]) {
    what =
      "holds sublevels (keys starting with '!'): it is an app's own LevelDB database, not a sessile store opened on a path (the CLI cannot address a LevelStore the app opened inside its database with db and sublevel)";
  } else {
    what =
      "holds keys @sessile/level never writes: it is another program's LevelDB database, not a sessile store";
  }
  throw new CliError(`${address.display}: ${where} ${what}`, EXIT.failure, 'ERR_STORE_IO');
}
