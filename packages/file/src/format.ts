import { crc32 } from 'node:zlib';

/** "SESF": the first four bytes of every record file. */
const MAGIC = 0x46534553;
export const FORMAT_VERSION = 2;
/** Format 1 had no owner: its bytes 6..8 were always zero, so it reads as format 2 without one. */
const OWNERLESS_VERSION = 1;
/** Fixed part of the header; the id follows it, then the payload. */
export const HEADER_BYTES = 24;
/** Byte offset of `expiresAt` (float64, little-endian), rewritten in place by a shortening touch. */
export const EXPIRES_AT_OFFSET = 8;
/** The longest id core accepts, so a header read of this many bytes always covers the id. */
export const MAX_HEADER_BYTES = HEADER_BYTES + 128;
/** 256 UTF-16 units of well-formed Unicode take at most 3 bytes each in UTF-8. */
export const MAX_OWNER_BYTES = 768;
/** A read of this many bytes covers the header, the id and the owner. */
export const MAX_FRAME_BYTES = MAX_HEADER_BYTES + MAX_OWNER_BYTES;

export interface RecordHeader {
  id: string;
  expiresAt: number;
  /** Length of the owner (UTF-8) between the id and the payload; 0 for none. */
  ownerBytes: number;
  payloadBytes: number;
  crc: number;
}

/** The size of the whole file that holds the record `header` describes. */
export function recordFileBytes(header: RecordHeader): number {
  return HEADER_BYTES + header.id.length + header.ownerBytes + header.payloadBytes;
}

/** What a record file says about one id, without judging its expiry. */
export type HeaderResult =
  | { kind: 'ok'; header: RecordHeader }
  | { kind: 'corrupt'; reason: string }
  /** A valid record of a different id: a case-insensitive filesystem folded two ids together. */
  | { kind: 'other-id' };

/**
 * Serializes a record: header (magic, version, id length, owner length, expiresAt, payload
 * length, crc32) + id + owner + payload.
 */
export function encodeRecord(
  id: string,
  data: Uint8Array,
  expiresAt: number,
  owner: string | undefined,
): Buffer {
  const ownerBytes = owner === undefined ? 0 : Buffer.byteLength(owner, 'utf8');
  const payloadStart = HEADER_BYTES + id.length + ownerBytes;
  const buffer = Buffer.allocUnsafe(payloadStart + data.byteLength);
  buffer.writeUInt32LE(MAGIC, 0);
  buffer.writeUInt8(FORMAT_VERSION, 4);
  buffer.writeUInt8(id.length, 5);
  buffer.writeUInt16LE(ownerBytes, 6);
  buffer.writeDoubleLE(expiresAt, EXPIRES_AT_OFFSET);
  buffer.writeUInt32LE(data.byteLength, 16);
  buffer.write(id, HEADER_BYTES, 'latin1');
  if (owner !== undefined) buffer.write(owner, HEADER_BYTES + id.length, 'utf8');
  buffer.set(data, payloadStart);
  buffer.writeUInt32LE(crc32(buffer.subarray(HEADER_BYTES)), 20);
  return buffer;
}

/**
 * Parses the header at the start of `bytes` (at least the header and the id must be present).
 * A header naming the id with other letter case is another id's record only where the
 * filesystem folds case (`caseSensitive` false); elsewhere no other id's record can have that
 * name, so it is damage (a flipped 0x20 bit turns `v` into `V`).
 */
export function decodeHeader(
  expectedId: string,
  bytes: Uint8Array,
  caseSensitive: boolean,
): HeaderResult {
  if (bytes.byteLength < HEADER_BYTES)
    return { kind: 'corrupt', reason: 'shorter than its header' };
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.readUInt32LE(0) !== MAGIC) return { kind: 'corrupt', reason: 'bad magic bytes' };
  const version = view.readUInt8(4);
  if (version !== FORMAT_VERSION && version !== OWNERLESS_VERSION) {
    return { kind: 'corrupt', reason: `unknown format version ${version}` };
  }
  const ownerBytes = version === OWNERLESS_VERSION ? 0 : view.readUInt16LE(6);
  if (ownerBytes > MAX_OWNER_BYTES) return { kind: 'corrupt', reason: 'owner too long' };
  const idLength = view.readUInt8(5);
  if (view.byteLength < HEADER_BYTES + idLength) return { kind: 'corrupt', reason: 'truncated id' };
  const id = view.toString('latin1', HEADER_BYTES, HEADER_BYTES + idLength);
  const expiresAt = view.readDoubleLE(EXPIRES_AT_OFFSET);
  if (!Number.isFinite(expiresAt)) return { kind: 'corrupt', reason: 'expiresAt is not finite' };
  if (id !== expectedId) {
    return !caseSensitive && id.toLowerCase() === expectedId.toLowerCase()
      ? { kind: 'other-id' }
      : { kind: 'corrupt', reason: 'the header names another id' };
  }
  return {
    kind: 'ok',
    header: {
      id,
      expiresAt,
      ownerBytes,
      payloadBytes: view.readUInt32LE(16),
      crc: view.readUInt32LE(20),
    },
  };
}

/** Checks a whole file's bytes and returns its owner and payload, or the reason it is damaged. */
export function decodePayload(
  header: RecordHeader,
  bytes: Uint8Array,
):
  | { kind: 'ok'; owner: string | undefined; data: Uint8Array }
  | { kind: 'corrupt'; reason: string } {
  if (bytes.byteLength !== recordFileBytes(header)) {
    return { kind: 'corrupt', reason: 'length does not match the header (torn or truncated)' };
  }
  if (crc32(bytes.subarray(HEADER_BYTES)) !== header.crc) {
    return { kind: 'corrupt', reason: 'checksum mismatch' };
  }
  const payloadStart = HEADER_BYTES + header.id.length + header.ownerBytes;
  return { kind: 'ok', owner: ownerOfFrame(header, bytes), data: bytes.slice(payloadStart) };
}

/**
 * The owner from a record's first bytes (at least the header, id and owner). Alone it is not
 * checked by the crc, which covers the whole file; index upkeep reads it so, since a damaged
 * record can at worst leave an entry that `ownedBy` drops.
 */
export function ownerOfFrame(header: RecordHeader, bytes: Uint8Array): string | undefined {
  if (header.ownerBytes === 0) return undefined;
  const start = HEADER_BYTES + header.id.length;
  const end = start + header.ownerBytes;
  if (bytes.byteLength < end) return undefined;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8', start, end);
}
