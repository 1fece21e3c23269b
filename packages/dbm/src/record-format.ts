// Record and owner-list extents: their byte layout, encoding and checks.
import {
  crc32,
  type Entry,
  MAX_ID_BYTES,
  MAX_OWNER_BYTES,
  OWNER_LIST_HEADER_BYTES,
  OWNER_LIST_MAGIC,
  OWNER_LIST_V4_MAGIC,
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
// by). [magic u16][owner length u16][slot count u32][check u32][flags u32] owner, then per slot
// the id's length (u8) and the id; a slot whose first id byte is 0 held an id taken off the list.
// The check is the sum (mod 2^32) of a CRC-32 of the owner then the header's other fields, and of
// one CRC-32 per slot seeded with the slot's place, so adding or taking off one id rewrites that
// slot and the header, never the whole list. Version 4 lists (OWNER_LIST_V4_MAGIC) held only
// live ids, checked by one CRC-32 of what follows the header, then of the flags when any is set.

/** The expiresAt of a bucket entry that points to an owner list. */
export const OWNER_LIST_EXPIRES_AT = Number.NaN;

/** Flag: the list replaced a damaged one, so ids of its owner's records may be missing from it. */
const OWNER_LIST_INCOMPLETE = 1;
/** Ids are base64url, so no listed id starts with this byte. */
const TAKEN_OFF = 0;

/** An owner list as read or written, with what a change in place needs to know. */
export interface OwnerList {
  owner: string;
  /** False when ids of the owner's records may be missing: only a scan can tell them all. */
  complete: boolean;
  /** Each listed id, in list order, and where its slot starts. */
  slots: Map<string, number>;
  /** Slots in the list, taken-off ones included. */
  slotCount: number;
  /** Where the last slot ends: the list's length in bytes. */
  end: number;
  /** The sum of the slots' checks. */
  slotSum: number;
  /** The CRC-32 of the owner's bytes, where the list's check starts. */
  ownerCrc: number;
  /** A version-4 list: any change writes it anew. */
  v4: boolean;
}

/** Where a change in place rewrote a slot: bytes `at` to `end` of the list, besides its header. */
export interface SlotChange {
  at: number;
  end: number;
}

/** Only an intact entry is taken for an owner list: a damaged one is never read as one. */
export function isOwnerListEntry(entry: Entry): boolean {
  return entry.damaged !== true && Number.isNaN(entry.expiresAt);
}

/** The list's ids, in list order. */
export function listedIds(list: OwnerList): string[] {
  return [...list.slots.keys()];
}

/** The bytes of a list of `ids`, and the list as `decodeOwnerList` would read them. */
export function ownerListBytes(
  owner: string,
  ids: readonly string[],
  complete: boolean,
): { bytes: Buffer; list: OwnerList } {
  const ownerLength = Buffer.byteLength(owner, 'utf8');
  let total = OWNER_LIST_HEADER_BYTES + ownerLength;
  for (const id of ids) total += 1 + id.length;
  const buf = Buffer.alloc(total);
  buf.writeUInt16LE(OWNER_LIST_MAGIC, 0);
  buf.writeUInt16LE(ownerLength, 2);
  buf.writeUInt32LE(ids.length, 4);
  buf.writeUInt32LE(complete ? 0 : OWNER_LIST_INCOMPLETE, 12);
  let at = OWNER_LIST_HEADER_BYTES + buf.write(owner, OWNER_LIST_HEADER_BYTES, 'utf8');
  const ownerCrc = crc32(buf.subarray(OWNER_LIST_HEADER_BYTES, at));
  const slots = new Map<string, number>();
  let slotSum = 0;
  for (const id of ids) {
    buf.writeUInt8(id.length, at);
    buf.write(id, at + 1, 'latin1');
    slots.set(id, at);
    slotSum = (slotSum + slotCheck(buf.subarray(at, at + 1 + id.length), at)) >>> 0;
    at += 1 + id.length;
  }
  const slotCount = ids.length;
  const list = { owner, complete, slots, slotCount, end: at, slotSum, ownerCrc, v4: false };
  buf.writeUInt32LE(listCheck(buf, list), 8);
  return { bytes: buf, list };
}

function slotCheck(slot: Uint8Array, at: number): number {
  return crc32(slot, at);
}

/** The list's check from its owner, its header's other fields (in `header`), and its slots' sum. */
function listCheck(header: Buffer, list: OwnerList): number {
  const fields = crc32(header.subarray(12, 16), crc32(header.subarray(0, 8), list.ownerCrc));
  return (fields + list.slotSum) >>> 0;
}

/** Rewrites the slot count and check in the list's header after a change in place. */
function updateListHeader(bytes: Buffer, list: OwnerList): void {
  bytes.writeUInt32LE(list.slotCount, 4);
  bytes.writeUInt32LE(listCheck(bytes, list), 8);
}

/**
 * Adds `id` in a new last slot: `list` and its `bytes`, which must have room for the slot, are
 * changed in place.
 */
export function appendToOwnerList(list: OwnerList, bytes: Buffer, id: string): SlotChange {
  const at = list.end;
  const end = at + 1 + id.length;
  bytes[at] = id.length;
  bytes.write(id, at + 1, 'latin1');
  list.slots.set(id, at);
  list.slotCount++;
  list.end = end;
  list.slotSum = (list.slotSum + slotCheck(bytes.subarray(at, end), at)) >>> 0;
  updateListHeader(bytes, list);
  return { at, end };
}

/** Takes listed `id` off: `list` and its `bytes` are changed in place. */
export function takeOffOwnerList(list: OwnerList, bytes: Buffer, id: string): SlotChange {
  const at = list.slots.get(id) as number;
  const slot = bytes.subarray(at, at + 1 + id.length);
  const before = slotCheck(slot, at);
  slot[1] = TAKEN_OFF;
  list.slots.delete(id);
  list.slotSum = (list.slotSum - before + slotCheck(slot, at)) >>> 0;
  updateListHeader(bytes, list);
  return { at: at + 1, end: at + 2 };
}

/** A whole owner list, of either layout, or undefined when its check or lengths do not hold. */
export function decodeOwnerList(buf: Buffer): OwnerList | undefined {
  if (buf.length < OWNER_LIST_HEADER_BYTES) return undefined;
  const magic = buf.readUInt16LE(0);
  if (magic !== OWNER_LIST_MAGIC && magic !== OWNER_LIST_V4_MAGIC) return undefined;
  const ownerEnd = OWNER_LIST_HEADER_BYTES + buf.readUInt16LE(2);
  if (ownerEnd > buf.length) return undefined;
  const flags = buf.readUInt32LE(12);
  if ((flags & ~OWNER_LIST_INCOMPLETE) !== 0) return undefined;
  const count = buf.readUInt32LE(4);
  const v4 = magic === OWNER_LIST_V4_MAGIC;
  const slots = new Map<string, number>();
  let slotSum = 0;
  let at = ownerEnd;
  for (let i = 0; i < count; i++) {
    if (at >= buf.length) return undefined;
    const length = buf.readUInt8(at);
    const end = at + 1 + length;
    if (end > buf.length) return undefined;
    if (!v4) slotSum = (slotSum + slotCheck(buf.subarray(at, end), at)) >>> 0;
    if (v4 || buf[at + 1] !== TAKEN_OFF) slots.set(buf.toString('latin1', at + 1, end), at);
    at = end;
  }
  const list: OwnerList = {
    owner: buf.toString('utf8', OWNER_LIST_HEADER_BYTES, ownerEnd),
    complete: flags === 0,
    slots,
    slotCount: count,
    end: at,
    slotSum,
    ownerCrc: crc32(buf.subarray(OWNER_LIST_HEADER_BYTES, ownerEnd)),
    v4,
  };
  const check = v4 ? v4ListCheck(buf, at) : listCheck(buf, list);
  return check === buf.readUInt32LE(8) ? list : undefined;
}

/** Flags count only when set, so version-4 lists that carry none keep their checks. */
function v4ListCheck(buf: Buffer, end: number): number {
  const body = crc32(buf.subarray(OWNER_LIST_HEADER_BYTES, end));
  return buf.readUInt32LE(12) === 0 ? body : crc32(buf.subarray(12, 16), body);
}
