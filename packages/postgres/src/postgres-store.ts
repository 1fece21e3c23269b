import {
  type HeldLease,
  isSessionError,
  type LockManager,
  type OwnedSession,
  type SessionRecord,
  type StoreCapabilities,
  type StoreProbe,
  type SweepResult,
} from '@sessile/core';
import {
  BaseStore,
  errorMessage,
  lockLost,
  type SweepProgress,
  yieldToEventLoop,
} from '@sessile/core/store';
import type pg from 'pg';
import { Batches, type BatchKind } from './batches.js';
import { assertReadCommitted, Database, settingsOnConnect } from './database.js';
import { LockListener } from './listener.js';
import { PostgresLocks } from './locks.js';
import { normalizeOptions, type PostgresStoreOptions, type Settings } from './options.js';
import { isReadable, recordOf, type StoredRow, toBuffer } from './records.js';
import { prepareSchema, probeSchema, qualified, refusalOf } from './schema.js';
import type { OwnSockets } from './sockets.js';
import {
  buildStatements,
  type FencedStatements,
  type Statement,
  type Statements,
} from './statements.js';

/** Rows one sweep statement deletes; PostgreSQL does the work, so the event loop only sees a count. */
const SWEEP_BATCH = 500;
/** Rows one statement of `clear` deletes. */
const CLEAR_PAGE = 10_000;
const LEASE_SWEEP_BATCH = 500;
const IDS_PAGE_SIZE = 500;

/** A record as the columns' parameters: id, data, expires_at, owner. */
type RecordRow = [id: string, data: Buffer, expiresAt: number, owner: Buffer | null];

interface RowWrite {
  row: RecordRow;
  now: number;
}

interface FencedWrite extends RowWrite {
  lease: HeldLease;
}

interface FencedRow {
  held: boolean;
  wrote: boolean;
}

/** A fenced write: its statement, the write's own values, and the lease it checks. */
interface FencedCall {
  statement: Statement;
  values: unknown[];
  lease: HeldLease;
}

/**
 * Sessions in one PostgreSQL table, through a node-postgres pool. Every host that opens the
 * same table shares the sessions and the locks: locks are lease rows beside the sessions, and a
 * release wakes waiters everywhere through LISTEN/NOTIFY. Each operation is one statement on a
 * connection checked out for that statement only.
 */
export class PostgresStore extends BaseStore {
  readonly capabilities: StoreCapabilities;
  readonly locks: LockManager;
  readonly #db: Database;
  readonly #ownsPool: boolean;
  readonly #poolSockets: OwnSockets | undefined;
  readonly #queryTimeoutMs: number;
  readonly #sql: Statements;
  readonly #channel: string;
  readonly #batches: Batches;
  readonly #reads: BatchKind<{ id: string; now: number }, SessionRecord | undefined | Unreadable>;
  readonly #upserts: BatchKind<RowWrite, boolean>;
  readonly #inserts: BatchKind<RowWrite, boolean>;
  readonly #updates: BatchKind<RowWrite, boolean>;
  readonly #touches: BatchKind<{ id: string; expiresAt: number; now: number }, boolean>;
  readonly #releasingUpdates: BatchKind<FencedWrite, boolean | typeof lostLease>;
  readonly #deletes: BatchKind<{ id: string; now: number }, boolean>;
  readonly #fencedWrites: BatchKind<FencedCall, boolean>;
  readonly #clears: BatchKind<undefined, void>;

