import { crc32 } from 'node:zlib';

/** "SESF": the first four bytes of every record file. */
const MAGIC = 0x46534553;
export const FORMAT_VERSION = 1;
/** Fixed part of the header; the id follows it, then the payload. */
export const HEADER_BYTES = 24;
/** Byte offset of `expiresAt` (float64, little-endian), rewritten in place by a shortening touch. */
export const EXPIRES_AT_OFFSET = 8;
/** The longest id core accepts, so a header read of this many bytes always covers the id. */
export const MAX_HEADER_BYTES = HEADER_BYTES + 128;

export interface RecordHeader {
  id: string;
  expiresAt: number;
  payloadBytes: number;
  crc: number;
}

/** What a record file says about one id, without judging its expiry. */
export type HeaderResult =
  | { kind: 'ok'; header: RecordHeader }
  | { kind: 'corrupt'; reason: string }
  /** A valid record of a different id: a case-insensitive filesystem folded two ids together. */
  | { kind: 'other-id' };

/** Serializes a record: header (magic, version, id length, expiresAt, payload length, crc32) + id + payload. */
export function encodeRecord(id: string, data: Uint8Array, expiresAt: number): Buffer {
  const idBytes = Buffer.from(id, 'latin1');
  const buffer = Buffer.allocUnsafe(HEADER_BYTES + idBytes.length + data.byteLength);
  buffer.writeUInt32LE(MAGIC, 0);
  buffer.writeUInt8(FORMAT_VERSION, 4);
  buffer.writeUInt8(idBytes.length, 5);
  buffer.writeUInt16LE(0, 6);
  buffer.writeDoubleLE(expiresAt, EXPIRES_AT_OFFSET);
  buffer.writeUInt32LE(data.byteLength, 16);
  idBytes.copy(buffer, HEADER_BYTES);
  buffer.set(data, HEADER_BYTES + idBytes.length);
  buffer.writeUInt32LE(crc32(buffer.subarray(HEADER_BYTES)), 20);
  return buffer;
}

/** Parses the header at the start of `bytes` (at least the header and the id must be present). */
export function decodeHeader(expectedId: string, bytes: Uint8Array): HeaderResult {
  if (bytes.byteLength < HEADER_BYTES)
    return { kind: 'corrupt', reason: 'shorter than its header' };
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.readUInt32LE(0) !== MAGIC) return { kind: 'corrupt', reason: 'bad magic bytes' };
  const version = view.readUInt8(4);
  if (version !== FORMAT_VERSION) {
    return { kind: 'corrupt', reason: `unknown format version ${version}` };
  }
  const idLength = view.readUInt8(5);
  if (view.byteLength < HEADER_BYTES + idLength) return { kind: 'corrupt', reason: 'truncated id' };
  const id = view.toString('latin1', HEADER_BYTES, HEADER_BYTES + idLength);
  const expiresAt = view.readDoubleLE(EXPIRES_AT_OFFSET);
  if (!Number.isFinite(expiresAt)) return { kind: 'corrupt', reason: 'expiresAt is not finite' };
  if (id !== expectedId) {
    return id.toLowerCase() === expectedId.toLowerCase()
      ? { kind: 'other-id' }
      : { kind: 'corrupt', reason: 'the header names another id' };
  }
  return {
    kind: 'ok',
    header: { id, expiresAt, payloadBytes: view.readUInt32LE(16), crc: view.readUInt32LE(20) },
  };
}

/** Checks a whole file's bytes and returns its payload, or the reason it is damaged. */
export function decodePayload(
  header: RecordHeader,
  bytes: Uint8Array,
): { kind: 'ok'; data: Uint8Array } | { kind: 'corrupt'; reason: string } {
  const bodyStart = HEADER_BYTES + header.id.length;
  if (bytes.byteLength !== bodyStart + header.payloadBytes) {
    return { kind: 'corrupt', reason: 'length does not match the header (torn or truncated)' };
  }
  if (crc32(bytes.subarray(HEADER_BYTES)) !== header.crc) {
    return { kind: 'corrupt', reason: 'checksum mismatch' };
  }
  return { kind: 'ok', data: bytes.slice(bodyStart) };
}
