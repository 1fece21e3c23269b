import {
  type HeldLease,
  isSessionId,
  type LockManager,
  type OwnedSession,
  SessionError,
  type SessionRecord,
  type StoreCapabilities,
  type StoreProbe,
  type SweepResult,
} from '@sessile/core';
import {
  BaseStore,
  KeyedLocks,
  ResourceClaims,
  type SweepProgress,
  type UnlinkGuard,
  yieldToEventLoop,
} from '@sessile/core/store';
import type BetterSqlite3 from 'better-sqlite3';
import Database from 'better-sqlite3';
import { Checkpointer } from './checkpointer.js';
import { makeDatabaseDirectory } from './database-directory.js';
import { Executor, retryWhileBusy, setBusySlice } from './executor.js';
import { type FencedWrite, fencedWrite, SqliteLocks } from './locks.js';
import {
  assertDatabasePath,
  assertSqliteFile,
  assertWritable,
  cannotOpen,
  databaseFile,
  guardAgainstUnlink,
  inspectExisting,
  openFailure,
  probeDatabaseFile,
  readOnlyRefusal,
  refusedBy,
} from './open-file.js';
import { normalizeOptions, type Settings, type SqliteStoreOptions } from './options.js';
import {
  corrupt,
  type OwnedRow,
  RecordReader,
  recordOrUndefined,
  type StoredRow,
  SUSPECT_COLUMNS,
  type SuspectRow,
} from './records.js';
import { inspectSchema, migrateSchema, quote } from './schema.js';
import {
  numericExpiry,
  pragmaNumber,
  prepare,
  SUSPECT_ROW,
  sessionIdText,
  unreadableExpiry,
  validSessionId,
} from './statements.js';

/** The owner column: NULL for a record without one. */
type Owner = string | null;

/** One conditional write as two statements with the same parameters; see the constructor. */
interface OwnerWrites<S extends BetterSqlite3.Statement<never[]>> {
  keepingOwner: S;
  settingOwner: S;
}

function writeOnce<A extends unknown[]>(
  writes: OwnerWrites<BetterSqlite3.Statement<A>>,
  args: Readonly<A>,
): boolean {
  return (
    writes.keepingOwner.run(...(args as A)).changes === 1 ||
    writes.settingOwner.run(...(args as A)).changes === 1
  );
}

/** What an app's connection had before the store changed it; `synchronous` and WAL stay. */
interface AppPragmas {
  busyTimeoutMs: number;
  walAutocheckpoint: number;
  journalSizeLimit: number;
}

function readAppPragmas(db: BetterSqlite3.Database): AppPragmas {
  return {
    busyTimeoutMs: pragmaNumber(db, 'busy_timeout'),
    walAutocheckpoint: pragmaNumber(db, 'wal_autocheckpoint'),
    journalSizeLimit: pragmaNumber(db, 'journal_size_limit'),
  };
}

/** Sets an app's connection back as the store found it, as far as the connection allows. */
function restoreAppPragmas(db: BetterSqlite3.Database, pragmas: AppPragmas): void {
  try {
    if (!db.open) return;
    db.pragma(`busy_timeout = ${pragmas.busyTimeoutMs}`);
    db.pragma(`wal_autocheckpoint = ${pragmas.walAutocheckpoint}`);
    db.pragma(`journal_size_limit = ${pragmas.journalSizeLimit}`);
  } catch {
    // The app is iterating one of its statements, which forbids pragmas: they stay as they are.
  }
}

/** The tables open stores use, by in-memory connection; SQLite matches names ignoring ASCII case. */
const claimedTables = new ResourceClaims();

/** Sweep batches start here and adapt so each one holds the event loop for about TARGET ms. */
const INITIAL_SWEEP_BATCH = 32;
const MIN_SWEEP_BATCH = 16;
const MAX_SWEEP_BATCH = 1000;
const SWEEP_BATCH_TARGET_MS = 2;
const IDS_PAGE_SIZE = 256;
/** The longest a sweep pauses between batches for the checkpoint worker to rewind the WAL. */
const SWEEP_REWIND_WAIT_MS = 100;

