import { fnv1a32 } from '@sessile/core/store';
import { bucketOf, Chain } from './chain.js';
import { bucketHash, type Entry, type FileHeader, OWNER_LIST_HEADER_BYTES } from './format.js';
import {
  appendToOwnerList,
  decodeOwnerList,
  isOwnerListEntry,
  listedIds,
  OWNER_LIST_EXPIRES_AT,
  type OwnerList,
  ownerListBytes,
  type SlotChange,
  takeOffOwnerList,
} from './record-format.js';
import { removeEntry } from './records.js';
import type { Transaction } from './transaction.js';

/** Lists up to this size are rewritten in place through the journal; larger ones go to fresh space. */
const JOURNALED_LIST_MAX_BYTES = 32 * 1024;
/**
 * A list's first extent: room for 14 ids of 43 characters with a short owner, so most users'
 * lists are never moved (a user's sessions pile up until they expire, one per device, browser
 * and sign-in). A move writes the list to new space, rewrites the owner's bucket page through the
 * journal and frees the old extent: two more writes and two more reads than a change in place.
 */
const MIN_LIST_EXTENT_BYTES = 640;
/**
 * Taken-off slots are reclaimed by writing the list anew once they outnumber the listed ids and
 * are at least this many: each such write is paid for by as many removals as it keeps ids.
 */
const MIN_TAKEN_OFF_TO_COMPACT = 8;
/**
 * The lists a process remembers take at most about this much memory (an estimate per listed
 * id, plus this much more per list): past it, the first remembered are forgotten, and read from
 * the file again.
 */
const MAX_KNOWN_BYTES = 16 * 1024 * 1024;
const KNOWN_LIST_OVERHEAD_BYTES = 160;
const KNOWN_ID_BYTES = 128;
/**
 * A list not remembered yet is remembered only while the others take less than this. Forgetting
 * the first remembered to make room for each new one would forget every list in turn when
 * owners are written round robin (as the owners benchmark does), and re-read each; this way the
 * lists remembered stay, and leave as they empty (their sessions expired or signed out).
 */
const ADMIT_KNOWN_BYTES = (MAX_KNOWN_BYTES * 3) / 4;
/**
 * A change in place within this many bytes of the list's start is written whole from there, in
 * one write, rather than as its header and its slot: one system call fewer when it is applied.
 */
const ONE_WRITE_BYTES = 4096;

/** Where an owner's list lies, and what it holds, as the file holds it. */
interface KnownList {
  offset: number;
  extentBytes: number;
  list: OwnerList;
  /** The list's bytes, as many as its extent holds: changes in place are made here first. */
  bytes: Buffer;
  /** What this list adds to the remembered lists' memory, as last counted. */
  counted: number;
}

interface Found {
  chain: Chain;
  hash: number;
  list: FoundList | undefined;
  /** The list found, remembered for changes in place; undefined when it failed its check. */
  known: KnownList | undefined;
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
 *
 * The lists this process's own commits wrote or read are remembered while the file is as its
 * last commit left it: every commit raises the header's sequence number, so a header that still
 * has it (and the same end and entry count) means no other process has changed anything since.
 * A change to a remembered list that fits its extent then writes one slot and the list's header
 * without reading the owner's bucket page or the list; every other change reads them, as at
 * first. Remembered lists are changed as the transaction writes, so a transaction that does not
 * commit makes the store forget them all.
 */
export class OwnerLists {
  /** Lists as the file holds them while its header has the sequence number, end and count below. */
  readonly #known = new Map<string, KnownList>();
  #knownBytes = 0;
  #appliedSeq = -1;
  #fileEnd = -1;
  #recordCount = -1;
  /** Owners whose remembered list the open transaction read or changed. */
  readonly #touched = new Set<string>();

