import { fnv1a32 } from '@sessile/core/store';
import { bucketOf, Chain } from './chain.js';
import { bucketHash, type Entry, type FileHeader } from './format.js';
import {
  decodeOwnerList,
  findInOwnerList,
  isIncompleteOwnerList,
  isOwnerListEntry,
  OWNER_LIST_EXPIRES_AT,
  ownerListBytes,
  ownerListWith,
  ownerListWithout,
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
/**
 * The lists a process remembers take at most about this much memory (their bytes, plus this
 * much more each): past it, the first remembered are forgotten, and read from the file again.
 */
const MAX_KNOWN_BYTES = 16 * 1024 * 1024;
const KNOWN_LIST_OVERHEAD_BYTES = 160;

/** Where an owner's list lies, and its bytes, as the file holds them. */
interface KnownList {
  offset: number;
  extentBytes: number;
  bytes: Buffer;
}

/** A change the open transaction made to what is known: a list, or none (removed or unknown). */
interface PendingList {
  owner: string;
  list: KnownList | undefined;
}

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
  /** The list's bytes; undefined when it failed its check. */
  bytes: Buffer | undefined;
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
 *
 * The lists this process's own commits wrote or read are remembered while the file is as its
 * last commit left it: every commit raises the header's sequence number, so a header that still
 * has it (and the same end and entry count) means no other process has changed anything since.
 * A change to a remembered list that fits its extent is then written in place without reading
 * the owner's bucket page or the list; every other change reads them, as at first.
 */
export class OwnerLists {
  /** Lists as the file holds them while its header has the sequence number, end and count below. */
  readonly #known = new Map<string, KnownList>();
  #knownBytes = 0;
  #appliedSeq = -1;
  #fileEnd = -1;
  #recordCount = -1;
  /** What the open transaction read or wrote: known once it commits, forgotten if it does not. */
  readonly #pending: PendingList[] = [];

  /** A transaction begins on the file with this header: anything known of another state is forgotten. */
  begin(header: FileHeader): void {
    if (this.#pending.length > 0) this.#pending.length = 0;
    if (
      header.appliedSeq !== this.#appliedSeq ||
      header.fileEnd !== this.#fileEnd ||
      header.recordCount !== this.#recordCount
    ) {
      this.forget();
      this.#stateIs(header);
    }
  }

  /** The open transaction committed, and left the file with this header. */
  committed(header: FileHeader): void {
    for (const { owner, list } of this.#pending) {
      const before = this.#known.get(owner);
      if (before !== undefined) this.#knownBytes -= sizeOf(before);
      if (list === undefined) {
        this.#known.delete(owner);
        continue;
      }
      // A list known already keeps its place: the first known are the first forgotten.
      this.#known.set(owner, list);
      this.#knownBytes += sizeOf(list);
    }
    this.#pending.length = 0;
    if (this.#knownBytes > MAX_KNOWN_BYTES) {
      for (const [owner, list] of this.#known) {
        this.#known.delete(owner);
        this.#knownBytes -= sizeOf(list);
        if (this.#knownBytes <= MAX_KNOWN_BYTES / 2) break;
      }
    }
    this.#stateIs(header);
  }

  /** Forgets every list, as when the table was rewritten. */
  forget(): void {
    this.#known.clear();
    this.#knownBytes = 0;
    this.#pending.length = 0;
    this.#appliedSeq = -1;
  }

  /**
   * The ids listed for `owner`: its records, expired ones included until they are removed.
   * `complete` is false after damage to the list, until `replace` writes it anew.
   */
  ownedIds(tx: Transaction, owner: string): { ids: string[]; complete: boolean } {
    const known = this.#lookup(owner);
    if (known !== undefined) {
      const list = decodeOwnerList(known.bytes);
      return { ids: list?.ids ?? [], complete: list?.complete ?? true };
    }
    const { chain, list } = findList(tx, owner);
    // A list not found in a bucket that lost entries may have been among them.
    return { ids: list?.ids ?? [], complete: list?.complete ?? !chain.lost };
  }

  /** Lists `id` under `owner`, within `tx`. */
  add(tx: Transaction, owner: string, id: string): void {
    const known = this.#lookup(owner);
    if (known !== undefined) {
      if (findInOwnerList(known.bytes, id) >= 0) return;
      if (this.#writeInPlace(tx, owner, known, ownerListWith(known.bytes, id))) return;
    }
    const found = this.#find(tx, owner);
    const { list } = found;
    if (list?.ids.includes(id)) return;
    this.#write(tx, found, owner, [...(list?.ids ?? []), id], list?.complete ?? !found.chain.lost);
  }

  /** Takes `id` off `owner`'s list, within `tx`; an emptied list is removed unless incomplete. */
  remove(tx: Transaction, owner: string, id: string): void {
    const known = this.#lookup(owner);
    if (known !== undefined) {
      const at = findInOwnerList(known.bytes, id);
      if (at < 0) return;
      const bytes = ownerListWithout(known.bytes, at);
      // An emptied complete list leaves the bucket page: that needs the page.
      const emptied = bytes.readUInt32LE(4) === 0 && !isIncompleteOwnerList(bytes);
      if (!emptied && this.#writeInPlace(tx, owner, known, bytes)) return;
    }
    const found = this.#find(tx, owner);
    const { list } = found;
    if (list === undefined) return;
    const ids = list.ids.filter((listed) => listed !== id);
    // A damaged list is written anew, empty and incomplete, so it is read without error again.
    if (ids.length === list.ids.length && !list.damaged) return;
    this.#write(tx, found, owner, ids, list.complete);
  }

  /** Writes `owner`'s whole list, complete, from a scan of every record; within `tx`. */
  replace(tx: Transaction, owner: string, ids: string[]): void {
    this.#write(tx, this.#find(tx, owner), owner, ids, true);
  }

  #stateIs(header: FileHeader): void {
    this.#appliedSeq = header.appliedSeq;
    this.#fileEnd = header.fileEnd;
    this.#recordCount = header.recordCount;
  }

  #lookup(owner: string): KnownList | undefined {
    const pending = this.#pending;
    for (let i = pending.length - 1; i >= 0; i--) {
      const change = pending[i] as PendingList;
      if (change.owner === owner) return change.list;
    }
    return this.#known.get(owner);
  }

  /** The list as the file holds it; remembered for this transaction when it is `owner`'s own. */
  #find(tx: Transaction, owner: string): Found {
    const found = findList(tx, owner);
    const list = found.list;
    if (list?.bytes !== undefined) {
      const { recordOffset: offset, extentBytes } = list.entry;
      this.#pending.push({ owner, list: { offset, extentBytes, bytes: list.bytes } });
    }
    return found;
  }

  /** Writes a known list's new bytes over its extent when they fit there; false when they do not. */
  #writeInPlace(tx: Transaction, owner: string, known: KnownList, bytes: Buffer): boolean {
    if (
      !fitsInPlace(known.extentBytes, bytes) ||
      !tx.isPlausibleExtent(known.offset, known.extentBytes)
    ) {
      return false;
    }
    // The bucket page that points to the list stays as it is.
    tx.writeFinal(known.offset, bytes);
    this.#pending.push({
      owner,
      list: { offset: known.offset, extentBytes: known.extentBytes, bytes },
    });
    return true;
  }

  /**
   * Writes `ids` as `owner`'s list over the one found, in place when it fits. A complete empty
   * list is removed; an incomplete one stays, to say that a scan must find the owner's records.
   */
  #write(
    tx: Transaction,
    { chain, hash, list }: Found,
    owner: string,
    ids: string[],
    complete: boolean,
  ): void {
    if (ids.length === 0 && complete) {
      this.#pending.push({ owner, list: undefined });
      if (list === undefined) return;
      removeEntry(tx, chain, list.index);
      chain.flush();
      return;
    }
    const bytes = ownerListBytes(owner, ids, complete);
    if (list?.plausible) {
      const { recordOffset: offset, extentBytes } = list.entry;
      if (this.#writeInPlace(tx, owner, { offset, extentBytes, bytes }, bytes)) return;
    }
    const placed = placeList(tx, bytes);
    const entry = { hash, ...placed, expiresAt: OWNER_LIST_EXPIRES_AT };
    if (list === undefined) {
      chain.append(entry);
      tx.header.recordCount++;
    } else {
      chain.set(list.index, entry);
      if (list.plausible) tx.release(list.entry.recordOffset, list.entry.extentBytes);
    }
    chain.flush();
    const { recordOffset: offset, extentBytes } = placed;
    this.#pending.push({ owner, list: { offset, extentBytes, bytes } });
  }
}

/** The memory a known list holds: one read from the file holds the whole read of its extent. */
function sizeOf(list: KnownList): number {
  return list.bytes.buffer.byteLength + KNOWN_LIST_OVERHEAD_BYTES;
}

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
      damagedList ??= {
        index,
        entry,
        ids: [],
        complete: false,
        bytes: undefined,
        damaged: true,
        plausible,
      };
    } else if (list.owner === owner) {
      const { ids, complete, bytes } = list;
      return {
        chain,
        hash,
        list: { index, entry, ids, complete, bytes, damaged: false, plausible },
      };
    }
  }
  return { chain, hash, list: damagedList };
}

function fitsInPlace(extentBytes: number, bytes: Buffer): boolean {
  return bytes.length <= extentBytes && bytes.length <= JOURNALED_LIST_MAX_BYTES;
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
