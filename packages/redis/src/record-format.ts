import { constants } from 'node:buffer';
import { SessionError, type SessionRecord } from '@sessile/core';
import { LentText, RECORD_TEXT, TextRecord } from '@sessile/core/store';
import { lastPrinted } from './keys.js';

/**
 * The record format this version writes. Its header is ASCII: magic, the version as a hex
 * digit, expiresAt and indexedUntil as the 16 hex digits of their big-endian float64s, the
 * owner's UTF-8 length as 4 hex digits, then the owner's bytes and the data. A text header lets
 * a record whose data is text go to Redis as one string: node-redis writes a Buffer argument to
 * the socket as a chunk of its own.
 */
export const RECORD_FORMAT = 3;
/** Starts a sessile record of any version: later versions keep it and change the digit after it. */
export const MAGIC = '~s';
/** Where `expiresAt` starts; `touch` overwrites these 16 hex digits in place. */
export const EXPIRES_AT_OFFSET = 3;
/**
 * Where `indexedUntil` starts: the score of this record's entry in its owner's index, which
 * `touch` must raise before it moves `expiresAt` past it (0 without an owner).
 */
export const INDEXED_UNTIL_OFFSET = 19;
export const OWNER_LENGTH_OFFSET = 35;
/** The header `touch` reads: everything before the owner's bytes. */
export const HEADER_BYTES = 39;
/** The most UTF-8 bytes an owner takes: 256 UTF-16 units (core's MAX_OWNER_LENGTH), 3 bytes each at most. */
const MAX_OWNER_UTF8_BYTES = 768;
/**
 * The largest `data` a record may hold, so that its value (header, owner, data) fits where it
 * goes: Redis refuses an argument over 512 MiB by closing the connection, failing every command
 * on it, and node-redis reads a value as text (core's adapters' reads) only up to V8's longest
 * string, which is shorter (536,870,888 characters on 64-bit).
 */
export const MAX_DATA_BYTES =
  Math.min(512 * 1024 * 1024, constants.MAX_STRING_LENGTH) - HEADER_BYTES - MAX_OWNER_UTF8_BYTES;
/** The version digit of the format this version writes, as the header holds it. */
export const FORMAT_DIGIT = RECORD_FORMAT.toString(16);
/** A float64's hex digits; an owner length's. */
const DOUBLE_DIGITS = 16;
const OWNER_LENGTH_DIGITS = 4;
const MAX_OWNER_BYTES = 16 ** OWNER_LENGTH_DIGITS - 1;

/**
 * The record's value; `indexedUntil` is its entry's score in the owner's index (0 without an
 * owner). A `TextRecord` (a library session's JSON, from core's adapters) becomes one string,
 * which costs node-redis no chunk of its own; other records become bytes.
 */
export function encodeRecord(record: SessionRecord, indexedUntil = 0): string | Buffer {
  const owner = record.owner;
  const ownerBytes = owner === undefined ? 0 : Buffer.byteLength(owner, 'utf8');
  if (ownerBytes > MAX_OWNER_BYTES) {
    throw new TypeError(
      `record.owner takes ${ownerBytes} bytes; a Redis record holds at most ${MAX_OWNER_BYTES}`,
    );
  }
  if (record instanceof TextRecord) {
    return (
      headerText(record.expiresAt, indexedUntil, ownerBytes) + (owner ?? '') + record[RECORD_TEXT]
    );
  }
  const dataStart = HEADER_BYTES + ownerBytes;
  const value = Buffer.allocUnsafe(dataStart + record.data.byteLength);
  writeHeader(value, record.expiresAt, indexedUntil, ownerBytes);
  if (owner !== undefined) value.write(owner, HEADER_BYTES, 'utf8');
  value.set(record.data, dataStart);
  return value;
}

/** Where headers and digits are put together before they become a string. */
const scratch = Buffer.alloc(HEADER_BYTES);
const float = new DataView(new ArrayBuffer(8));
const floatBytes = new Uint8Array(float.buffer);
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
const HEADER_START = Buffer.from(MAGIC + FORMAT_DIGIT, 'latin1');
const MAGIC_CODES = [MAGIC.charCodeAt(0), MAGIC.charCodeAt(1)];

let lastHeader = { expiresAt: Number.NaN, indexedUntil: Number.NaN, ownerBytes: -1, text: '' };

/**
 * A header as text. The last one is kept: the creates of a burst share their expiry, and
 * writing a header cost a create through a library adapter more than anything else the store
 * does to it. `Object.is`, because 0 and -0 are different digits.
 */
function headerText(expiresAt: number, indexedUntil: number, ownerBytes: number): string {
  const last = lastHeader;
  if (
    Object.is(last.expiresAt, expiresAt) &&
    Object.is(last.indexedUntil, indexedUntil) &&
    last.ownerBytes === ownerBytes
  ) {
    return last.text;
  }
  writeHeader(scratch, expiresAt, indexedUntil, ownerBytes);
  lastHeader = {
    expiresAt,
    indexedUntil,
    ownerBytes,
    text: scratch.toString('latin1', 0, HEADER_BYTES),
  };
  return lastHeader.text;
}

