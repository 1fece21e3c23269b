import { fnv1a32 } from '@sessile/core/store';
import { bucketOf, Chain } from './chain.js';
import { damaged } from './errors.js';
import { bucketHash, type Entry, PAGE_BYTES } from './format.js';
import {
  decodeOwnerList,
  isOwnerListEntry,
  OWNER_LIST_EXPIRES_AT,
  ownerListBytes,
  ownerListOwner,
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
  list: { index: number; entry: Entry; ids: string[] } | undefined;
}

/**
 * The owner index: per owner, one list of its records' ids, kept in the hash table itself under
 * the hash of the owner, so a change to a record and to its owner's list share one transaction.
 */
function findList(tx: Transaction, owner: string): Found {
  const hash = bucketHash(fnv1a32(owner));
  const chain = Chain.loadBucket(tx, bucketOf(tx.header, hash));
  for (let index = 0; index < chain.length; index++) {
    if (chain.hashAt(index) !== hash) continue;
    const entry = chain.entry(index);
    if (!isOwnerListEntry(entry)) continue;
    if (!tx.isPlausibleExtent(entry.recordOffset, entry.extentBytes)) {
      throw damaged(tx.path, 'an owner list entry points outside the file');
    }
    const head = tx.read(entry.recordOffset, Math.min(entry.extentBytes, PAGE_BYTES));
    const named = ownerListOwner(head);
    if (named === undefined) throw damaged(tx.path, 'bad owner list');
    if (named !== owner) continue;
    const whole =
      entry.extentBytes <= PAGE_BYTES ? head : tx.read(entry.recordOffset, entry.extentBytes);
    const ids = decodeOwnerList(whole);
    if (ids === undefined) throw damaged(tx.path, 'bad owner list checksum');
    return { chain, hash, list: { index, entry, ids } };
  }
  return { chain, hash, list: undefined };
}

/** The ids listed for `owner`: its records, expired ones included until they are removed. */
export function ownedIds(tx: Transaction, owner: string): string[] {
  return findList(tx, owner).list?.ids ?? [];
}

/** Lists `id` under `owner`, within `tx`. */
export function addOwnedId(tx: Transaction, owner: string, id: string): void {
  const { chain, hash, list } = findList(tx, owner);
  if (list?.ids.includes(id)) return;
  const ids = list === undefined ? [id] : [...list.ids, id];
  const bytes = ownerListBytes(owner, ids);
  if (list !== undefined && fitsInPlace(list.entry, bytes)) {
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
    tx.release(list.entry.recordOffset, list.entry.extentBytes);
  }
  chain.flush();
}

/** Takes `id` off `owner`'s list, within `tx`; an emptied list is removed. */
export function removeOwnedId(tx: Transaction, owner: string, id: string): void {
  const { chain, hash, list } = findList(tx, owner);
  if (list === undefined) return;
  const ids = list.ids.filter((listed) => listed !== id);
  if (ids.length === list.ids.length) return;
  if (ids.length === 0) {
    removeEntry(tx, chain, list.index);
    chain.flush();
    return;
  }
  const bytes = ownerListBytes(owner, ids);
  if (fitsInPlace(list.entry, bytes)) {
    tx.write(list.entry.recordOffset, bytes);
    return;
  }
  chain.set(list.index, { hash, ...placeList(tx, bytes), expiresAt: OWNER_LIST_EXPIRES_AT });
  tx.release(list.entry.recordOffset, list.entry.extentBytes);
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