/**
 * Sessions in one SQLite table, through better-sqlite3. Every process on the host can open the
 * same file at once: writes are short WAL transactions, and session locks are leases in a table
 * of the same database. An index on the expiry column makes a sweep cost grow with expired rows.
 */
export class SqliteStore extends BaseStore {
  readonly capabilities: StoreCapabilities;
  readonly locks: LockManager;
  readonly #db: BetterSqlite3.Database;
  /** Undefined when the store opened the connection itself, and closes it. */
  readonly #appPragmas: AppPragmas | undefined;
  readonly #executor: Executor;
  readonly #checkpointer: Checkpointer | undefined;
  readonly #unlinkGuard: UnlinkGuard | undefined;
  readonly #get: BetterSqlite3.Statement<[string, number], StoredRow>;
  readonly #records: RecordReader;
  readonly #upsert: OwnerWrites<BetterSqlite3.Statement<[string, Uint8Array, number, Owner]>>;
  readonly #insertUnlessLive: OwnerWrites<
    BetterSqlite3.Statement<[string, Uint8Array, number, Owner, number]>
  >;
  readonly #updateIfLive: OwnerWrites<
    BetterSqlite3.Statement<[Uint8Array, number, Owner, string, number]>
  >;
  readonly #ownedBy: BetterSqlite3.Statement<[string, number], OwnedRow>;
  readonly #touch: BetterSqlite3.Statement<[number, string, number]>;
  readonly #touchSuspect: BetterSqlite3.Statement<[number, string, number]>;
  readonly #liveSuspect: BetterSqlite3.Statement<[string, number], SuspectRow>;
  readonly #delete: BetterSqlite3.Statement<[string], { expiresAt: unknown }>;
  readonly #sweepBatch: BetterSqlite3.Statement<[number, number]>;
  readonly #sweepUnreadable: BetterSqlite3.Statement<[number]>;
  readonly #anyExpired: BetterSqlite3.Statement<[number], unknown>;
  readonly #count: BetterSqlite3.Statement<[number, number], number>;
  readonly #liveSuspects: BetterSqlite3.Statement<[number], SuspectRow>;
  readonly #idsPage: BetterSqlite3.Statement<[string, number, number], string>;
  readonly #liveSuspectsBetween: BetterSqlite3.Statement<
    [string, string, number],
    SuspectRow & { id: string }
  >;
  readonly #clear: BetterSqlite3.Statement<[]>;
  /** A fenced write in one transaction; absent when locks are in-process. */
  readonly #fenced: BetterSqlite3.Transaction<FencedWrite> | undefined;
  #sweepBatchSize = INITIAL_SWEEP_BATCH;
  /** The database file that `ERR_STORE_IO` messages name; none in memory. */
  readonly #location: string | undefined;
  /** Frees the table of an app's in-memory database for another store once this one is closed. */
  #unclaim: (() => void) | undefined;

  /**
   * What `open(options)` would find, creating and changing nothing: the store's table (it is
   * there; `open` migrates an older schema), none yet (a missing or empty file, also in missing
   * directories that `open` can make, or a database without the table, which `open` adds), or
   * why `open` would fail (not an SQLite file, a foreign or newer schema, no right to write the
   * file or its directory, or to make the missing directories).
   */
  static async probe(options: SqliteStoreOptions): Promise<StoreProbe> {
    const settings = normalizeOptions(options, 'probe');
    const { path, database } = settings;
    if (database !== undefined) {
      const readOnly = readOnlyRefusal(database);
      if (readOnly !== undefined) return readOnly;
      let presentVersion: number;
      try {
        presentVersion = inspectSchema(database, settings.names).presentVersion;
      } catch (error) {
        return refusedBy(error);
      }
      return presentVersion > 0
        ? { state: 'present' }
        : { state: 'absent', reason: `the database has no '${settings.names.records}' table` };
    }
    if (path === undefined || path === ':memory:') {
      return { state: 'absent', reason: 'an in-memory database is new at every open' };
    }
    return probeDatabaseFile(settings);
  }