function writeHeader(
  target: Uint8Array,
  expiresAt: number,
  indexedUntil: number,
  ownerBytes: number,
): void {
  target.set(HEADER_START, 0);
  writeHexDouble(target, EXPIRES_AT_OFFSET, expiresAt);
  writeHexDouble(target, INDEXED_UNTIL_OFFSET, indexedUntil);
  for (let i = 0; i < OWNER_LENGTH_DIGITS; i++) {
    const shift = 4 * (OWNER_LENGTH_DIGITS - 1 - i);
    target[OWNER_LENGTH_OFFSET + i] = HEX_DIGITS[(ownerBytes >> shift) & 15] as number;
  }
}

/** Writes the 16 hex digits of `value`'s big-endian float64 at `offset` of `target`. */
function writeHexDouble(target: Uint8Array, offset: number, value: number): void {
  float.setFloat64(0, value);
  for (let i = 0; i < 8; i++) {
    const byte = floatBytes[i] as number;
    target[offset + 2 * i] = HEX_DIGITS[byte >> 4] as number;
    target[offset + 2 * i + 1] = HEX_DIGITS[byte & 15] as number;
  }
}

/** The 16 hex digits of `value`'s big-endian float64, as a record keeps it and `touch` writes it in place. */
export const hexDouble = lastPrinted((value) => {
  writeHexDouble(scratch, 0, value);
  return scratch.toString('latin1', 0, DOUBLE_DIGITS);
});

/** A reply's bulk string: bytes, or text that node-redis decoded from UTF-8. */
type Reply = Buffer | string;

/** The byte (or, in text, the character code) at `index` of `value`; NaN past its end. */
function codeAt(value: Reply, index: number): number {
  return typeof value === 'string' ? value.charCodeAt(index) : (value[index] ?? Number.NaN);
}

/** Each lowercase hex digit's value, by character code; -1 for every other code below 128. */
const HEX_VALUES = new Int8Array(128).fill(-1);
for (let digit = 0; digit < 16; digit++) HEX_VALUES[HEX_DIGITS[digit] as number] = digit;

/**
 * The value of `count` hex digits at `offset` of `value`, or -1 where one is not a lowercase hex
 * digit. Text and bytes each have their own loop: every read parses 37 digits, and one loop
 * asking per character which kind it reads took twice as long.
 */
function readHex(value: Reply, offset: number, count: number): number {
  return typeof value === 'string'
    ? hexOfText(value, offset, offset + count)
    : hexOfBytes(value, offset, offset + count);
}

function hexOfText(text: string, start: number, end: number): number {
  let number = 0;
  for (let i = start; i < end; i++) {
    const code = text.charCodeAt(i);
    // NaN past the end compares false, so it reads as no digit.
    const digit = code < 128 ? (HEX_VALUES[code] as number) : -1;
    if (digit < 0) return -1;
    number = number * 16 + digit;
  }
  return number;
}

function hexOfBytes(bytes: Uint8Array, start: number, end: number): number {
  let number = 0;
  for (let i = start; i < end; i++) {
    const byte = bytes[i] ?? 0xff;
    const digit = byte < 128 ? (HEX_VALUES[byte] as number) : -1;
    if (digit < 0) return -1;
    number = number * 16 + digit;
  }
  return number;
}

/** The float64 whose 16 hex digits are at `offset` of `value`, or NaN where they are not hex digits. */
function readDouble(value: Reply, offset: number): number {
  const high = readHex(value, offset, 8);
  const low = readHex(value, offset + 8, 8);
  if (high < 0 || low < 0) return Number.NaN;
  float.setUint32(0, high);
  float.setUint32(4, low);
  return float.getFloat64(0);
}

/**
 * The record in a reply that node-redis decoded as text, or undefined where the text may not
 * be the bytes' own: bytes that are not UTF-8 read as U+FFFD, so a value holding it, and one
 * that `headerFault` refuses or whose owner ends within a character, is read again as bytes,
 * where `decodeRecord` answers exactly. Text that holds no U+FFFD encodes back to the bytes it
 * came from.
 */
export function decodeText(value: string): SessionRecord | undefined {
  const expiresAt = headerExpiry(value);
  if (Number.isNaN(expiresAt) || value.includes('\uFFFD')) return undefined;
  const ownerBytes = readHex(value, OWNER_LENGTH_OFFSET, OWNER_LENGTH_DIGITS);
  const ownerChars = charsOfUtf8(value, HEADER_BYTES, ownerBytes);
  if (ownerChars < 0) return undefined;
  const dataStart = HEADER_BYTES + ownerChars;
  const owner = ownerChars === 0 ? undefined : value.slice(HEADER_BYTES, dataStart);
  return new LentText(value.slice(dataStart), expiresAt, owner);
}

