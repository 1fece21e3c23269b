// Record and owner-list extents: their byte layout, encoding and checks.
import {
  crc32,
  type Entry,
  MAX_ID_BYTES,
  MAX_OWNER_BYTES,
  OWNER_LIST_HEADER_BYTES,
  OWNER_LIST_MAGIC,
  RECORD_HEADER_BYTES,
  RECORD_MAGIC,
} from './format.js';

// ---------------------------------------------------------------------------------------------
// Records: [magic u16][id length u8][flags u8][data length u32][expiresAt f64]
//          [header crc u32 over bytes 0..16, 24..28, the id and the owner][data crc u32]
//          [owner length u16][reserved u16] id owner data

export function recordBytes(
  id: string,
  data: Uint8Array,
  expiresAt: number,
  owner: string | undefined,
): Buffer {
  const idLength = id.length;
  const ownerLength = owner === undefined ? 0 : Buffer.byteLength(owner, 'utf8');
  const dataStart = RECORD_HEADER_BYTES + idLength + ownerLength;
  const buf = Buffer.allocUnsafe(dataStart + data.byteLength);
  buf.writeUInt16LE(RECORD_MAGIC, 0);
  buf.writeUInt8(idLength, 2);
  buf.writeUInt8(0, 3);
  buf.writeUInt32LE(data.byteLength, 4);
  buf.writeDoubleLE(expiresAt, 8);
  buf.writeUInt16LE(ownerLength, 24);
  buf.writeUInt16LE(0, 26);
  buf.write(id, RECORD_HEADER_BYTES, 'latin1');
  if (owner !== undefined) buf.write(owner, RECORD_HEADER_BYTES + idLength, 'utf8');
  buf.set(data, dataStart);
  buf.writeUInt32LE(recordHeaderCrc(buf, dataStart), 16);
  buf.writeUInt32LE(crc32(buf.subarray(dataStart)), 20);
  return buf;
}

/** The header checksum: the fixed fields but the checksums themselves, then the id and owner. */
function recordHeaderCrc(buf: Buffer, dataStart: number): number {
  const fixed = crc32(buf.subarray(24, RECORD_HEADER_BYTES), crc32(buf.subarray(0, 16)));
  return crc32(buf.subarray(RECORD_HEADER_BYTES, dataStart), fixed);
}

export interface RecordHead {
  id: string;
  /** Undefined for a record without an owner. */
  owner: string | undefined;
  dataLength: number;
  expiresAt: number;
  dataCrc: number;
  /** Bytes from the start of the extent to the first data byte. */
  dataStart: number;
}

/** Decodes a record's header, id and owner from the first bytes of its extent; undefined when damaged. */
export function decodeRecordHead(buf: Buffer, extentBytes: number): RecordHead | undefined {
  if (buf.length < RECORD_HEADER_BYTES || buf.readUInt16LE(0) !== RECORD_MAGIC) return undefined;
  const idLength = buf.readUInt8(2);
  const ownerLength = buf.readUInt16LE(24);
  const dataStart = RECORD_HEADER_BYTES + idLength + ownerLength;
  if (
    idLength === 0 ||
    idLength > MAX_ID_BYTES ||
    ownerLength > MAX_OWNER_BYTES ||
    buf.length < dataStart
  ) {
    return undefined;
  }
  const dataLength = buf.readUInt32LE(4);
  if (dataStart + dataLength > extentBytes) return undefined;
  if (recordHeaderCrc(buf, dataStart) !== buf.readUInt32LE(16)) return undefined;
  const idEnd = RECORD_HEADER_BYTES + idLength;
  return {
    id: buf.toString('latin1', RECORD_HEADER_BYTES, idEnd),
    owner: ownerLength === 0 ? undefined : buf.toString('utf8', idEnd, dataStart),
    dataLength,
    expiresAt: buf.readDoubleLE(8),
    dataCrc: buf.readUInt32LE(20),
    dataStart,
  };
}

/** The 12 bytes at record offset 8 after a touch: the new expiresAt and header crc. */
export function touchedRecordTail(head: Buffer, dataStart: number, expiresAt: number): Buffer {
  const copy = Buffer.from(head.subarray(0, dataStart));
  copy.writeDoubleLE(expiresAt, 8);
  copy.writeUInt32LE(recordHeaderCrc(copy, dataStart), 16);
  return copy.subarray(8, 20);
}

// ---------------------------------------------------------------------------------------------
// Owner lists: the ids of one owner's records, in an extent of their own that a bucket entry
// marked by a NaN expiresAt points to (so count, ids and sweep, which compare expiries, pass it
// by). [magic u16][owner length u16][id count u32][check u32][flags u32] owner, then per id its
// length (u8) and the id. The check is a CRC-32 of what follows the header, then of the flags
// when any is set.

/** The expiresAt of a bucket entry that points to an owner list. */
export const OWNER_LIST_EXPIRES_AT = Number.NaN;

/** Flag: the list replaced a damaged one, so ids of its owner's records may be missing from it. */
const OWNER_LIST_INCOMPLETE = 1;

export interface OwnerList {
  owner: string;
  ids: string[];
  /** False when ids of the owner's records may be missing: only a scan can tell them all. */
  complete: boolean;
  /** The list's bytes, without what follows it in its extent. */
  bytes: Buffer;
}