  /**
   * Connects, then creates or migrates the schema under a transaction-level advisory lock. A
   * same-named table this package did not create, or a newer schema version, fails with
   * `ERR_UNSUPPORTED` and nothing is changed; an unreachable server with `ERR_STORE_IO`.
   */
  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    const settings = normalizeOptions(options, 'open');
    const table = qualified(settings.names, settings.names.table);
    const db = new Database(settings.pool, settings.queryTimeoutMs, table);
    if (settings.ownsPool) settingsOnConnect(settings.pool);
    try {
      const opening = `Opening ${table}`;
      const { unlogged } = await db.withClient(opening, async (client) => {
        await assertReadCommitted(client, db.server, settings.queryTimeoutMs);
        return prepareSchema(client, settings.names, settings.unlogged, settings.queryTimeoutMs);
      });
      return new PostgresStore(db, settings, options, unlogged);
    } catch (error) {
      await endOwnPool(settings);
      throw error;
    }
  }

  /**
   * What `open(options)` would find, creating and changing nothing: the store's table
   * (`'present'`; `open` migrates an older schema), none yet (`open` creates it, and its schema),
   * or why `open` would fail: a same-named table or function this package did not create, a
   * newer schema version, a user the server refuses, or one without the privileges that reading
   * the store's objects, or creating or migrating them, needs. Rejects with `ERR_STORE_IO` only
   * when the server cannot be asked.
   */
  static async probe(options: PostgresStoreOptions): Promise<StoreProbe> {
    const settings = normalizeOptions(options, 'probe');
    const db = new Database(settings.pool, settings.queryTimeoutMs);
    try {
      const probing = `Probing ${qualified(settings.names, settings.names.table)}`;
      return await db.withClient(probing, async (client) => {
        // `open` refuses an app's pool whose transactions default to another level; its own
        // pool sets READ COMMITTED on each connection, so only an app's pool is asked.
        if (!settings.ownsPool) {
          try {
            await assertReadCommitted(client, db.server, settings.queryTimeoutMs);
          } catch (error) {
            if (!isSessionError(error, 'ERR_UNSUPPORTED')) throw error;
            return { state: 'refused', reason: errorMessage(error), cause: error };
          }
        }
        return probeSchema(client, settings.names, settings.queryTimeoutMs);
      });
    } catch (error) {
      const refusal = refusalOf(error, settings.names, db.server);
      if (refusal === undefined) throw error;
      return refusal;
    } finally {
      await endOwnPool(settings);
    }
  }

  /** `unlogged` is what the sessions table is, whatever the option asked for. */
  private constructor(
    db: Database,
    settings: Settings,
    options: PostgresStoreOptions,
    unlogged: boolean,
  ) {
    super(options);
    this.#db = db;
    this.#ownsPool = settings.ownsPool;
    this.#poolSockets = settings.poolSockets;
    this.#queryTimeoutMs = settings.queryTimeoutMs;
    this.#sql = buildStatements(settings.names, settings.channel);
    this.#channel = settings.channel;
    this.capabilities = {
      shared: 'cluster',
      expiry: 'sweep',
      durable: !unlogged,
      expiryIndex: true,
      ownerIndex: true,
    };
    this.#batches = new Batches(settings.connections, settings.queryTimeoutMs, () =>
      db.timedOut(`A queued statement${db.of}`),
    );
    const many = this.#sql.many;
    this.#reads = {
      readOnly: true,
      one: async ({ id, now }) => {
        const row = (await this.#run<StoredRow>(this.#sql.get, [id, now])).rows[0];
        return row === undefined ? undefined : recordOf(row);
      },
      many: async (calls) => {
        const ids = calls.map((call) => call.id);
        const { rows } = await this.#run<StoredRow & { i: number }>(many.get, [ids, latest(calls)]);
        const records: (SessionRecord | undefined | Unreadable)[] = new Array(calls.length).fill(
          undefined,
        );
        // A corrupt row fails its own call only, not the other reads of the statement.
        for (const row of rows) records[row.i - 1] = recordOrUnreadable(row);
        return records;
      },
    };
    this.#upserts = {
      bytesOf: rowBytes,
      one: ({ row }) => this.#changed(this.#sql.upsert, row),
      many: async (calls) => {
        await this.#run(many.upsert, columnsOf(calls));
        return calls.map(() => true);
      },
    };
    this.#inserts = {
      bytesOf: rowBytes,
      one: ({ row, now }) => this.#changed(this.#sql.insertUnlessLive, [...row, now]),
      many: (calls) =>
        this.#wroteEach(many.insertUnlessLive, [...columnsOf(calls), latest(calls)], idsOf(calls)),
    };
    this.#updates = {
      bytesOf: rowBytes,
      one: ({ row, now }) => this.#changed(this.#sql.updateIfLive, [...row, now]),
      many: (calls) =>
        this.#wroteEach(many.updateIfLive, [...columnsOf(calls), latest(calls)], idsOf(calls)),
    };
    this.#touches = {
      one: ({ id, expiresAt, now }) => this.#changed(this.#sql.touch, [id, expiresAt, now]),
      many: (calls) => {
        const ids = calls.map((call) => call.id);
        const expiries = calls.map((call) => call.expiresAt);
        return this.#wroteEach(many.touch, [ids, expiries, latest(calls)], ids);
      },
    };
    this.#releasingUpdates = {
      bytesOf: rowBytes,
      one: ({ row, now, lease }) =>
        this.#fenced(this.#sql.fencedReleasing.updateIfLive, [...row, now], lease),
      many: async (calls) => {
        const { rows } = await this.#run<{ token: string; wrote: boolean }>(
          many.updateIfLiveReleasing,
          [
            ...columnsOf(calls),
            calls.map((call) => call.lease.key),
            calls.map((call) => call.lease.token),
            latest(calls),
            this.#channel,
          ],
        );
        const freed = new Map(rows.map((row) => [row.token, row.wrote]));
        // Each call settles on its own: a lost lease rejects that call only.
        return calls.map((call) => freed.get(call.lease.token) ?? lostLease);
      },
    };
    // Deletes and fenced writes go alone, but through the queue, so they keep their place
    // among the calls on their id.
    this.#deletes = {
      one: async ({ id, now }) => {
        const { rows } = await this.#run<{ live: boolean }>(this.#sql.delete, [id, now]);
        return rows[0]?.live === true;
      },
    };
    this.#fencedWrites = {
      one: ({ statement, values, lease }) => this.#fenced(statement, values, lease),
    };
    // Page by page, so no statement outlives `queryTimeoutMs` however many rows there are (one
    // DELETE of every row took about 3 s a million); later calls still wait for the whole clear.
    this.#clears = {
      everyId: true,
      one: async () => {
        for (let after = ''; ; ) {
          const { rows } = await this.#run<{ n: number; last: string | null }>(
            this.#sql.clearPage,
            [after, CLEAR_PAGE],
          );
          const page = rows[0];
          if (page === undefined || page.n < CLEAR_PAGE || page.last === null) return;
          after = page.last;
        }
      },
    };
    const listener = new LockListener(
      settings.listenerConfig,
      settings.channel,
      settings.queryTimeoutMs,
    );
    this.locks = new PostgresLocks(db, settings.names, listener, settings.channel, this.#batches);
  }

  /** The node-postgres pool the store runs its statements on. */
  get pool(): pg.Pool {
    return this.#db.pool;
  }

  protected async _get(id: string, now: number): Promise<SessionRecord | undefined> {
    const read = await this.#batches.run(this.#reads, id, { id, now });
    if (read instanceof Unreadable) throw read.error;
    return read;
  }

  protected async _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
    lease: HeldLease | undefined,
  ): Promise<boolean> {
    const { owner } = record;
    const row: RecordRow = [
      id,
      toBuffer(record.data),
      record.expiresAt,
      owner === undefined ? null : Buffer.from(owner),
    ];
    if (lease?.release === true && only === 'present') {
      return this.#batches.run(this.#releasingUpdates, id, { row, now, lease }).then(heldOrLost);
    }
    if (lease !== undefined) {
      const fenced = this.#fencedFor(lease);
      const statement =
        only === 'absent'
          ? fenced.insertUnlessLive
          : only === 'present'
            ? fenced.updateIfLive
            : fenced.upsert;
      return this.#batches.run(this.#fencedWrites, id, {
        statement,
        values: [...row, now],
        lease,
      });
    }
    if (only === 'absent') return this.#batches.run(this.#inserts, id, { row, now });
    if (only === 'present') return this.#batches.run(this.#updates, id, { row, now });
    return this.#batches.run(this.#upserts, id, { row, now });
  }

  protected _touch(
    id: string,
    expiresAt: number,
    now: number,
    lease: HeldLease | undefined,
  ): Promise<boolean> {
    if (lease !== undefined) {
      const statement = this.#fencedFor(lease).touch;
      return this.#batches.run(this.#fencedWrites, id, {
        statement,
        values: [id, expiresAt, now],
        lease,
      });
    }
    return this.#batches.run(this.#touches, id, { id, expiresAt, now });
  }

  protected _delete(id: string, now: number, lease: HeldLease | undefined): Promise<boolean> {
    if (lease !== undefined) {
      const statement = this.#fencedFor(lease).delete;
      return this.#batches.run(this.#fencedWrites, id, { statement, values: [id, now], lease });
    }
    return this.#batches.run(this.#deletes, id, { id, now });
  }

  protected async _sweep(progress: SweepProgress): Promise<SweepResult> {
    for (;;) {
      const batch = progress.nextBatchSize(SWEEP_BATCH);
      if (batch === 0) break;
      const result = await this.#run(this.#sql.sweepBatch, [progress.now, batch]);
      const removed = result.rowCount ?? 0;
      progress.scanned += removed;
      progress.removed += removed;
      if (removed < batch) break;
      await yieldToEventLoop();
    }
    // Rows whose expires_at was set to 'Infinity' or 'NaN' by hand: corrupt, so never live, and swept after
    // the expired ones.
    for (;;) {
      const batch = progress.nextBatchSize(SWEEP_BATCH);
      if (batch === 0) break;
      const removed = (await this.#run(this.#sql.sweepCorrupt, [batch])).rowCount ?? 0;
      progress.scanned += removed;
      progress.removed += removed;
      if (removed < batch) break;
      await yieldToEventLoop();
    }
    // A short batch is not the end: it passes rows other transactions hold (SKIP LOCKED),
    // which stay expired and stored. A plain read, which waits for no row lock, tells.
    let done = false;
    if (!progress.signal?.aborted) {
      const { rows } = await this.#run<{ any: boolean }>(this.#sql.anyExpired, [progress.now]);
      done = rows[0]?.any === false;
    }
    if (done) {
      // Leases end by the real clock, whatever `now` the sweep was given.
      await this.#run(this.#sql.dropExpiredLeases, [Date.now(), LEASE_SWEEP_BATCH]);
    }
    return progress.result(done);
  }

  protected async _count(now: number): Promise<number> {
    const { rows } = await this.#run<{ count: number }>(this.#sql.count, [now]);
    return rows[0]?.count ?? 0;
  }

  protected async *_ids(now: number): AsyncIterable<string> {
    let after = '';
    for (;;) {
      // A keyset cursor over the primary key: no connection stays checked out between pages.
      const { rows } = await this.#run<{ id: string }>(this.#sql.idsPage, [
        after,
        now,
        IDS_PAGE_SIZE,
      ]);
      for (const row of rows) yield row.id;
      const last = rows[rows.length - 1];
      if (rows.length < IDS_PAGE_SIZE || last === undefined) return;
      after = last.id;
    }
  }

  protected override async _ownedBy(owner: string, now: number): Promise<OwnedSession[]> {
    const { rows } = await this.#run<StoredRow & { id: string }>(this.#sql.ownedBy, [
      Buffer.from(owner),
      now,
    ]);
    // A corrupt row (hand-edited) is left out, so the owner's other sessions are still listed.
    return rows.filter(isReadable).map((row) => ({ id: row.id, record: recordOf(row) }));
  }

  protected _clear(): Promise<void> {
    return this.#batches.run(this.#clears, '', undefined);
  }

  protected async _close(): Promise<void> {
    if (!this.#ownsPool) return;
    await this.#db.pool.end();
    await this.#poolSockets?.closeWithin(this.#queryTimeoutMs);
  }

  #run<R extends pg.QueryResultRow>(
    statement: Statement,
    values: unknown[],
  ): Promise<pg.QueryResult<R>> {
    return this.#db.query<R>(statement.name, statement.text, values);
  }

  async #changed(statement: Statement, values: unknown[]): Promise<boolean> {
    const result = await this.#run(statement, values);
    return result.rowCount === 1;
  }

  /** Runs a batched write that returns the ids it wrote: whether each of `ids` was one. */
  async #wroteEach(statement: Statement, values: unknown[], ids: string[]): Promise<boolean[]> {
    const { rows } = await this.#run<{ id: string }>(statement, values);
    const written = new Set(rows.map((row) => row.id));
    return ids.map((id) => written.has(id));
  }

  #fencedFor(lease: HeldLease): FencedStatements {
    return lease.release === true ? this.#sql.fencedReleasing : this.#sql.fenced;
  }

  /** A fenced write's statement takes the lease after the write's own values, and the channel to NOTIFY when it frees it. */
  async #fenced(statement: Statement, values: unknown[], lease: HeldLease): Promise<boolean> {
    values.push(lease.key, lease.token);
    if (lease.release === true) values.push(this.#channel);
    const { rows } = await this.#run<FencedRow>(statement, values);
    const row = rows[0];
    if (row?.held !== true) throw lockLost();
    return row.wrote === true;
  }
}

