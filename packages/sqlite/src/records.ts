import { SessionError, type SessionRecord } from '@sessile/core';

/** A row of the sessions table as a SELECT of data, expiresAt and owner returns it. */
export interface StoredRow {
  data: unknown;
  expiresAt: unknown;
  owner: unknown;
}

export interface OwnedRow extends StoredRow {
  id: string;
}

/** The record in a row, or `ERR_CORRUPT_RECORD` when its columns hold the wrong types. */
export function recordOf(row: StoredRow | undefined): SessionRecord | undefined {
  if (row === undefined) return undefined;
  const record = recordOrUndefined(row);
  if (record === undefined) {
    const { data, expiresAt, owner } = row;
    throw new SessionError(
      'ERR_CORRUPT_RECORD',
      `Stored session record is corrupt: data is ${sqlType(data)}, expires_at is ${sqlType(expiresAt)} and owner is ${sqlType(owner)}, expected a blob, a number and text or null`,
    );
  }
  return record;
}

/** The record in a row, or `undefined` when its columns hold the wrong types. */
export function recordOrUndefined(row: StoredRow): SessionRecord | undefined {
  const { data, expiresAt, owner } = row;
  if (!(data instanceof Uint8Array) || typeof expiresAt !== 'number') return undefined;
  // A plain view of better-sqlite3's Buffer, without copying the bytes again.
  const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (owner === null) return { data: view, expiresAt };
  if (typeof owner !== 'string') return undefined;
  return { data: view, expiresAt, owner };
}

function sqlType(value: unknown): string {
  if (value === null) return 'null';
  if (value instanceof Uint8Array) return 'a blob';
  return typeof value === 'string' ? 'text' : typeof value;
}
