import { isSessionId } from '@sessile/core';
import { fnv1a32 } from '@sessile/core/store';
import { bucketOf, Chain } from './chain.js';
import { bucketHash, classOf, classSize, crc32, type Entry, PAGE_BYTES } from './format.js';
import { decodeRecordHead, isOwnerListEntry, type RecordHead } from './record-format.js';
import type { Transaction } from './transaction.js';

/** Records up to this size are rewritten in place (through the journal) when their class fits. */
const IN_PLACE_MAX_BYTES = 64 * 1024;
/** Larger records always go to unreferenced space, so the journal never has to copy them. */
const JOURNALED_RECORD_MAX_BYTES = 32 * 1024;

export interface HeadRead {
  /** Undefined when the record's header or id is damaged. */
  head: RecordHead | undefined;
  /** The first bytes of the extent, up to a page: the header, the id and often all the data. */
  headBytes: Buffer;
}

export interface Match {
  index: number;
  entry: Entry;
  /** Undefined when the record's header or id is damaged. */
  head: RecordHead | undefined;
  headBytes: Buffer;
}

export interface Lookup {
  tx: Transaction;
  chain: Chain;
  hash: number;
  match: Match | undefined;
}

/**
 * The entry of `id`: its intact entry, else one that cannot be read back as another id's
 * (a damaged record, or a damaged entry of this hash or pointing at this id's record).
 */
export function findEntry(tx: Transaction, id: string): Lookup {
  const hash = bucketHash(fnv1a32(id));
  const chain = Chain.loadBucket(tx, bucketOf(tx.header, hash));
  let candidate: Match | undefined;
  for (let index = 0; index < chain.length; index++) {
    if (chain.hashAt(index) !== hash) continue;
    const entry = chain.entry(index);
    if (isOwnerListEntry(entry)) continue;
    const { head, headBytes } = readHead(tx, entry);
    if (head?.id === id && entry.damaged !== true) {
      return { tx, chain, hash, match: { index, entry, head, headBytes } };
    }
    if ((head === undefined || entry.damaged === true) && candidate === undefined)
      candidate = { index, entry, head, headBytes };
  }
  // A damaged hash field hides an entry from the pass above; only a miss pays for this one.
  for (let index = 0; index < chain.length && candidate === undefined; index++) {
    if (chain.hashAt(index) === hash) continue;
    const entry = chain.entry(index);
    if (entry.damaged !== true) continue;
    const { head, headBytes } = readHead(tx, entry);
    if (head?.id === id) candidate = { index, entry, head, headBytes };
  }
  return { tx, chain, hash, match: candidate };
}

/** Reads the head of the record an entry points to; nothing when the entry's extent is implausible. */
export function readHead(tx: Transaction, entry: Entry): HeadRead {
  if (!tx.isPlausibleExtent(entry.recordOffset, entry.extentBytes)) {
    return { head: undefined, headBytes: Buffer.alloc(0) };
  }
  const headBytes = tx.read(entry.recordOffset, Math.min(entry.extentBytes, PAGE_BYTES));
  return { head: decodeRecordHead(headBytes, entry.extentBytes), headBytes };
}

/** The record's data if its checksum holds. */
export function recordData(
  tx: Transaction,
  entry: Entry,
  head: RecordHead,
  headBytes: Buffer,
): Buffer | undefined {
  const end = head.dataStart + head.dataLength;
  const data =
    end <= headBytes.length
      ? headBytes.subarray(head.dataStart, end)
      : tx.read(entry.recordOffset + head.dataStart, head.dataLength);
  return crc32(data) === head.dataCrc ? data : undefined;
}

/** A record head's id when it is a valid session id hashing to this entry, or undefined. */
export function idOf(entry: Entry, head: RecordHead | undefined): string | undefined {
  if (head === undefined || !isSessionId(head.id)) return undefined;
  return bucketHash(fnv1a32(head.id)) === entry.hash ? head.id : undefined;
}

/**
 * Writes `bytes` (a record or an owner list) over the extent of `old` when its size class fits,
 * else into new space, freeing the old extent. Returns where they went.
 */
export function writeExtentBytes(
  tx: Transaction,
  old: Entry | undefined,
  bytes: Buffer,
): { extentBytes: number; recordOffset: number } {
  const plausible =
    old !== undefined &&
    old.damaged !== true &&
    tx.isPlausibleExtent(old.recordOffset, old.extentBytes);
  if (
    plausible &&
    classSize(classOf(bytes.length)) === old.extentBytes &&
    old.extentBytes <= IN_PLACE_MAX_BYTES
  ) {
    tx.write(old.recordOffset, bytes);
    return { extentBytes: old.extentBytes, recordOffset: old.recordOffset };
  }
  const extent = tx.allocate(bytes.length, bytes.length > JOURNALED_RECORD_MAX_BYTES);
  tx.writeExtent(extent, bytes);
  if (plausible) tx.release(old.recordOffset, old.extentBytes);
  return { extentBytes: extent.size, recordOffset: extent.offset };
}

/** Removes a chain's entry `index` and frees its extent (a damaged entry's extent is left alone). */
export function removeEntry(tx: Transaction, chain: Chain, index: number): void {
  const removed = chain.remove(index);
  if (removed.damaged !== true && tx.isPlausibleExtent(removed.recordOffset, removed.extentBytes)) {
    tx.release(removed.recordOffset, removed.extentBytes);
  }
  tx.header.recordCount--;
}