  /**
   * Opens (or creates) the database and its schema. A file that is not a SQLite database fails
   * with `ERR_STORE_IO`, and a table this package did not create, or a schema from a newer
   * version, with `ERR_UNSUPPORTED`; either way the file is left exactly as it was.
   */
  static async open(options: SqliteStoreOptions): Promise<SqliteStore> {
    const settings = normalizeOptions(options, 'open');
    const { path } = settings;
    if (path !== undefined && path !== ':memory:') {
      assertDatabasePath(path);
      const misplaced = await makeDatabaseDirectory(path);
      if (misplaced !== undefined) throw cannotOpen(path, misplaced.reason, misplaced.cause);
      if (await assertSqliteFile(path)) await inspectExisting(settings);
    }
    let db: BetterSqlite3.Database;
    try {
      db = settings.database ?? new Database(path);
    } catch (error) {
      throw openFailure(error, path);
    }
    const ownsDatabase = settings.database === undefined;
    // An app's connection is named by its file, as a path is, in the errors below.
    const location = ownsDatabase ? path : databaseFile(db) || undefined;
    // An in-memory database's locks are in-process, one manager per store: two stores on one
    // table of it would both hold one session's lock.
    let unclaim: (() => void) | undefined;
    if (!ownsDatabase && db.memory) {
      unclaim = claimedTables.claim(db, settings.names.records.toLowerCase());
      if (unclaim === undefined) {
        throw new SessionError(
          'ERR_STORE_BUSY',
          `The table ${settings.names.records} of this in-memory database is used by another open SqliteStore: each keeps its own in-process locks, so two would both hold one session's lock. Close the other store first, or give each store its own table`,
        );
      }
    }
    // Pragmas of an app's connection that the store changes while open, and sets back.
    const appPragmas = ownsDatabase ? undefined : readAppPragmas(db);
    let unlinkGuard: UnlinkGuard | undefined;
    try {
      setBusySlice(db, settings.busyTimeoutMs);
      // Refuse a foreign schema before any pragma below writes to the file.
      const found = await retryWhileBusy(
        () => inspectSchema(db, settings.names),
        settings.busyTimeoutMs,
      );
      // Before any pragma below writes to the file, as the first write would fail there.
      await retryWhileBusy(() => assertWritable(db, location), settings.busyTimeoutMs);
      if (!db.memory) {
        // Without `simple`, pragma() steps the statement to its end, so a failed commit of the
        // header change throws instead of being dropped (see _delete).
        const [row] = await retryWhileBusy(
          () => db.pragma('journal_mode = WAL') as Array<{ journal_mode?: unknown }>,
          settings.busyTimeoutMs,
        );
        const mode = row?.journal_mode;
        if (mode !== 'wal') {
          throw new SessionError(
            'ERR_STORE_IO',
            `SQLite refused WAL mode (journal_mode is ${String(mode)})`,
          );
        }
      }
      db.pragma(`synchronous = ${settings.durability === 'full' ? 'FULL' : 'NORMAL'}`);
      if (!found.complete) {
        const migrate = db.transaction(() => migrateSchema(db, settings.names));
        await retryWhileBusy(() => migrate.immediate(), settings.busyTimeoutMs);
      }
      const file = databaseFile(db);
      // A temporary database ('' as its file) has no file anyone could delete.
      if (!db.memory && file !== '') unlinkGuard = guardAgainstUnlink(file);
      const store = new SqliteStore(db, file, appPragmas, unlinkGuard, settings, options);
      store.#unclaim = unclaim;
      if (appPragmas !== undefined) db.pragma(`busy_timeout = ${appPragmas.busyTimeoutMs}`);
      return store;
    } catch (error) {
      unclaim?.();
      unlinkGuard?.close();
      if (appPragmas === undefined) db.close();
      else restoreAppPragmas(db, appPragmas);
      throw error instanceof TypeError ? error : openFailure(error, location);
    }
  }

