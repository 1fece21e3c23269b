import { SessionError, type StoreProbe } from '@sessile/core';
import type { AbstractLevel } from 'abstract-level';
import {
  INDEX_END,
  INDEX_START,
  OWNERS_END,
  OWNERS_START,
  parseIndexKey,
  parseOwnerKey,
  RECORDS_END,
  RECORDS_START,
  readHeader,
} from './format.js';
import { describeError, hasCode } from './level-handle.js';

type Bytes = Uint8Array<ArrayBufferLike>;
type Keyspace = AbstractLevel<unknown, Bytes, Bytes>;

/**
 * The key that marks a keyspace as a session store's: `'m'` (the store's metadata) + `format`.
 * Its value names the package and the format version, as text a person reading the database
 * recognises: `@sessile/level 1`.
 */
const FORMAT_KEY: Buffer = Buffer.from('mformat', 'latin1');
/** The format this release writes and reads. */
const STORE_FORMAT = 1;
const FORMAT_VALUE = Buffer.from(`@sessile/level ${STORE_FORMAT}`, 'latin1');
const FORMAT_VALUE_PATTERN = /^@sessile\/level ([1-9][0-9]{0,8})$/;

/** What a keyspace holds, as `inspectKeyspace` reads it. */
export type KeyspaceContents =
  /** A store of this format, or the keys of a store made before the format key (no key yet). */
  | { kind: 'store'; marked: boolean }
  | { kind: 'empty' }
  | { kind: 'newer'; format: number }
  | { kind: 'foreign'; what: string }
  /**
   * LevelDB reports damage where the keys would be read. The store opens it as it is: each
   * read of a damaged range rejects with `ERR_STORE_IO`, and the rest stays readable.
   */
  | { kind: 'unreadable' };

/**
 * Past every key anyone writes. A range needs an upper bound: without one, a sublevel's range
 * also takes the app's key equal to the sublevel's own upper bound (`!sessions"`).
 */
const KEYS_END = Buffer.alloc(32, 0xff);

/** The ranges outside the store's keyspaces `'o'`, `'r'` and `'x'`; the format key aside. */
const OUTSIDE_KEYSPACES: readonly { gt?: Bytes; gte?: Bytes; lt: Bytes }[] = [
  { gte: new Uint8Array(0), lt: FORMAT_KEY },
  { gt: FORMAT_KEY, lt: OWNERS_START },
  { gte: OWNERS_END, lt: RECORDS_START },
  { gte: RECORDS_END, lt: INDEX_START },
  { gte: INDEX_END, lt: KEYS_END },
];

async function firstKey(db: Keyspace, range: object): Promise<Bytes | undefined> {
  const [key] = await db.keys({ ...range, limit: 1 }).all();
  return key;
}

/**
 * Reads what `db` holds: its format key, or, without one, whether it holds nothing, or only
 * keys a store writes (a store made before the format key existed). A few seeks, whatever the
 * size: every range outside the store's keyspaces, and the first key of each keyspace, whose
 * bytes must be what the store writes there.
 */
export async function inspectKeyspace(db: Keyspace): Promise<KeyspaceContents> {
  try {
    return await readKeyspace(db);
  } catch (error) {
    if (hasCode(error, 'LEVEL_CORRUPTION')) return { kind: 'unreadable' };
    throw error;
  }
}

