import { SessionError, type SessionRecord } from '@sessile/core';

/** A session row as the store's statements select it. */
export interface StoredRow {
  data: unknown;
  expiresAt: unknown;
  owner: unknown;
}

export function toBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * The record in a row, its expiry selected as `float8send(expires_at)`; the column types make
 * anything but a blob and 8 bytes impossible.
 */
export function recordOf(row: StoredRow): SessionRecord {
  const { data, expiresAt, owner } = row;
  if (
    !(data instanceof Uint8Array) ||
    !(expiresAt instanceof Uint8Array) ||
    expiresAt.byteLength !== 8
  ) {
    throw new SessionError('ERR_CORRUPT_RECORD', 'Stored session record is corrupt');
  }
  const record: SessionRecord = {
    data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    expiresAt: toBuffer(expiresAt).readDoubleBE(0),
  };
  if (owner instanceof Uint8Array) record.owner = toBuffer(owner).toString();
  return record;
}