  private constructor(
    db: BetterSqlite3.Database,
    file: string,
    appPragmas: AppPragmas | undefined,
    unlinkGuard: UnlinkGuard | undefined,
    settings: Settings,
    options: SqliteStoreOptions,
  ) {
    super(options);
    this.#db = db;
    this.#appPragmas = appPragmas;
    this.#unlinkGuard = unlinkGuard;
    const inMemory = db.memory;
    this.capabilities = {
      shared: inMemory ? 'process' : 'host',
      expiry: 'sweep',
      durable: !inMemory,
      expiryIndex: true,
      ownerIndex: true,
    };
    // The file as SQLite resolved it when the connection opened: a relative name finds another
    // file once the process changes directory.
    this.#location = inMemory || file === '' ? undefined : file;
    // A commit appends every page it changed to the WAL; writes that share a commit share the
    // pages they both change (the table's last leaf, the expiry index's) and its locks.
    this.#executor = new Executor(db, {
      busyTimeoutMs: settings.busyTimeoutMs,
      groupCommit: !inMemory,
      afterWrite: () => this.#checkpointer?.wrote(),
      beforeCommit: unlinkGuard && (() => unlinkGuard.assertLinked()),
      appBusyTimeoutMs: appPragmas?.busyTimeoutMs,
      location: this.#location,
    });
    // An in-memory database is private to this connection, so in-process locks reach just as far.
    const table = quote(settings.names.records);
    // A row whose expiry is no number is live to no statement but get, which reports it corrupt.
    const numeric = numericExpiry(`${table}.expires_at`);
    const unreadable = unreadableExpiry(`${table}.expires_at`);
    this.#get = prepare(
      db,
      `SELECT data, expires_at AS expiresAt, owner FROM ${table} WHERE id = ? AND expires_at > ?`,
    );
    this.#records = new RecordReader(db, table);
    this.locks = inMemory
      ? new KeyedLocks()
      : new SqliteLocks(db, settings.names, this.#executor, file, this.#records);
    // The owner lives in the record's row, so the owner index can never disagree with the
    // records. SQLite rewrites an index entry whenever its column is assigned, even to the same
    // value: one more page per commit. So each write first tries the statement that leaves the
    // owner column alone and matches only a row that already has the record's owner (or inserts
    // it); when that changes nothing, the statement that assigns the owner decides.
    this.#upsert = {
      keepingOwner: prepare(
        db,
        `INSERT INTO ${table} (id, data, expires_at, owner) VALUES (?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at
         WHERE ${table}.owner IS excluded.owner`,
      ),
      settingOwner: prepare(
        db,
        `INSERT INTO ${table} (id, data, expires_at, owner) VALUES (?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at, owner = excluded.owner`,
      ),
    };
    this.#insertUnlessLive = {
      keepingOwner: prepare(
        db,
        `INSERT INTO ${table} (id, data, expires_at, owner) VALUES (?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at
         WHERE (${table}.expires_at <= ? OR ${unreadable}) AND ${table}.owner IS excluded.owner`,
      ),
      settingOwner: prepare(
        db,
        `INSERT INTO ${table} (id, data, expires_at, owner) VALUES (?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at, owner = excluded.owner
         WHERE ${table}.expires_at <= ? OR ${unreadable}`,
      ),
    };
    this.#updateIfLive = {
      keepingOwner: prepare(
        db,
        `UPDATE ${table} SET data = ?, expires_at = ? WHERE owner IS ? AND id = ? AND expires_at > ? AND ${numeric}`,
      ),
      settingOwner: prepare(
        db,
        `UPDATE ${table} SET data = ?, expires_at = ?, owner = ? WHERE id = ? AND expires_at > ? AND ${numeric}`,
      ),
    };
    this.#ownedBy = prepare(
      db,
      `SELECT id, data, expires_at AS expiresAt, owner FROM ${table} WHERE owner = ? AND expires_at > ?`,
    );
    // A suspect row (see SUSPECT_ROW) is touched only once decoding it found a record.
    this.#touch = prepare(
      db,
      `UPDATE ${table} SET expires_at = ? WHERE id = ? AND expires_at > ? AND ${numeric} AND NOT ${SUSPECT_ROW}`,
    );
    this.#touchSuspect = prepare(
      db,
      `UPDATE ${table} SET expires_at = ? WHERE id = ? AND expires_at > ? AND ${numeric}`,
    );
    this.#liveSuspect = prepare(
      db,
      `SELECT ${SUSPECT_COLUMNS} FROM ${table} WHERE id = ? AND expires_at > ? AND ${numeric}`,
    );
    this.#delete = prepare(
      db,
      `DELETE FROM ${table} WHERE id = ? RETURNING expires_at AS expiresAt`,
    );
    this.#sweepBatch = prepare(
      db,
      `DELETE FROM ${table} WHERE rowid IN
       (SELECT rowid FROM ${table} WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)`,
    );
    // Text and blobs sort after every number, at the end of the expiry index: a range of it.
    this.#sweepUnreadable = prepare(
      db,
      `DELETE FROM ${table} WHERE rowid IN
       (SELECT rowid FROM ${table} WHERE expires_at >= '' LIMIT ?)`,
    );
    this.#anyExpired = prepare(
      db,
      `SELECT 1 FROM ${table} WHERE expires_at <= ?
       UNION ALL SELECT 1 FROM ${table} WHERE expires_at >= '' LIMIT 1`,
    ).pluck();
    // A row written by hand under an id no session can have is neither counted nor listed, as
    // every call on it would reject; the partial index of such ids spares checking each row's id.
    // Its own test lets the planner use it; the second holds in any encoding, as the index's
    // holds every row of a UTF-16 database.
    const invalidId = `NOT ${validSessionId('id')} AND NOT ${sessionIdText('id')}`;
    // The live rows, a range of the expiry index read alone, less those under an invalid id;
    // count() then subtracts the live suspects that hold no record, read through their index.
    this.#count = prepare<[number, number], number>(
      db,
      `SELECT (SELECT count(*) FROM ${table} WHERE expires_at > ? AND expires_at < '')
        - (SELECT count(*) FROM ${table} WHERE ${invalidId} AND +expires_at > ? AND ${numeric})`,
    ).pluck();
    this.#liveSuspects = prepare(
      db,
      `SELECT ${SUSPECT_COLUMNS} FROM ${table} WHERE ${SUSPECT_ROW} AND +expires_at > ?
         AND ${numeric} AND ${sessionIdText('id')}`,
    );
    this.#idsPage = prepare<[string, number, number], string>(
      db,
      `SELECT id FROM ${table} WHERE id > ? AND expires_at > ? AND ${numeric}
         AND id NOT IN (SELECT id FROM ${table} WHERE ${invalidId}) ORDER BY id LIMIT ?`,
    ).pluck();
    // A range of the suspects' own index: normally empty, so a page costs one lookup more.
    this.#liveSuspectsBetween = prepare(
      db,
      `SELECT id, ${SUSPECT_COLUMNS} FROM ${table} WHERE ${SUSPECT_ROW} AND id > ? AND id <= ?
         AND +expires_at > ? AND ${numeric}`,
    );
    this.#clear = prepare(db, `DELETE FROM ${table}`);
    this.#fenced = inMemory ? undefined : fencedWrite(db, settings.names);
    this.#checkpointer = inMemory ? undefined : new Checkpointer(db, file);
  }

  /**
   * The better-sqlite3 connection the store uses, for backups (`database.backup(file)`) and
   * inspection. Writing to the store's tables through it bypasses every check of the store.
   */
  get database(): BetterSqlite3.Database {
    return this.#db;
  }

  protected override ioLocation(): string | undefined {
    // SQLite's own messages ("database or disk is full") name no file.
    return this.#location;
  }

  protected _get(id: string, now: number): Promise<SessionRecord | undefined> {
    return this.#executor.read(() => this.#records.read(this.#get.get(id, now), id, now));
  }

  protected _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
    lease: HeldLease | undefined,
  ): Promise<boolean> {
    const { data, expiresAt } = record;
    const owner = record.owner ?? null;
    // Each statement is atomic on its own, and the second runs only when the first wrote nothing.
    if (only === 'absent') {
      const args = [id, data, expiresAt, owner, now] as const;
      return this.#write(lease, () => writeOnce(this.#insertUnlessLive, args));
    }
    if (only === 'present') {
      const args = [data, expiresAt, owner, id, now] as const;
      return this.#write(lease, () => writeOnce(this.#updateIfLive, args));
    }
    const args = [id, data, expiresAt, owner] as const;
    return this.#write(lease, () => writeOnce(this.#upsert, args));
  }

  protected _touch(
    id: string,
    expiresAt: number,
    now: number,
    lease: HeldLease | undefined,
  ): Promise<boolean> {
    return this.#write(lease, () => {
      if (this.#touch.run(expiresAt, id, now).changes === 1) return true;
      // Missing, expired, or a suspect: touched as get would read it.
      const suspect = this.#liveSuspect.get(id, now);
      if (suspect === undefined) return false;
      const damage = this.#records.damageOf(suspect);
      if (damage !== undefined) throw corrupt(damage);
      return this.#touchSuspect.run(expiresAt, id, now).changes === 1;
    });
  }

  protected _delete(id: string, now: number, lease: HeldLease | undefined): Promise<boolean> {
    return this.#write(lease, () => {
      // all(), not get(): get() resets the statement after its first row, and an autocommit
      // transaction commits inside that reset, where better-sqlite3 drops a failed commit's error.
      const [removed] = this.#delete.all(id);
      if (removed === undefined) return false;
      // An expiry that is no number was live to nobody: count, ids and touch pass it by.
      return typeof removed.expiresAt === 'number' && removed.expiresAt > now;
    });
  }

  /**
   * Runs one write; a fenced one checks its lease in the same transaction, so no other process
   * can take the lock over between the check and the write.
   */
  #write<T>(lease: HeldLease | undefined, operation: () => T): Promise<T> {
    const fenced = this.#fenced;
    if (lease === undefined || fenced === undefined) return this.#executor.write(operation);
    return this.#executor.write(() => fenced.immediate(lease, operation) as T);
  }

  protected async _sweep(progress: SweepProgress): Promise<SweepResult> {
    for (;;) {
      const batch = progress.nextBatchSize(this.#sweepBatchSize);
      if (batch === 0) break;
      // Each batch starts a macrotask of its own, so a caller's next sweep() (or whatever ran
      // before) never adds its time to the batch's stall of the event loop.
      await yieldToEventLoop();
      let started = 0;
      const removed = await this.#executor.write(() => {
        started = performance.now();
        const expired = this.#sweepBatch.run(progress.now, batch).changes;
        if (expired === batch) return expired;
        // A row whose expiry is no number never comes due, and nothing can read it: it goes
        // once the expired rows are gone.
        return expired + this.#sweepUnreadable.run(batch - expired).changes;
      });
      // Timed to its group's commit, which appends the pages the batch changed to the WAL: that
      // is on the event loop too.
      this.#adaptSweepBatch(batch, removed, performance.now() - started);
      progress.scanned += removed;
      progress.removed += removed;
      if (removed < batch) return progress.result(true);
      // Sweep is background work: it waits for the worker's checkpoint (and WAL rewind) between
      // batches, so its writes never push a checkpoint or a rewind fsync onto the event loop.
      if (this.#checkpointer) await this.#checkpointer.nextCheckpoint(SWEEP_REWIND_WAIT_MS);
    }
    const anyExpired = await this.#executor.read(() => this.#anyExpired.get(progress.now));
    return progress.result(anyExpired === undefined);
  }

  protected override _ownedBy(owner: string, now: number): Promise<OwnedSession[]> {
    return this.#executor.read(() => {
      const sessions: OwnedSession[] = [];
      for (const row of this.#ownedBy.iterate(owner, now)) {
        // A row written by hand under an id no session can have is not listed: deleting it, as
        // signing the owner out everywhere does, would reject with ERR_INVALID_SESSION_ID.
        if (!isSessionId(row.id)) continue;
        // A row a foreign writer left unreadable is listed by nobody; get() reports it. The
        // owner needs no second read: `owner = ?` matched the stored bytes of a well-formed one.
        const record = recordOrUndefined(row);
        if (record !== undefined) sessions.push({ id: row.id, record });
      }
      return sessions;
    });
  }

  protected _count(now: number): Promise<number> {
    return this.#executor.read(() => {
      let live = this.#count.get(now, now) as number;
      for (const suspect of this.#liveSuspects.all(now)) {
        if (this.#records.damageOf(suspect) !== undefined) live--;
      }
      return live;
    });
  }

  protected async *_ids(now: number): AsyncIterable<string> {
    let after = '';
    for (;;) {
      // Pages by key instead of holding a cursor, which would block the connection between yields.
      const page = await this.#executor.read(() => {
        const ids = this.#idsPage.all(after, now, IDS_PAGE_SIZE);
        const last = ids[ids.length - 1];
        const full = ids.length === IDS_PAGE_SIZE;
        if (last === undefined) return { ids, last, full };
        // In the page's transaction, so each suspect is judged as the page found it.
        const damaged = new Set<string>();
        for (const suspect of this.#liveSuspectsBetween.all(after, last, now)) {
          if (this.#records.damageOf(suspect) !== undefined) damaged.add(suspect.id);
        }
        if (damaged.size === 0) return { ids, last, full };
        return { ids: ids.filter((id) => !damaged.has(id)), last, full };
      });
      yield* page.ids;
      if (!page.full || page.last === undefined) return;
      after = page.last;
    }
  }

  protected async _clear(): Promise<void> {
    await this.#executor.write(() => this.#clear.run());
  }

  protected async _close(): Promise<void> {
    await this.#executor.close();
    // Stop the worker's connection first, so closing ours is the last and folds the WAL back in.
    await this.#checkpointer?.stop();
    if (this.#appPragmas === undefined) this.#db.close();
    else restoreAppPragmas(this.#db, this.#appPragmas);
    this.#unlinkGuard?.close();
    this.#unclaim?.();
  }

  /** Keeps each sweep batch near the target duration, since better-sqlite3 blocks while it runs. */
  #adaptSweepBatch(batch: number, removed: number, elapsedMs: number): void {
    if (removed < batch) return;
    if (elapsedMs < SWEEP_BATCH_TARGET_MS / 2) {
      this.#sweepBatchSize = Math.min(MAX_SWEEP_BATCH, this.#sweepBatchSize * 2);
    } else if (elapsedMs > SWEEP_BATCH_TARGET_MS * 2) {
      const scaled = Math.floor((batch * SWEEP_BATCH_TARGET_MS) / elapsedMs);
      this.#sweepBatchSize = Math.max(MIN_SWEEP_BATCH, scaled);
    }
  }
}