/** A batched read's row that failed to decode: only that call rejects, with `error`. */
class Unreadable {
  constructor(readonly error: unknown) {}
}

function recordOrUnreadable(row: StoredRow): SessionRecord | Unreadable {
  try {
    return recordOf(row);
  } catch (error) {
    return new Unreadable(error);
  }
}

/** Stands for a batched fenced write whose lease was gone, so only that call rejects. */
const lostLease = Symbol('lost lease');

function heldOrLost(wrote: boolean | typeof lostLease): boolean {
  if (wrote === lostLease) throw lockLost();
  return wrote;
}

/** The latest `now` of a batch's calls: a record expired for any of them counts as expired. */
function latest(calls: readonly { now: number }[]): number {
  return Math.max(...calls.map((call) => call.now));
}

/** What a write adds to a batch's parameters: its data and owner bytes. */
function rowBytes({ row }: RowWrite): number {
  return row[1].byteLength + (row[3]?.byteLength ?? 0);
}

function idsOf(calls: readonly RowWrite[]): string[] {
  return calls.map((call) => call.row[0]);
}

/** A batch's rows as one array per column, for `unnest`; no owner as an empty bytea (see statements.ts). */
function columnsOf(calls: readonly RowWrite[]): unknown[][] {
  return [
    calls.map((call) => call.row[0]),
    calls.map((call) => call.row[1]),
    calls.map((call) => call.row[2]),
    calls.map((call) => call.row[3] ?? NO_OWNER),
  ];
}

const NO_OWNER = Buffer.alloc(0);

/** Ends the pool `normalizeOptions` made from a connection string; an app's own pool stays open. */
async function endOwnPool(settings: Settings): Promise<void> {
  if (!settings.ownsPool) return;
  await settings.pool.end().catch(() => {});
  await settings.poolSockets?.closeWithin(settings.queryTimeoutMs);
}
