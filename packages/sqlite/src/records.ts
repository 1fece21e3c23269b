import { TextDecoder } from 'node:util';
import { isOwner, MAX_OWNER_LENGTH, SessionError, type SessionRecord } from '@sessile/core';
import type BetterSqlite3 from 'better-sqlite3';
import { prepare } from './statements.js';

/** A row of the sessions table as a SELECT of data, expiresAt and owner returns it. */
export interface StoredRow {
  data: unknown;
  expiresAt: unknown;
  owner: unknown;
}

export interface OwnedRow extends StoredRow {
  id: string;
}

/** A row read again with the bytes its owner is stored as. */
interface RereadRow extends StoredRow {
  ownerBytes: unknown;
}

/**
 * Reads a record by id with its owner exactly as stored. better-sqlite3 reads text that is not
 * well-formed in the database's encoding lossily: invalid UTF-8 comes back with U+FFFD in it, and
 * a lone UTF-16 surrogate joined to the next code unit. Such an owner is damage, not an owner.
 */
export class RecordReader {
  readonly #reread: BetterSqlite3.Statement<[string, number], RereadRow>;
  readonly #encoding: string;
  readonly #decoder: TextDecoder;
  /** In a UTF-8 database, only an owner with U+FFFD in it can differ from the stored text. */
  readonly #utf8: boolean;

  constructor(db: BetterSqlite3.Database, table: string) {
    this.#reread = prepare(
      db,
      `SELECT data, expires_at AS expiresAt, owner, CAST(owner AS BLOB) AS ownerBytes FROM ${table} WHERE id = ? AND expires_at > ?`,
    );
    // The encoding is fixed once the database holds a table.
    this.#encoding = String(db.pragma('encoding', { simple: true }));
    this.#utf8 = this.#encoding === 'UTF-8';
    // fatal: bytes that do not decode are damage. ignoreBOM: a leading U+FEFF is part of the owner.
    this.#decoder = new TextDecoder(this.#encoding.toLowerCase(), { fatal: true, ignoreBOM: true });
  }

  /**
   * The record in `row`, which a statement just read for `id` live at `now`, or
   * `ERR_CORRUPT_RECORD` when its columns hold no record a write stores.
   */
  read(row: StoredRow | undefined, id: string, now: number): SessionRecord | undefined {
    if (row === undefined) return undefined;
    const { owner } = row;
    if (typeof owner !== 'string' || (this.#utf8 && !owner.includes('\uFFFD'))) {
      return recordOf(row);
    }
    // The whole record from one statement, so a write landing between the two reads cannot mix them.
    const again = this.#reread.get(id, now);
    if (again === undefined || typeof again.owner !== 'string') return recordOf(again);
    let exact: string;
    try {
      exact = this.#decoder.decode(again.ownerBytes as Uint8Array);
    } catch {
      throw corrupt(`its owner is not well-formed ${this.#encoding}`);
    }
    return recordOf({ data: again.data, expiresAt: again.expiresAt, owner: exact });
  }
}

/** The record in a row, or `ERR_CORRUPT_RECORD` when its columns hold no record a write stores. */
export function recordOf(row: StoredRow | undefined): SessionRecord | undefined {
  if (row === undefined) return undefined;
  const record = recordOrUndefined(row);
  if (record === undefined) throw corrupt(damageOf(row));
  return record;
}

/** The record in a row, or `undefined` when its columns hold no record a write stores. */
export function recordOrUndefined(row: StoredRow): SessionRecord | undefined {
  const { data, expiresAt, owner } = row;
  if (!(data instanceof Uint8Array) || typeof expiresAt !== 'number') return undefined;
  // A plain view of better-sqlite3's Buffer, without copying the bytes again.
  const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (owner === null) return { data: view, expiresAt };
  if (!isOwner(owner)) return undefined;
  return { data: view, expiresAt, owner };
}

function damageOf({ data, expiresAt, owner }: StoredRow): string {
  if (data instanceof Uint8Array && typeof expiresAt === 'number' && typeof owner === 'string') {
    // Owners name people: the message gives the owner's length, never the owner.
    return owner.length === 0 || owner.length > MAX_OWNER_LENGTH
      ? `its owner is ${owner.length} UTF-16 code units long, expected 1 to ${MAX_OWNER_LENGTH}`
      : 'its owner is not well-formed Unicode';
  }
  return `data is ${sqlType(data)}, expires_at is ${sqlType(expiresAt)} and owner is ${sqlType(owner)}, expected a blob, a number and text or null`;
}

function corrupt(damage: string): SessionError {
  return new SessionError('ERR_CORRUPT_RECORD', `Stored session record is corrupt: ${damage}`);
}

function sqlType(value: unknown): string {
  if (value === null) return 'null';
  if (value instanceof Uint8Array) return 'a blob';
  return typeof value === 'string' ? 'text' : typeof value;
}
