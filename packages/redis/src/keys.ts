import { SessionError, type SessionRecord } from '@sessile/core';
import { RECORD_TEXT, TextRecord } from '@sessile/core/store';

/**
 * The record format this version writes. Its header is ASCII: magic, the version digit,
 * expiresAt and indexedUntil as the 16 hex digits of their big-endian float64s, the owner's
 * UTF-8 length as 4 hex digits, then the owner's bytes and the data. A text header lets a
 * record whose data is text go to Redis as one string: node-redis writes a Buffer argument to
 * the socket as a chunk of its own.
 */
export const RECORD_FORMAT = 3;
/** Tells a sessile record (of any version) from other bytes under the same key. */
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
/** A float64's hex digits; an owner length's. */
const DOUBLE_DIGITS = 16;
const OWNER_LENGTH_DIGITS = 4;

/**
 * Where one store keeps its keys. Every key of a session carries the id as a hash tag, so the
 * record, its lock and every script on them land in one slot of a Redis Cluster.
 */
export class KeyLayout {
  readonly prefix: string;
  /** Where lock releases are announced, so waiters on other hosts try at once. */
  readonly releaseChannel: string;
  /** SCAN's MATCH for every record key of this store and no other key. */
  readonly recordPattern: string;
  /** SCAN's MATCH for every owner index of this store. */
  readonly ownerIndexPattern: string;
  readonly #recordStart: string;
  readonly #ownerStart: string;

  constructor(prefix: string) {
    this.prefix = prefix;
    this.releaseChannel = `${prefix}released`;
    this.#recordStart = `${prefix}s:{`;
    this.recordPattern = `${escapeGlob(this.#recordStart)}*}`;
    this.#ownerStart = `${prefix}o:{`;
    this.ownerIndexPattern = `${escapeGlob(this.#ownerStart)}*}`;
  }

  record(id: string): string {
    return `${this.#recordStart}${id}}`;
  }

  lock(key: string): string {
    return `${this.prefix}l:{${key}}`;
  }

  /**
   * The sorted set of `owner`'s session ids. base64url keeps owners apart byte for byte and
   * holds no `{` or `}`, so the owner is the key's own hash tag.
   */
  ownerIndex(owner: string): string {
    return `${this.#ownerStart}${Buffer.from(owner, 'utf8').toString('base64url')}}`;
  }

