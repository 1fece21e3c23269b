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
 * What tells whether a row holds a record, its data left unread: `typed` is 1 when its data is
 * a blob and its owner text or NULL, as `SUSPECT_COLUMNS` selects it.
 */
export interface SuspectRow {
  rowid: number;
  typed: number;
  owner: unknown;
}

/** The columns of a `SuspectRow`, for a SELECT on the sessions table. */
export const SUSPECT_COLUMNS = `rowid, (typeof(data) = 'blob' AND typeof(owner) IN ('text', 'null')) AS typed, owner`;

interface ColumnTypes {
  dataType: string;
  ownerType: string;
}

/**
 * Reads a record by id with its owner exactly as stored. better-sqlite3 reads text that is not
 * well-formed in the database's encoding lossily: invalid UTF-8 comes back with U+FFFD in it, and
 * a lone UTF-16 surrogate joined to the next code unit. Such an owner is damage, not an owner.
 */
export class RecordReader {
  readonly #reread: BetterSqlite3.Statement<[string, number], RereadRow>;
  readonly #ownerBytes: BetterSqlite3.Statement<[number], unknown>;
  readonly #columnTypes: BetterSqlite3.Statement<[number], ColumnTypes>;
  readonly #encoding: string;
  readonly #decoder: TextDecoder;
  /** In a UTF-8 database, only an owner with U+FFFD in it can differ from the stored text. */
  readonly #utf8: boolean;

  constructor(db: BetterSqlite3.Database, table: string) {
    this.#reread = prepare(
      db,
      `SELECT data, expires_at AS expiresAt, owner, CAST(owner AS BLOB) AS ownerBytes FROM ${table} WHERE id = ? AND expires_at > ?`,
    );
    this.#ownerBytes = prepare<[number], unknown>(
      db,
      `SELECT CAST(owner AS BLOB) FROM ${table} WHERE rowid = ?`,
    ).pluck();
    this.#columnTypes = prepare(
      db,
      `SELECT typeof(data) AS dataType, typeof(owner) AS ownerType FROM ${table} WHERE rowid = ?`,
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
    const exact = this.#decode(again.ownerBytes);
    if (exact === undefined) throw corrupt(`its owner is not well-formed ${this.#encoding}`);
    return recordOf({ data: again.data, expiresAt: again.expiresAt, owner: exact });
  }

  /**
   * Why the live `row` holds no record, as `read` would reject it, or `undefined` when it holds
   * one. Reads the row again, in the caller's transaction, only when its columns alone cannot
   * tell: for the message of a row of the wrong types, for the bytes of an owner read with
   * U+FFFD in it.
   */
  damageOf(row: SuspectRow): string | undefined {
    if (row.typed !== 1) {
      const types = this.#columnTypes.get(row.rowid);
      return `data is ${sqlTypeName(types?.dataType)} and owner is ${sqlTypeName(types?.ownerType)}, expected a blob and text or null`;
    }
    if (typeof row.owner !== 'string') return undefined;
    const owner =
      this.#utf8 && !row.owner.includes('\uFFFD')
        ? row.owner
        : this.#decode(this.#ownerBytes.get(row.rowid));
    if (owner === undefined) return `its owner is not well-formed ${this.#encoding}`;
    return isOwner(owner) ? undefined : ownerDamage(owner);
  }

  /** Stored owner bytes as text, or `undefined` when they are not well-formed. */
  #decode(bytes: unknown): string | undefined {
    try {
      return this.#decoder.decode(bytes as Uint8Array);
    } catch {
      return undefined;
    }
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
    return ownerDamage(owner);
  }
  return `data is ${sqlType(data)}, expires_at is ${sqlType(expiresAt)} and owner is ${sqlType(owner)}, expected a blob, a number and text or null`;
}

function ownerDamage(owner: string): string {
  // Owners name people: the message gives the owner's length, never the owner.
  return owner.length === 0 || owner.length > MAX_OWNER_LENGTH
    ? `its owner is ${owner.length} UTF-16 code units long, expected 1 to ${MAX_OWNER_LENGTH}`
    : 'its owner is not well-formed Unicode';
}

/** `ERR_CORRUPT_RECORD` for a row with `damage`, which never names the id. */
export function corrupt(damage: string): SessionError {
  return new SessionError('ERR_CORRUPT_RECORD', `Stored session record is corrupt: ${damage}`);
}

/** SQLite's `typeof()` of a column as `sqlType` words it. */
function sqlTypeName(type: unknown): string {
  if (type === 'blob') return 'a blob';
  if (type === 'integer' || type === 'real') return 'number';
  return String(type);
}

function sqlType(value: unknown): string {
  if (value === null) return 'null';
  if (value instanceof Uint8Array) return 'a blob';
  return typeof value === 'string' ? 'text' : typeof value;
}