/** How many characters from `start` of `text` take `bytes` bytes in UTF-8, or -1 if none do. */
function charsOfUtf8(text: string, start: number, bytes: number): number {
  let index = start;
  let taken = 0;
  while (taken < bytes && index < text.length) {
    const code = text.charCodeAt(index);
    if (code < 0x80) taken += 1;
    else if (code < 0x800) taken += 2;
    else if (code >= 0xd800 && code <= 0xdbff) {
      taken += 4;
      index++;
    } else taken += 3;
    index++;
  }
  return taken === bytes ? index - start : -1;
}

const ownerDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * The record in a reply's `value`. Its data is a copy, unless `lent`: then a view into the
 * reply, for a reader that decodes it at once (`lend`).
 */
export function decodeRecord(value: Buffer, lent = false): SessionRecord {
  const expiresAt = headerExpiry(value);
  if (Number.isNaN(expiresAt)) throw headerFault(value);
  const dataStart = HEADER_BYTES + readHex(value, OWNER_LENGTH_OFFSET, OWNER_LENGTH_DIGITS);
  if (dataStart > value.byteLength) throw cutShortInOwner();
  let data: Buffer;
  if (lent) {
    data = value.subarray(dataStart);
  } else {
    // A copy, because the reply is a view into the socket's read chunk, which a kept record
    // would keep alive whole; a small one comes from Node's buffer pool, not a new ArrayBuffer.
    data = Buffer.allocUnsafe(value.byteLength - dataStart);
    value.copy(data, 0, dataStart);
  }
  if (dataStart === HEADER_BYTES) return { data, expiresAt };
  return { data, expiresAt, owner: decodeOwner(value.subarray(HEADER_BYTES, dataStart)) };
}

/** An owner as a record or `touch`'s script holds it: its UTF-8 bytes, which must be whole. */
export function decodeOwner(bytes: Uint8Array): string {
  try {
    return ownerDecoder.decode(bytes);
  } catch (error) {
    throw new SessionError(
      'ERR_CORRUPT_RECORD',
      'The Redis record has an owner that is not UTF-8',
      {
        cause: error,
      },
    );
  }
}

/** What reading a record whose owner length runs past its end rejects with. */
export function cutShortInOwner(): SessionError {
  return new SessionError('ERR_CORRUPT_RECORD', 'The Redis record is cut short in its owner');
}

/**
 * Why `value` does not start a record this version reads (`ERR_UNSUPPORTED` for a newer format,
 * else `ERR_CORRUPT_RECORD`), or undefined when its header is whole with a finite `expiresAt`
 * and `indexedUntil`. `get` checks a whole value this way, and `touch` the header its script
 * found and left alone.
 */
export function headerFault(value: Reply): SessionError | undefined {
  if (!Number.isNaN(headerExpiry(value))) return undefined;
  if (
    value.length < 3 ||
    codeAt(value, 0) !== MAGIC_CODES[0] ||
    codeAt(value, 1) !== MAGIC_CODES[1]
  ) {
    return new SessionError('ERR_CORRUPT_RECORD', 'The Redis record is not a sessile record');
  }
  const format = readHex(value, MAGIC.length, 1);
  if (format > RECORD_FORMAT) {
    return new SessionError(
      'ERR_UNSUPPORTED',
      `The Redis record has format ${format}; this version reads format ${RECORD_FORMAT}`,
    );
  }
  if (format === RECORD_FORMAT && value.length >= HEADER_BYTES && isWhole(value)) {
    return new SessionError('ERR_CORRUPT_RECORD', 'The Redis record has no valid expiry');
  }
  return new SessionError('ERR_CORRUPT_RECORD', 'The Redis record has no known format');
}

/**
 * The `expiresAt` of a whole header of this format with both float64s finite, read once for
 * every read; NaN for any other value, which `headerFault` then tells apart.
 */
function headerExpiry(value: Reply): number {
  if (
    value.length < HEADER_BYTES ||
    codeAt(value, 0) !== MAGIC_CODES[0] ||
    codeAt(value, 1) !== MAGIC_CODES[1] ||
    readHex(value, MAGIC.length, 1) !== RECORD_FORMAT ||
    !isWhole(value)
  ) {
    return Number.NaN;
  }
  const expiresAt = readDouble(value, EXPIRES_AT_OFFSET);
  return Number.isFinite(expiresAt) ? expiresAt : Number.NaN;
}

/** True when the header's `indexedUntil` is finite and its owner length is hex. */
function isWhole(value: Reply): boolean {
  return (
    Number.isFinite(readDouble(value, INDEXED_UNTIL_OFFSET)) &&
    readHex(value, OWNER_LENGTH_OFFSET, OWNER_LENGTH_DIGITS) >= 0
  );
}
