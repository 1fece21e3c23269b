import { isSessionId } from '@sessile/core';
import { fnv1a32 } from '@sessile/core/store';
import {
  bucketHash,
  crc32,
  decodeRecordHead,
  type Entry,
  PAGE_BYTES,
  type RecordHead,
} from './format.js';
import type { Transaction } from './transaction.js';

export interface HeadRead {
  /** Undefined when the record's header or id is damaged. */
  head: RecordHead | undefined;
  /** The first bytes of the extent, up to a page: the header, the id and often all the data. */
  headBytes: Buffer;
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
