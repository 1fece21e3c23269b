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

/** The record in a row; the column types make anything but a blob and a number impossible. */
export function recordOf(row: StoredRow): SessionRecord {
  const { data, expiresAt, owner } = row;
  if (!(data instanceof Uint8Array) || typeof expiresAt !== 'number') {
    throw new SessionError('ERR_CORRUPT_RECORD', 'Stored session record is corrupt');
  }
  const record: SessionRecord = {
    data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    expiresAt,
  };
  if (owner instanceof Uint8Array) record.owner = toBuffer(owner).toString();
  return record;
}
