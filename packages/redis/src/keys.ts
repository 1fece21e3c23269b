import { SessionError, type SessionRecord } from '@sessile/core';

/** The record format this version writes: magic, a version byte, expiresAt as a float64, the data. */
export const RECORD_FORMAT = 1;
/** Tells a sessile record (of any version) from other bytes under the same key. */
const MAGIC = [0xf5, 0x5e] as const;
/** Where `expiresAt` starts; `touch` overwrites these 8 bytes in place. */
export const EXPIRES_AT_OFFSET = 3;
const HEADER_BYTES = EXPIRES_AT_OFFSET + 8;

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
  readonly #recordStart: string;

  constructor(prefix: string) {
    this.prefix = prefix;
    this.releaseChannel = `${prefix}released`;
    this.#recordStart = `${prefix}s:{`;
    this.recordPattern = `${escapeGlob(this.#recordStart)}*}`;
  }

  record(id: string): string {
    return `${this.#recordStart}${id}}`;
  }

  lock(key: string): string {
    return `${this.prefix}l:{${key}}`;
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
 * The PXAT that makes Redis drop the key at `expiresAt` exactly: Redis keeps a key while
 * `now <= PXAT`, and a record is expired once `now >= expiresAt`. Undefined when already expired.
 */
export function expireAtMs(expiresAt: number, now: number): number | undefined {
  if (expiresAt <= now) return undefined;
  return Math.max(Math.ceil(expiresAt) - 1, 1);
}

export function encodeRecord(record: SessionRecord): Buffer {
  const value = Buffer.allocUnsafe(HEADER_BYTES + record.data.byteLength);
  value[0] = MAGIC[0];
  value[1] = MAGIC[1];
  value[2] = RECORD_FORMAT;
  value.writeDoubleBE(record.expiresAt, EXPIRES_AT_OFFSET);
  value.set(record.data, HEADER_BYTES);
  return value;
}

/** The bytes `touch` writes at `EXPIRES_AT_OFFSET`. */
export function encodeExpiresAt(expiresAt: number): Buffer {
  const bytes = Buffer.allocUnsafe(8);
  bytes.writeDoubleBE(expiresAt, 0);
  return bytes;
}

export function decodeRecord(value: Buffer): SessionRecord {
  const format = value[2] ?? 0;
  if (value.byteLength < HEADER_BYTES || value[0] !== MAGIC[0] || value[1] !== MAGIC[1]) {
    throw new SessionError('ERR_CORRUPT_RECORD', 'The Redis record is not a sessile record');
  }
  if (format > RECORD_FORMAT) {
    throw new SessionError(
      'ERR_UNSUPPORTED',
      `The Redis record has format ${format}; this version reads format ${RECORD_FORMAT}`,
    );
  }
  if (format !== RECORD_FORMAT) {
    throw new SessionError('ERR_CORRUPT_RECORD', 'The Redis record has no known format');
  }
  const expiresAt = value.readDoubleBE(EXPIRES_AT_OFFSET);
  if (!Number.isFinite(expiresAt)) {
    throw new SessionError('ERR_CORRUPT_RECORD', 'The Redis record has no valid expiry');
  }
  // A copy by memcpy: the reply may be a view into the socket's read buffer.
  const data = new Uint8Array(value.byteLength - HEADER_BYTES);
  data.set(value.subarray(HEADER_BYTES));
  return { data, expiresAt };
}
