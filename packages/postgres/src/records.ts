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

/** The expiry of a row, selected as `float8send(expires_at)`: NaN for one a double cannot be. */
function expiryOf(row: StoredRow): number {
  const { expiresAt } = row;
  if (!(expiresAt instanceof Uint8Array) || expiresAt.byteLength !== 8) return Number.NaN;
  return toBuffer(expiresAt).readDoubleBE(0);
}

/**
 * Whether a row holds a readable record: no record may expire at 'Infinity' or 'NaN', which a
 * hand edit may write (and which PostgreSQL sorts above every number).
 */
export function isReadable(row: StoredRow): boolean {
  return row.data instanceof Uint8Array && Number.isFinite(expiryOf(row));
}

/** The record in a row; `ERR_CORRUPT_RECORD` for one that is not readable. */
export function recordOf(row: StoredRow): SessionRecord {
  const { data, owner } = row;
  if (!(data instanceof Uint8Array) || !isReadable(row)) {
    throw new SessionError('ERR_CORRUPT_RECORD', 'Stored session record is corrupt');
  }
  const record: SessionRecord = {
    data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    expiresAt: expiryOf(row),
  };
  if (owner instanceof Uint8Array) record.owner = toBuffer(owner).toString();
  return record;
}
