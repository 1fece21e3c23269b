import { fnv1a32 } from '@sessile/core/store';
import { bucketOf, Chain } from './chain.js';
import { bucketHash, type Entry } from './format.js';
import {
  decodeOwnerList,
  isOwnerListEntry,
  OWNER_LIST_EXPIRES_AT,
  ownerListBytes,
} from './record-format.js';
import { removeEntry } from './records.js';
import type { Transaction } from './transaction.js';

/** Lists up to this size are rewritten in place through the journal; larger ones go to fresh space. */
const JOURNALED_LIST_MAX_BYTES = 32 * 1024;
/**
 * A list's first extent: room for six ids of 43 characters with a short owner, so most users'
 * lists are never moved. A move writes the list to new space, rewrites the owner's bucket page
 * through the journal and frees the old extent: three more writes than a change in place.
 */
const MIN_LIST_EXTENT_BYTES = 320;

interface Found {
  chain: Chain;
  hash: number;
  list: FoundList | undefined;
}

interface FoundList {
  index: number;
  entry: Entry;
  ids: string[];
  complete: boolean;
  /** The list failed its check: it is taken for an empty, incomplete list of this owner. */
  damaged: boolean;
  /** The entry's extent is one this file could have allocated, so it may be rewritten or freed. */
  plausible: boolean;
}

/**
 * The owner index: per owner, one list of its records' ids, kept in the hash table itself under
 * the hash of the owner, so a change to a record and to its owner's list share one transaction.
 * A list that fails its check is taken to be this owner's, as an unreadable record is its id's:
 * it is read as empty and incomplete, so nothing is lost that a scan cannot find again.
 */
function findList(tx: Transaction, owner: string): Found {
  const hash = bucketHash(fnv1a32(owner));
  const chain = Chain.loadBucket(tx, bucketOf(tx.header, hash));
  let damagedList: FoundList | undefined;
  for (let index = 0; index < chain.length; index++) {
    if (chain.hashAt(index) !== hash) continue;
    const entry = chain.entry(index);
    if (!isOwnerListEntry(entry)) continue;
    const plausible = tx.isPlausibleExtent(entry.recordOffset, entry.extentBytes);
    const list = plausible
      ? decodeOwnerList(tx.read(entry.recordOffset, entry.extentBytes))
      : undefined;
    if (list === undefined) {
      damagedList ??= { index, entry, ids: [], complete: false, damaged: true, plausible };
    } else if (list.owner === owner) {
      const { ids, complete } = list;
      return { chain, hash, list: { index, entry, ids, complete, damaged: false, plausible } };
    }
  }
  return { chain, hash, list: damagedList };
}

/**
 * The ids listed for `owner`: its records, expired ones included until they are removed.
 * `complete` is false after damage to the list, until `replaceOwnedIds` writes it anew.
 */
export function ownedIds(tx: Transaction, owner: string): { ids: string[]; complete: boolean } {
  const list = findList(tx, owner).list;
  return { ids: list?.ids ?? [], complete: list?.complete ?? true };
}

/** Lists `id` under `owner`, within `tx`. */
export function addOwnedId(tx: Transaction, owner: string, id: string): void {
  const found = findList(tx, owner);
  const { list } = found;
  if (list?.ids.includes(id)) return;
  writeList(tx, found, owner, [...(list?.ids ?? []), id], list?.complete ?? true);
}

/** Takes `id` off `owner`'s list, within `tx`; an emptied list is removed unless incomplete. */
export function removeOwnedId(tx: Transaction, owner: string, id: string): void {
  const found = findList(tx, owner);
  const { list } = found;
  if (list === undefined) return;
  const ids = list.ids.filter((listed) => listed !== id);
  // A damaged list is written anew, empty and incomplete, so it is read without error again.
  if (ids.length === list.ids.length && !list.damaged) return;
  writeList(tx, found, owner, ids, list.complete);
}

/** Writes `owner`'s whole list, complete, from a scan of every record; within `tx`. */
export function replaceOwnedIds(tx: Transaction, owner: string, ids: string[]): void {
  writeList(tx, findList(tx, owner), owner, ids, true);
}

/**
 * Writes `ids` as `owner`'s list over the one found, in place when it fits. A complete empty
 * list is removed; an incomplete one stays, to say that a scan must find the owner's records.
 */
function writeList(
  tx: Transaction,
  { chain, hash, list }: Found,
  owner: string,
  ids: string[],
  complete: boolean,
): void {
  if (ids.length === 0 && complete) {
    if (list === undefined) return;
    removeEntry(tx, chain, list.index);
    chain.flush();
    return;
  }
  const bytes = ownerListBytes(owner, ids, complete);
  if (list?.plausible && fitsInPlace(list.entry, bytes)) {
    // The bucket page that points to the list stays as it is.
    tx.write(list.entry.recordOffset, bytes);
    return;
  }
  const entry = { hash, ...placeList(tx, bytes), expiresAt: OWNER_LIST_EXPIRES_AT };
  if (list === undefined) {
    chain.append(entry);
    tx.header.recordCount++;
  } else {
    chain.set(list.index, entry);
    if (list.plausible) tx.release(list.entry.recordOffset, list.entry.extentBytes);
  }
  chain.flush();
}

function fitsInPlace(entry: Entry, bytes: Buffer): boolean {
  return bytes.length <= entry.extentBytes && bytes.length <= JOURNALED_LIST_MAX_BYTES;
}

/**
 * New space for a list, twice its size and at least `MIN_LIST_EXTENT_BYTES`, so that most later
 * additions fit in place and change neither the extent nor the bucket page that points to it.
 */
function placeList(tx: Transaction, bytes: Buffer): { extentBytes: number; recordOffset: number } {
  const extent = tx.allocate(
    Math.max(MIN_LIST_EXTENT_BYTES, 2 * bytes.length),
    bytes.length > JOURNALED_LIST_MAX_BYTES,
  );
  tx.writeExtent(extent, bytes);
  return { extentBytes: extent.size, recordOffset: extent.offset };
}