  /** The session id of a record key SCAN returned, or undefined for a key that is not one. */
  idOf(key: string): string | undefined {
    if (!key.startsWith(this.#recordStart) || !key.endsWith('}')) return undefined;
    return key.slice(this.#recordStart.length, -1);
  }
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (char) => `\\${char}`);
}

/**
 * The latest time the store asks Redis to keep a key until: JavaScript's last `Date` (year
 * 275760), later than any real session and far below where Redis refuses a PXAT, a PEXPIREAT or
 * an owner index's expiry (twice a score). A record keeps its exact `expiresAt` in its value.
 */
export const LATEST_REDIS_TIME_MS = 8.64e15;

/** `ms` as Redis may be given it: a far-future time becomes `LATEST_REDIS_TIME_MS`. */
export function redisTimeMs(ms: number): number {
  return Math.min(ms, LATEST_REDIS_TIME_MS);
}

/**
 * The PXAT that makes Redis drop the key at `expiresAt` exactly: Redis keeps a key while
 * `now <= PXAT`, and a record is expired once `now >= expiresAt`. Undefined when already expired.
 */
export function expireAtMs(expiresAt: number, now: number): number | undefined {
  if (expiresAt <= now) return undefined;
  return redisTimeMs(Math.max(Math.ceil(expiresAt) - 1, 1));
}

/**
 * The score of a record's entry in its owner's index: past `expiresAt` by as long again as the
 * record has to live, so the usual `touch`, which extends a session by less than its lifetime,
 * finds its entry already covering the new expiry and needs no second write.
 */
export function indexedUntilFor(expiresAt: number, now: number): number {
  return redisTimeMs(Math.ceil(expiresAt + Math.max(expiresAt - now, 0)));
}

/**
 * The record's value; `indexedUntil` is its entry's score in the owner's index (0 without an
 * owner). A `TextRecord` (a library session's JSON, from core's adapters) becomes one string,
 * which costs node-redis no chunk of its own; other records become bytes.
 */
export function encodeRecord(record: SessionRecord, indexedUntil = 0): string | Buffer {
  const owner = record.owner;
  const ownerBytes = owner === undefined ? 0 : Buffer.byteLength(owner, 'utf8');
  if (record instanceof TextRecord) {
    writeHeader(scratch, record.expiresAt, indexedUntil, ownerBytes);
    return scratch.toString('latin1', 0, HEADER_BYTES) + (owner ?? '') + record.text;
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
const MAGIC_BYTES = Buffer.from(MAGIC, 'latin1');
const MAGIC_CODES = [MAGIC.charCodeAt(0), MAGIC.charCodeAt(1)];

function writeHeader(
  target: Uint8Array,
  expiresAt: number,
  indexedUntil: number,
  ownerBytes: number,
): void {
  target.set(MAGIC_BYTES, 0);
  target[MAGIC.length] = HEX_DIGITS[RECORD_FORMAT] as number;
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
export function hexDouble(value: number): string {
  writeHexDouble(scratch, 0, value);
  return scratch.toString('latin1', 0, DOUBLE_DIGITS);
}

/** A reply's bulk string: bytes, or text that node-redis decoded from UTF-8. */
type Reply = Buffer | string;

/** The byte (or, in text, the character code) at `index` of `value`; NaN past its end. */
function codeAt(value: Reply, index: number): number {
  return typeof value === 'string' ? value.charCodeAt(index) : (value[index] ?? Number.NaN);
}

/** The value of `count` hex digits at `offset` of `value`, or -1 where one is not a lowercase hex digit. */
function readHex(value: Reply, offset: number, count: number): number {
  let number = 0;
  for (let i = offset; i < offset + count; i++) {
    const char = codeAt(value, i);
    const digit =
      char >= 0x30 && char <= 0x39 ? char - 0x30 : char >= 0x61 && char <= 0x66 ? char - 0x57 : -1;
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
 * A record read as text: the bytes of its data are made only if a reader asks for them, and a
 * reader that wants the text (core's library adapters) takes it as it is.
 */
class TextReply implements SessionRecord {
  readonly expiresAt: number;
  declare readonly owner?: string;
  readonly #text: string;
  #data: Uint8Array | undefined;

  constructor(value: string, dataStart: number, expiresAt: number) {
    this.expiresAt = expiresAt;
    if (dataStart > HEADER_BYTES) this.owner = value.slice(HEADER_BYTES, dataStart);
    this.#text = value.slice(dataStart);
  }

  get data(): Uint8Array {
    this.#data ??= Buffer.from(this.#text, 'utf8');
    return this.#data;
  }

  get [RECORD_TEXT](): string {
    return this.#text;
  }
}

/**
 * The record in a reply that node-redis decoded as text, or undefined where the text may not
 * be the bytes' own: bytes that are not UTF-8 read as U+FFFD, so a value holding it, and one
 * that `headerFault` refuses or whose owner ends within a character, is read again as bytes,
 * where `decodeRecord` answers exactly. Text that holds no U+FFFD encodes back to the bytes it
 * came from.
 */
export function decodeText(value: string): SessionRecord | undefined {
  if (headerFault(value) !== undefined || value.includes('\uFFFD')) return undefined;
  const ownerBytes = readHex(value, OWNER_LENGTH_OFFSET, OWNER_LENGTH_DIGITS);
  const dataStart = HEADER_BYTES + charsOfUtf8(value, HEADER_BYTES, ownerBytes);
  if (dataStart < HEADER_BYTES) return undefined;
  return new TextReply(value, dataStart, readDouble(value, EXPIRES_AT_OFFSET));
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

/**
 * The record in a reply's `value`. Its data is a copy, unless `lent`: then a view into the
 * reply, for a reader that decodes it at once (`lend`).
 */
export function decodeRecord(value: Buffer, lent = false): SessionRecord {
  const fault = headerFault(value);
  if (fault !== undefined) throw fault;
  const expiresAt = readDouble(value, EXPIRES_AT_OFFSET);
  const dataStart = HEADER_BYTES + readHex(value, OWNER_LENGTH_OFFSET, OWNER_LENGTH_DIGITS);
  if (dataStart > value.byteLength) {
    throw cutShortInOwner();
  }
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
  return { data, expiresAt, owner: value.toString('utf8', HEADER_BYTES, dataStart) };
}

/** What reading a record whose owner length runs past its end rejects with. */
export function cutShortInOwner(): SessionError {
  return new SessionError('ERR_CORRUPT_RECORD', 'The Redis record is cut short in its owner');
}

/**
 * Why `value` does not start a record this version reads (`ERR_UNSUPPORTED` for a newer format,
 * else `ERR_CORRUPT_RECORD`), or undefined when its header is whole with a finite `expiresAt`.
 * `get` checks a whole value this way, and `touch` the header its script found and left alone.
 */
export function headerFault(value: Reply): SessionError | undefined {
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
  if (
    format !== RECORD_FORMAT ||
    value.length < HEADER_BYTES ||
    readHex(value, INDEXED_UNTIL_OFFSET, DOUBLE_DIGITS) < 0 ||
    readHex(value, OWNER_LENGTH_OFFSET, OWNER_LENGTH_DIGITS) < 0
  ) {
    return new SessionError('ERR_CORRUPT_RECORD', 'The Redis record has no known format');
  }
  if (!Number.isFinite(readDouble(value, EXPIRES_AT_OFFSET))) {
    return new SessionError('ERR_CORRUPT_RECORD', 'The Redis record has no valid expiry');
  }
  return undefined;
}
