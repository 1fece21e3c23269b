import { SessionError, type SessionRecord } from '@sessile/core';

/**
 * The record format this version writes: magic, a version byte, expiresAt and indexedUntil as
 * float64s, the owner's UTF-8 length (uint16) and bytes, then the data.
 */
export const RECORD_FORMAT = 2;
/** Tells a sessile record (of any version) from other bytes under the same key. */
const MAGIC = [0xf5, 0x5e] as const;
/** Where `expiresAt` starts; `touch` overwrites these 8 bytes in place. */
export const EXPIRES_AT_OFFSET = 3;
/**
 * Where `indexedUntil` starts: the score of this record's entry in its owner's index, which
 * `touch` must raise before it moves `expiresAt` past it (0 without an owner).
 */
export const INDEXED_UNTIL_OFFSET = 11;
const OWNER_LENGTH_OFFSET = 19;
/** The header `touch` reads: everything before the owner's bytes. */
export const HEADER_BYTES = 21;

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

/** The record's bytes; `indexedUntil` is its entry's score in the owner's index (0 without an owner). */
export function encodeRecord(record: SessionRecord, indexedUntil = 0): Buffer {
  const owner = record.owner;
  const ownerBytes = owner === undefined ? 0 : Buffer.byteLength(owner, 'utf8');
  const dataStart = HEADER_BYTES + ownerBytes;
  const value = Buffer.allocUnsafe(dataStart + record.data.byteLength);
  value[0] = MAGIC[0];
  value[1] = MAGIC[1];
  value[2] = RECORD_FORMAT;
  value.writeDoubleBE(record.expiresAt, EXPIRES_AT_OFFSET);
  value.writeDoubleBE(indexedUntil, INDEXED_UNTIL_OFFSET);
  value.writeUInt16BE(ownerBytes, OWNER_LENGTH_OFFSET);
  if (owner !== undefined) value.write(owner, HEADER_BYTES, 'utf8');
  value.set(record.data, dataStart);
  return value;
}

/** The 8 bytes of a float64 as a record stores it, for `touch` to write in place. */
export function encodeDouble(value: number): Buffer {
  const bytes = Buffer.allocUnsafe(8);
  bytes.writeDoubleBE(value, 0);
  return bytes;
}

/**
 * The record in a reply's `value`. Its data is a copy, unless `lent`: then a view into the
 * reply, for a reader that decodes it at once (`lend`).
 */
export function decodeRecord(value: Buffer, lent = false): SessionRecord {
  const fault = headerFault(value);
  if (fault !== undefined) throw fault;
  const expiresAt = value.readDoubleBE(EXPIRES_AT_OFFSET);
  const dataStart = HEADER_BYTES + value.readUInt16BE(OWNER_LENGTH_OFFSET);
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
export function headerFault(value: Buffer): SessionError | undefined {
  const format = value[2] ?? 0;
  if (value.byteLength < 3 || value[0] !== MAGIC[0] || value[1] !== MAGIC[1]) {
    return new SessionError('ERR_CORRUPT_RECORD', 'The Redis record is not a sessile record');
  }
  if (format > RECORD_FORMAT) {
    return new SessionError(
      'ERR_UNSUPPORTED',
      `The Redis record has format ${format}; this version reads format ${RECORD_FORMAT}`,
    );
  }
  if (format !== RECORD_FORMAT || value.byteLength < HEADER_BYTES) {
    return new SessionError('ERR_CORRUPT_RECORD', 'The Redis record has no known format');
  }
  if (!Number.isFinite(value.readDoubleBE(EXPIRES_AT_OFFSET))) {
    return new SessionError('ERR_CORRUPT_RECORD', 'The Redis record has no valid expiry');
  }
  return undefined;
}