  /** A transaction begins on the file with this header: anything known of another state is forgotten. */
  begin(header: FileHeader): void {
    if (
      this.#touched.size > 0 ||
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
    for (const owner of this.#touched) {
      const known = this.#known.get(owner);
      if (known === undefined) continue;
      const size = sizeOf(known);
      this.#knownBytes += size - known.counted;
      known.counted = size;
    }
    this.#touched.clear();
    if (this.#knownBytes > MAX_KNOWN_BYTES) {
      for (const [owner, known] of this.#known) {
        this.#known.delete(owner);
        this.#knownBytes -= known.counted;
        if (this.#knownBytes <= MAX_KNOWN_BYTES) break;
      }
    }
    this.#stateIs(header);
  }

  /** Forgets every list, as when the table was rewritten. */
  forget(): void {
    this.#known.clear();
    this.#knownBytes = 0;
    this.#touched.clear();
    this.#appliedSeq = -1;
  }

  /**
   * The ids listed for `owner`: its records, expired ones included until they are removed.
   * `complete` is false after damage to the list, until `replace` writes it anew.
   */
  ownedIds(tx: Transaction, owner: string): { ids: string[]; complete: boolean } {
    const known = this.#known.get(owner);
    if (known !== undefined) return { ids: listedIds(known.list), complete: known.list.complete };
    const { chain, list } = findList(tx, owner).found;
    // A list not found in a bucket that lost entries may have been among them.
    return { ids: list?.ids ?? [], complete: list?.complete ?? !chain.lost };
  }

  /** Lists `id` under `owner`, within `tx`. */
  add(tx: Transaction, owner: string, id: string): void {
    const known = this.#known.get(owner);
    if (known !== undefined) {
      if (known.list.slots.has(id)) return;
      if (this.#appendInPlace(tx, owner, known, id)) return;
    }
    const found = known === undefined ? this.#find(tx, owner) : this.#findKnown(tx, owner, known);
    const { list } = found;
    if (list?.ids.includes(id)) return;
    // A list just read gets the chance a remembered one had above.
    const read = known === undefined ? found.known : undefined;
    if (read !== undefined && this.#appendInPlace(tx, owner, read, id)) return;
    this.#write(tx, found, owner, [...(list?.ids ?? []), id], list?.complete ?? !found.chain.lost);
  }

  /** Takes `id` off `owner`'s list, within `tx`; an emptied list is removed unless incomplete. */
  remove(tx: Transaction, owner: string, id: string): void {
    const known = this.#known.get(owner);
    if (known !== undefined) {
      if (!known.list.slots.has(id)) return;
      if (this.#takeOffInPlace(tx, owner, known, id)) return;
    }
    const found = known === undefined ? this.#find(tx, owner) : this.#findKnown(tx, owner, known);
    const { list } = found;
    if (list === undefined) return;
    const read = known === undefined ? found.known : undefined;
    if (read !== undefined) {
      if (!read.list.slots.has(id)) return;
      if (this.#takeOffInPlace(tx, owner, read, id)) return;
    }
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

  /** The list as the file holds it; remembered when it is `owner`'s own and intact. */
  #find(tx: Transaction, owner: string): Found {
    const { found, decoded } = findList(tx, owner);
    if (found.list === undefined || decoded === undefined) return { ...found, known: undefined };
    const { recordOffset: offset, extentBytes } = found.list.entry;
    const { list, bytes } = decoded;
    return { ...found, known: this.#remember(owner, { offset, extentBytes, list, bytes }) };
  }

  /**
   * The remembered list where its owner's bucket points to it, without reading the list again:
   * while the file is as the last commit left it, that entry still names the remembered extent.
   */
  #findKnown(tx: Transaction, owner: string, known: KnownList): Found {
    const hash = bucketHash(fnv1a32(owner));
    const chain = Chain.loadBucket(tx, bucketOf(tx.header, hash));
    for (let index = 0; index < chain.length; index++) {
      if (chain.hashAt(index) !== hash) continue;
      const entry = chain.entry(index);
      if (!isOwnerListEntry(entry) || entry.recordOffset !== known.offset) continue;
      const { list } = known;
      const plausible = tx.isPlausibleExtent(entry.recordOffset, entry.extentBytes);
      const ids = listedIds(list);
      return {
        chain,
        hash,
        list: { index, entry, ids, complete: list.complete, damaged: false, plausible },
        known,
      };
    }
    return this.#find(tx, owner);
  }

  /** Remembers `owner`'s list as the open transaction leaves it, or that it has none. */
  #remember(owner: string, list: Omit<KnownList, 'counted'> | undefined): KnownList | undefined {
    const before = this.#known.get(owner);
    if (before !== undefined) this.#knownBytes -= before.counted;
    this.#touched.add(owner);
    if (list === undefined) {
      this.#known.delete(owner);
      return undefined;
    }
    // A list known already keeps its place: the first known are the first forgotten.
    const known = { ...list, counted: 0 };
    // Past the admission bound a new list serves this change only.
    if (before === undefined && this.#knownBytes >= ADMIT_KNOWN_BYTES) return known;
    this.#known.set(owner, known);
    return known;
  }

  /** Adds `id` in a new slot at the known list's end, when its extent has room; false if not. */
  #appendInPlace(tx: Transaction, owner: string, known: KnownList, id: string): boolean {
    const { list } = known;
    if (list.v4 || list.end + 1 + id.length > known.extentBytes) return false;
    if (!tx.isPlausibleExtent(known.offset, known.extentBytes)) return false;
    this.#writeInPlace(tx, owner, known, appendToOwnerList(list, known.bytes, id));
    return true;
  }

  /**
   * Marks `id`'s slot taken off in the known list; false when the list must be written anew
   * instead: emptied (it leaves the bucket page), mostly taken-off slots, or version 4.
   */
  #takeOffInPlace(tx: Transaction, owner: string, known: KnownList, id: string): boolean {
    const { list } = known;
    const listed = list.slots.size - 1;
    const takenOff = list.slotCount - listed;
    if (list.v4 || (listed === 0 && list.complete)) return false;
    if (takenOff > listed && takenOff >= MIN_TAKEN_OFF_TO_COMPACT) return false;
    if (!tx.isPlausibleExtent(known.offset, known.extentBytes)) return false;
    this.#writeInPlace(tx, owner, known, takeOffOwnerList(list, known.bytes, id));
    return true;
  }

  /** Writes the known list's header and `changed` slot; the bucket page stays as it is. */
  #writeInPlace(tx: Transaction, owner: string, known: KnownList, changed: SlotChange): void {
    const { offset, bytes } = known;
    // Copies: the remembered bytes change with the next change in place.
    if (changed.end <= ONE_WRITE_BYTES) {
      tx.writeFinal(offset, Buffer.from(bytes.subarray(0, changed.end)));
    } else {
      tx.writeFinal(offset, Buffer.from(bytes.subarray(0, OWNER_LIST_HEADER_BYTES)));
      tx.writeFinal(offset + changed.at, Buffer.from(bytes.subarray(changed.at, changed.end)));
    }
    this.#touched.add(owner);
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
      this.#remember(owner, undefined);
      if (list === undefined) return;
      removeEntry(tx, chain, list.index);
      chain.flush();
      return;
    }
    const { bytes, list: written } = ownerListBytes(owner, ids, complete);
    if (list?.plausible && fitsInPlace(list.entry.extentBytes, bytes)) {
      const { recordOffset: offset, extentBytes } = list.entry;
      // The bucket page that points to the list stays as it is.
      tx.writeFinal(offset, bytes);
      this.#remember(owner, {
        offset,
        extentBytes,
        list: written,
        bytes: roomy(bytes, extentBytes),
      });
      return;
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
    this.#remember(owner, { offset, extentBytes, list: written, bytes: roomy(bytes, extentBytes) });
  }
}

/** An estimate of the memory a known list holds: its bytes, and a map entry per listed id. */
function sizeOf(known: KnownList): number {
  return KNOWN_LIST_OVERHEAD_BYTES + known.bytes.length + KNOWN_ID_BYTES * known.list.slots.size;
}

/** A copy of a list's `bytes` with room for as many as its extent holds. */
function roomy(bytes: Buffer, extentBytes: number): Buffer {
  const copy = Buffer.alloc(extentBytes);
  bytes.copy(copy);
  return copy;
}

/** `owner`'s list in its bucket, and the list itself when it passed its check. */
function findList(
  tx: Transaction,
  owner: string,
): { found: Omit<Found, 'known'>; decoded: { list: OwnerList; bytes: Buffer } | undefined } {
  const hash = bucketHash(fnv1a32(owner));
  const chain = Chain.loadBucket(tx, bucketOf(tx.header, hash));
  let damagedList: FoundList | undefined;
  for (let index = 0; index < chain.length; index++) {
    if (chain.hashAt(index) !== hash) continue;
    const entry = chain.entry(index);
    if (!isOwnerListEntry(entry)) continue;
    const plausible = tx.isPlausibleExtent(entry.recordOffset, entry.extentBytes);
    const bytes = plausible ? tx.read(entry.recordOffset, entry.extentBytes) : undefined;
    const list = bytes === undefined ? undefined : decodeOwnerList(bytes);
    if (list === undefined) {
      damagedList ??= { index, entry, ids: [], complete: false, damaged: true, plausible };
    } else if (list.owner === owner) {
      const { complete } = list;
      const ids = listedIds(list);
      return {
        found: { chain, hash, list: { index, entry, ids, complete, damaged: false, plausible } },
        decoded: { list, bytes: bytes as Buffer },
      };
    }
  }
  return { found: { chain, hash, list: damagedList }, decoded: undefined };
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