/** Only an intact entry is taken for an owner list: a damaged one is never read as one. */
export function isOwnerListEntry(entry: Entry): boolean {
  return entry.damaged !== true && Number.isNaN(entry.expiresAt);
}

export function ownerListBytes(owner: string, ids: readonly string[], complete: boolean): Buffer {
  const ownerLength = Buffer.byteLength(owner, 'utf8');
  let total = OWNER_LIST_HEADER_BYTES + ownerLength;
  for (const id of ids) total += 1 + id.length;
  // Not from the shared pool: the owner lists a store remembers keep their bytes.
  const buf = Buffer.alloc(total);
  buf.writeUInt16LE(OWNER_LIST_MAGIC, 0);
  buf.writeUInt16LE(ownerLength, 2);
  buf.writeUInt32LE(ids.length, 4);
  buf.writeUInt32LE(complete ? 0 : OWNER_LIST_INCOMPLETE, 12);
  let at = OWNER_LIST_HEADER_BYTES + buf.write(owner, OWNER_LIST_HEADER_BYTES, 'utf8');
  for (const id of ids) {
    buf.writeUInt8(id.length, at);
    at += 1 + buf.write(id, at + 1, 'latin1');
  }
  buf.writeUInt32LE(ownerListCheck(buf, at), 8);
  return buf;
}

/** Flags count only when set, so files whose lists carry none keep their checks. */
function ownerListCheck(buf: Buffer, end: number): number {
  const body = crc32(buf.subarray(OWNER_LIST_HEADER_BYTES, end));
  return buf.readUInt32LE(12) === 0 ? body : crc32(buf.subarray(12, 16), body);
}

/** A whole owner list, or undefined when its check or lengths do not hold. */
export function decodeOwnerList(buf: Buffer): OwnerList | undefined {
  if (buf.length < OWNER_LIST_HEADER_BYTES || buf.readUInt16LE(0) !== OWNER_LIST_MAGIC) {
    return undefined;
  }
  const ownerEnd = OWNER_LIST_HEADER_BYTES + buf.readUInt16LE(2);
  if (ownerEnd > buf.length) return undefined;
  const count = buf.readUInt32LE(4);
  let at = ownerEnd;
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    if (at >= buf.length) return undefined;
    const length = buf.readUInt8(at);
    if (at + 1 + length > buf.length) return undefined;
    ids.push(buf.toString('latin1', at + 1, at + 1 + length));
    at += 1 + length;
  }
  if (ownerListCheck(buf, at) !== buf.readUInt32LE(8)) return undefined;
  const flags = buf.readUInt32LE(12);
  if ((flags & ~OWNER_LIST_INCOMPLETE) !== 0) return undefined;
  return {
    owner: buf.toString('utf8', OWNER_LIST_HEADER_BYTES, ownerEnd),
    ids,
    complete: flags === 0,
    bytes: buf.subarray(0, at),
  };
}

/** True when an owner list's bytes (as `ownerListBytes` wrote them) say it may be incomplete. */
export function isIncompleteOwnerList(list: Buffer): boolean {
  return list.readUInt32LE(12) !== 0;
}

/** Where `id`'s entry starts in an owner list's bytes, or -1 when it is not listed. */
export function findInOwnerList(list: Buffer, id: string): number {
  const count = list.readUInt32LE(4);
  let at = OWNER_LIST_HEADER_BYTES + list.readUInt16LE(2);
  for (let i = 0; i < count; i++) {
    const length = list[at] as number;
    if (length === id.length && listedIdIs(list, at + 1, id)) return at;
    at += 1 + length;
  }
  return -1;
}

/** Ids are base64url, so each character is one byte of the list (written as latin1). */
function listedIdIs(list: Buffer, at: number, id: string): boolean {
  for (let k = 0; k < id.length; k++) if (list[at + k] !== id.charCodeAt(k)) return false;
  return true;
}

/**
 * An owner list's bytes with `id` added at its end, and its count and check updated; `list` is
 * left as it is. The same bytes as `ownerListBytes` of the longer list, without encoding it all.
 */
export function ownerListWith(list: Buffer, id: string): Buffer {
  const bytes = Buffer.alloc(list.length + 1 + id.length);
  list.copy(bytes, 0);
  bytes[list.length] = id.length;
  bytes.write(id, list.length + 1, 'latin1');
  bytes.writeUInt32LE(list.readUInt32LE(4) + 1, 4);
  bytes.writeUInt32LE(ownerListCheck(bytes, bytes.length), 8);
  return bytes;
}

/** An owner list's bytes without the id entry that starts at `at`; `list` is left as it is. */
export function ownerListWithout(list: Buffer, at: number): Buffer {
  const end = at + 1 + (list[at] as number);
  const bytes = Buffer.alloc(list.length - (end - at));
  list.copy(bytes, 0, 0, at);
  list.copy(bytes, at, end);
  bytes.writeUInt32LE(list.readUInt32LE(4) - 1, 4);
  bytes.writeUInt32LE(ownerListCheck(bytes, bytes.length), 8);
  return bytes;
}
