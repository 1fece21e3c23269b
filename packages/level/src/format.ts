import { isOwner, SessionError } from '@sessile/core';

// Every key starts with one byte naming its keyspace, so all three live in one database (or one
// sublevel) and a record and its index entries can change in one atomic batch.
export const OWNER_PREFIX = 0x6f; // 'o'
export const RECORD_PREFIX = 0x72; // 'r'
export const INDEX_PREFIX = 0x78; // 'x'
/** A record without an owner: `[1][expiresAt][data]`. */
export const PLAIN_FORMAT = 1;
/** A record with an owner: `[2][expiresAt][owner's UTF-8 byte length, uint16][owner][data]`. */
export const OWNED_FORMAT = 2;
export const VALUE_HEADER_BYTES = 9;
const OWNED_HEADER_BYTES = VALUE_HEADER_BYTES + 2;
const TIME_BYTES = 8;
const INDEX_HEADER_BYTES = 1 + TIME_BYTES;
const OWNER_KEY_HEADER_BYTES = 1 + 2;

export const INDEX_START: Uint8Array = Uint8Array.of(INDEX_PREFIX);
export const INDEX_END: Uint8Array = Uint8Array.of(INDEX_PREFIX + 1);
export const RECORDS_START: Uint8Array = Uint8Array.of(RECORD_PREFIX);
export const RECORDS_END: Uint8Array = Uint8Array.of(RECORD_PREFIX + 1);
export const OWNERS_START: Uint8Array = Uint8Array.of(OWNER_PREFIX);
export const OWNERS_END: Uint8Array = Uint8Array.of(OWNER_PREFIX + 1);
export const EMPTY_VALUE: Uint8Array = new Uint8Array(0);

/** `'r' + id`. Ids are validated base64url, so one byte per character. */
export function recordKey(id: string): Buffer {
  const key = Buffer.allocUnsafe(1 + id.length);
  key[0] = RECORD_PREFIX;
  key.write(id, 1, 'latin1');
  return key;
}

export function idOfRecordKey(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset + 1, key.byteLength - 1).toString('latin1');
}

/** `'x' + time + id`, where byte order equals numeric order of `expiresAt`. */
export function indexKey(expiresAt: number, id: string): Buffer {
  const key = Buffer.allocUnsafe(INDEX_HEADER_BYTES + id.length);
  key[0] = INDEX_PREFIX;
  writeOrderedTime(key, 1, expiresAt);
  key.write(id, INDEX_HEADER_BYTES, 'latin1');
  return key;
}

/** The smallest key after every index entry with `expiresAt <= now`. */
export function indexEndAfter(now: number): Buffer {
  const key = Buffer.allocUnsafe(INDEX_HEADER_BYTES + 1);
  key[0] = INDEX_PREFIX;
  writeOrderedTime(key, 1, now);
  // Ids are ASCII, so 0xff sorts after every id written at exactly `now`.
  key[INDEX_HEADER_BYTES] = 0xff;
  return key;
}

export interface IndexEntry {
  expiresAt: number;
  id: string;
}

/** The entry a well-formed index key names, or `undefined` for bytes this store never writes. */
export function parseIndexKey(key: Uint8Array): IndexEntry | undefined {
  if (key.byteLength <= INDEX_HEADER_BYTES || key[0] !== INDEX_PREFIX) return undefined;
  const buffer = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  const expiresAt = readOrderedTime(buffer, 1);
  if (!Number.isFinite(expiresAt)) return undefined;
  return { expiresAt, id: buffer.toString('latin1', INDEX_HEADER_BYTES) };
}

/**
 * `'o' + owner's UTF-8 byte length (uint16) + owner + id`. The length goes first so that the
 * keys of one owner are never inside the range of another whose name starts the same way.
 */
export function ownerKey(owner: string, id: string): Buffer {
  const ownerBytes = Buffer.byteLength(owner, 'utf8');
  const key = Buffer.allocUnsafe(OWNER_KEY_HEADER_BYTES + ownerBytes + id.length);
  key[0] = OWNER_PREFIX;
  key.writeUInt16BE(ownerBytes, 1);
  key.write(owner, OWNER_KEY_HEADER_BYTES, 'utf8');
  key.write(id, OWNER_KEY_HEADER_BYTES + ownerBytes, 'latin1');
  return key;
}

/** The keys of every session of `owner`, and where its id starts in each key. */
export function ownerRange(owner: string): { gte: Buffer; lt: Buffer; idOffset: number } {
  const gte = ownerKey(owner, '');
  // Ids are ASCII, so 0xff sorts after every id.
  const lt = Buffer.concat([gte, Uint8Array.of(0xff)]);
  return { gte, lt, idOffset: gte.byteLength };
}

/** The owner and id an owner index key names, or `undefined` for bytes this store never writes. */
export function parseOwnerKey(key: Uint8Array): { owner: string; id: string } | undefined {
  if (key.byteLength <= OWNER_KEY_HEADER_BYTES || key[0] !== OWNER_PREFIX) return undefined;
  const buffer = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  const idOffset = OWNER_KEY_HEADER_BYTES + buffer.readUInt16BE(1);
  if (idOffset >= buffer.byteLength) return undefined;
  return {
    owner: buffer.toString('utf8', OWNER_KEY_HEADER_BYTES, idOffset),
    id: buffer.toString('latin1', idOffset),
  };
}