async function readKeyspace(db: Keyspace): Promise<KeyspaceContents> {
  const format = await db.get(FORMAT_KEY);
  if (format !== undefined) {
    const match = FORMAT_VALUE_PATTERN.exec(Buffer.from(format).toString('latin1'));
    if (match === null) {
      return {
        kind: 'foreign',
        what: "its 'mformat' key holds a value @sessile/level never writes",
      };
    }
    const version = Number(match[1]);
    return version > STORE_FORMAT
      ? { kind: 'newer', format: version }
      : { kind: 'store', marked: true };
  }
  if ((await firstKey(db, { gte: new Uint8Array(0), lt: KEYS_END })) === undefined) {
    return { kind: 'empty' };
  }
  for (const range of OUTSIDE_KEYSPACES) {
    if ((await firstKey(db, range)) !== undefined) {
      return { kind: 'foreign', what: 'it holds keys outside the keyspaces @sessile/level writes' };
    }
  }
  const [record] = await db.iterator({ gte: RECORDS_START, lt: RECORDS_END, limit: 1 }).all();
  const index = await firstKey(db, { gte: INDEX_START, lt: INDEX_END });
  const owner = await firstKey(db, { gte: OWNERS_START, lt: OWNERS_END });
  if (
    (record !== undefined && readHeader(record[1]) === undefined) ||
    (index !== undefined && parseIndexKey(index) === undefined) ||
    (owner !== undefined && parseOwnerKey(owner) === undefined)
  ) {
    return { kind: 'foreign', what: 'its keys or values are not what @sessile/level writes there' };
  }
  return { kind: 'store', marked: false };
}

/** Where a keyspace is, for messages: `LevelDB directory <path>`, and what to pass instead. */
export interface KeyspacePlace {
  where: string;
  instead: string;
}

/** Why `open` refuses a keyspace of these contents at `place`, or `undefined` when it opens it. */
export function refusalOf(
  contents: KeyspaceContents,
  { where, instead }: KeyspacePlace,
): SessionError | undefined {
  if (contents.kind === 'newer') {
    return new SessionError(
      'ERR_UNSUPPORTED',
      `${where} holds a session store of format ${contents.format}, newer than the ${STORE_FORMAT} this @sessile/level reads; upgrade the package. Nothing was written`,
    );
  }
  if (contents.kind === 'foreign') {
    return new SessionError(
      'ERR_UNSUPPORTED',
      `Refusing to use ${where} as a session store: ${contents.what}, and no format key of a store, so it is probably another program's database (level-session-store's, or an app's), whose data a sweep or clear() could delete. ${instead}; nothing was written`,
    );
  }
  return undefined;
}

/**
 * Refuses `db` unless it is a store or empty, and then writes its format key when it has none,
 * so the next open knows it without reading its keys.
 */
export async function adoptKeyspace(db: Keyspace, place: KeyspacePlace): Promise<void> {
  const contents = await inspectKeyspace(db);
  const refusal = refusalOf(contents, place);
  if (refusal !== undefined) throw refusal;
  if (contents.kind === 'unreadable' || (contents.kind === 'store' && contents.marked)) return;
  await db.put(FORMAT_KEY, FORMAT_VALUE);
}

export function sublevelPlace(name: string): KeyspacePlace {
  return {
    where: `the sublevel ${JSON.stringify(name)} of the app's database`,
    instead: 'Give the store a sublevel of its own (options.sublevel)',
  };
}

export function directoryPlace(path: string): KeyspacePlace {
  return { where: `LevelDB directory ${path}`, instead: 'Pass a new or empty directory' };
}

/** A failure to read or mark the keyspace at open, as open rejects with it. */
export function adoptionError(error: unknown, failed: string): SessionError {
  if (error instanceof SessionError) return error;
  return new SessionError('ERR_STORE_IO', `${failed}: ${describeError(error)}`, { cause: error });
}

/** `probe`'s answer for a keyspace at `place` that `inspect` reads; `empty` is the reason for none. */
export async function probeKeyspace(
  inspect: () => Promise<KeyspaceContents>,
  place: KeyspacePlace,
  empty: string,
): Promise<StoreProbe> {
  let contents: KeyspaceContents;
  try {
    contents = await inspect();
  } catch (error) {
    return {
      state: 'refused',
      reason: `Cannot read ${place.where}: ${describeError(error)}`,
      cause: error,
    };
  }
  if (contents.kind === 'empty') return { state: 'absent', reason: empty };
  const refusal = refusalOf(contents, place);
  if (refusal === undefined) return { state: 'present' };
  return { state: 'refused', reason: refusal.message, cause: refusal };
}