export function idOfOwnerKey(key: Uint8Array, idOffset: number): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1', idOffset);
}

/** A record's value: format 1 without an owner, so those bytes stay as small as before owners. */
export function encodeRecord(data: Uint8Array, expiresAt: number, owner?: string): Buffer {
  if (owner === undefined) {
    const value = Buffer.allocUnsafe(VALUE_HEADER_BYTES + data.byteLength);
    value[0] = PLAIN_FORMAT;
    value.writeDoubleBE(expiresAt, 1);
    value.set(data, VALUE_HEADER_BYTES);
    return value;
  }
  const ownerBytes = Buffer.byteLength(owner, 'utf8');
  const dataOffset = OWNED_HEADER_BYTES + ownerBytes;
  const value = Buffer.allocUnsafe(dataOffset + data.byteLength);
  value[0] = OWNED_FORMAT;
  value.writeDoubleBE(expiresAt, 1);
  value.writeUInt16BE(ownerBytes, VALUE_HEADER_BYTES);
  value.write(owner, OWNED_HEADER_BYTES, 'utf8');
  value.set(data, dataOffset);
  return value;
}

/** What a value's header says, once its bytes check out. */
export interface RecordHeader {
  expiresAt: number;
  owner: string | undefined;
  dataOffset: number;
}

/** The header of a record this store wrote, or `undefined` for any other bytes. */
export function readHeader(value: Uint8Array): RecordHeader | undefined {
  const dataOffset = dataOffsetOf(value);
  if (dataOffset < 0) return undefined;
  const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  const expiresAt = bytes.readDoubleBE(1);
  if (!Number.isFinite(expiresAt)) return undefined;
  if (dataOffset === VALUE_HEADER_BYTES) return { expiresAt, owner: undefined, dataOffset };
  const owner = decodeOwner(bytes.subarray(OWNED_HEADER_BYTES, dataOffset));
  return owner === undefined ? undefined : { expiresAt, owner, dataOffset };
}

// fatal: bytes that are not UTF-8 are damage, not an owner with U+FFFD in it. ignoreBOM: a
// leading U+FEFF is part of the owner, as it was when written.
const ownerDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The owner in `bytes`, or `undefined` when they hold no owner any write could have stored. */
function decodeOwner(bytes: Uint8Array): string | undefined {
  let owner: string;
  try {
    owner = ownerDecoder.decode(bytes);
  } catch {
    return undefined;
  }
  return isOwner(owner) ? owner : undefined;
}

/** Where a record's data starts, or -1 when the bytes are not a record this store wrote. */
function dataOffsetOf(value: Uint8Array): number {
  if (value.byteLength < VALUE_HEADER_BYTES) return -1;
  if (value[0] === PLAIN_FORMAT) return VALUE_HEADER_BYTES;
  if (value[0] !== OWNED_FORMAT || value.byteLength < OWNED_HEADER_BYTES) return -1;
  const ownerBytes = ((value[9] as number) << 8) | (value[10] as number);
  const dataOffset = OWNED_HEADER_BYTES + ownerBytes;
  return ownerBytes > 0 && dataOffset <= value.byteLength ? dataOffset : -1;
}

/** The same record with another `expiresAt`, without decoding the data. */
export function withExpiresAt(value: Uint8Array, expiresAt: number): Buffer {
  const copy = Buffer.allocUnsafe(value.byteLength);
  copy.set(value);
  copy.writeDoubleBE(expiresAt, 1);
  return copy;
}

/** The record's `expiresAt`, or `NaN` when the bytes are not a record this store wrote. */
export function expiresAtOf(value: Uint8Array): number {
  const dataOffset = dataOffsetOf(value);
  if (dataOffset < 0) return Number.NaN;
  // A record readHeader refuses is refused here too, so count and ids skip what get rejects.
  if (
    dataOffset > VALUE_HEADER_BYTES &&
    decodeOwner(value.subarray(OWNED_HEADER_BYTES, dataOffset)) === undefined
  ) {
    return Number.NaN;
  }
  const expiresAt = new DataView(value.buffer, value.byteOffset, VALUE_HEADER_BYTES).getFloat64(1);
  return Number.isFinite(expiresAt) ? expiresAt : Number.NaN;
}

export function corruptRecord(): SessionError {
  return new SessionError('ERR_CORRUPT_RECORD', 'The stored session record could not be decoded');
}

// IEEE 754 big-endian bits sort like the numbers once positive values get their sign bit set
// and negative values get every bit flipped.
function writeOrderedTime(target: Buffer, offset: number, ms: number): void {
  target.writeDoubleBE(ms === 0 ? 0 : ms, offset);
  if ((target[offset] as number) & 0x80) {
    for (let i = offset; i < offset + TIME_BYTES; i++) target[i] = ~(target[i] as number) & 0xff;
  } else {
    target[offset] = (target[offset] as number) | 0x80;
  }
}

function readOrderedTime(source: Buffer, offset: number): number {
  const bits = Buffer.from(source.subarray(offset, offset + TIME_BYTES));
  if ((bits[0] as number) & 0x80) {
    bits[0] = (bits[0] as number) & 0x7f;
  } else {
    for (let i = 0; i < TIME_BYTES; i++) bits[i] = ~(bits[i] as number) & 0xff;
  }
  return bits.readDoubleBE(0);
}
