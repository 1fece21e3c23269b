import { createHash } from 'node:crypto';
import { isSessionError, manual, SessionManager } from '@sessile/core';
import { PostgresStore, SCHEMA_VERSION } from '@sessile/postgres';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  admin,
  CONNECTION_STRING,
  claimRead,
  codeOf,
  countStatements,
  downgradeToVersionFive,
  HOUR_MS,
  idOf,
  record,
  textOf,
  useTestSchema,
} from './helpers.js';

const { schema, cleanups, newTable } = useTestSchema('locked');

async function countingStore(table: string) {
  const { pool, statements } = countStatements(2);
  const store = await PostgresStore.open({ pool, schema, table });
  cleanups.push(() => pool.end());
  cleanups.push(() => store.close());
  return { store, statements };
}

describe('a locked request', () => {
  it('costs two statements: claim with read, then the write that releases', async () => {
    const table = newTable('r');
    const { store, statements } = await countingStore(table);
    const manager = new SessionManager({ store, cleanup: manual() });
    const first = await manager.open();
    first.data.n = 1;
    await first.commit();

    let before = statements();
    const changed = await manager.open(first.id);
    expect(changed.data).toEqual({ n: 1 });
    changed.data.n = 2;
    expect(await changed.commit()).toBe('saved');
    expect(statements() - before).toBe(2);

    before = statements();
    const unchanged = await manager.open(first.id);
    expect(unchanged.data).toEqual({ n: 2 });
    expect(await unchanged.commit()).toBe('unchanged');
    expect(statements() - before).toBe(2);

    // Nothing stays held: another store's lock on the session is free at once.
    const lock = await store.locks.acquire(first.id, { waitMs: 0 });
    await lock.release();
    const { rows } = await admin(`SELECT count(*)::int AS n FROM "${schema}"."${table}_locks"`);
    expect(rows).toEqual([{ n: 0 }]);
  });

  it('queued claims with reads share statements, each claim with its own session', async () => {
    const table = newTable('r');
    const { store, statements } = await countingStore(table);
    const ids = Array.from({ length: 60 }, (_, i) => idOf(`s${i}`));
    await Promise.all(ids.slice(0, 40).map((id) => store.set(id, record(id))));
    const before = statements();
    const locked = await Promise.all(
      ids.map((id) => store.locks.acquireAndGet?.(id, { leaseMs: 60_000 })),
    );
    // 60 calls; alone, each would be a statement.
    expect(statements() - before).toBeLessThan(30);
    expect(locked.map((each) => textOf(each?.record?.data))).toEqual([
      ...ids.slice(0, 40),
      ...ids.slice(40).map(() => undefined),
    ]);
    await expect(store.locks.acquire(ids[0] as string, { waitMs: 0 })).rejects.toThrow();
    await Promise.all(locked.map((each) => each?.lock.release()));
  });

  it("a corrupt row (expires_at set to 'NaN' by hand) fails only its own queued claim, whose lease is freed", async () => {
    const table = newTable('r');
    const { store } = await countingStore(table);
    const ids = Array.from({ length: 40 }, (_, i) => idOf(`c${i}`));
    await Promise.all(ids.map((id) => store.set(id, record(id))));
    const corrupt = ids[7] as string;
    await admin(`UPDATE "${schema}"."${table}" SET expires_at = 'NaN' WHERE id = $1`, [corrupt]);
    const outcomes = await Promise.allSettled(
      ids.map((id) => store.locks.acquireAndGet?.(id, { leaseMs: 60_000 })),
    );
    expect(outcomes.map((each) => each.status)).toEqual(
      ids.map((id) => (id === corrupt ? 'rejected' : 'fulfilled')),
    );
    const failure = outcomes[7] as PromiseRejectedResult;
    expect(isSessionError(failure.reason, 'ERR_CORRUPT_RECORD')).toBe(true);
    expect(
      outcomes.map((each) => (each.status === 'fulfilled' ? textOf(each.value?.record?.data) : 0)),
    ).toEqual(ids.map((id) => (id === corrupt ? 0 : id)));
    // Its lease was given back, so the next acquire need not wait for it to end.
    const again = await store.locks.acquire(corrupt, { waitMs: 0 });
    await again.release();
    await Promise.all(
      outcomes.map((each) =>
        each.status === 'fulfilled' ? each.value?.lock.release() : undefined,
      ),
    );
  });

  it('queued releasing updates share statements; a lost lease rejects only its own call', async () => {
    const table = newTable('r');
    const { store, statements } = await countingStore(table);
    const ids = Array.from({ length: 40 }, (_, i) => idOf(`u${i}`));
    await Promise.all(ids.map((id) => store.set(id, record('old'))));
    const locks = await Promise.all(ids.map((id) => store.locks.acquire(id, { leaseMs: 60_000 })));
    const lost = locks[7];
    await admin(`DELETE FROM "${schema}"."${table}_locks" WHERE token = $1`, [lost?.token]);
    const before = statements();
    const outcomes = await Promise.all(
      ids.map((id, i) =>
        codeOf(store.set(id, record('new'), { lock: locks[i], only: 'present', release: true })),
      ),
    );
    // 40 calls; alone, each would be a statement.
    expect(statements() - before).toBeLessThan(20);
    expect(outcomes).toEqual(ids.map((_, i) => (i === 7 ? 'ERR_LOCK_LOST' : 'resolved')));
    const read = await Promise.all(ids.map((id) => store.get(id)));
    expect(read.map((each) => textOf(each?.data))).toEqual(
      ids.map((_, i) => (i === 7 ? 'old' : 'new')),
    );
    const { rows } = await admin(`SELECT count(*)::int AS n FROM "${schema}"."${table}_locks"`);
    expect(rows).toEqual([{ n: 0 }]);
    await Promise.all(locks.map((lock) => lock.release().catch(() => {})));
  });

  it('two stores on one table never lose an increment, each reading the other’s last write', async () => {
    const table = newTable('r');
    const stores = [await countingStore(table), await countingStore(table)].map((s) => s.store);
    const id = idOf('shared');
    await stores[0]?.set(id, record('0'));
    const increment = async (store: PostgresStore) => {
      const { lock, record: read } = await (store.locks.acquireAndGet?.(id, {
        waitMs: 120_000,
        leaseMs: 60_000,
      }) ?? Promise.reject(new Error('PostgresStore offers acquireAndGet')));
      const n = Number(textOf(read?.data));
      await store.set(id, record(String(n + 1)), { lock, only: 'present', release: true });
      await lock.release();
    };
    await Promise.all(
      Array.from({ length: 60 }, (_, i) => increment(stores[i % 2] as PostgresStore)),
    );
    expect(textOf((await stores[0]?.get(id))?.data)).toBe('60');
  }, 120_000);

  it('a releasing write under a lost lease writes nothing and leaves the new holder its lease', async () => {
    const table = newTable('r');
    const { store } = await countingStore(table);
    const id = idOf('taken-over');
    await store.set(id, record('kept'));
    const old = await store.locks.acquire(id, { leaseMs: 100 });
    const next = await store.locks.acquireAndGet?.(id, { waitMs: 10_000, leaseMs: 60_000 });
    expect(textOf(next?.record?.data)).toBe('kept');
    expect(await codeOf(store.set(id, record('stale'), { lock: old, release: true }))).toBe(
      'ERR_LOCK_LOST',
    );
    const { rows } = await admin(`SELECT token FROM "${schema}"."${table}_locks"`);
    expect(rows).toEqual([{ token: next?.lock.token }]);
    if (next === undefined) throw new Error('PostgresStore offers acquireAndGet');
    expect(await store.touch(id, Date.now() + HOUR_MS, { lock: next.lock, release: true })).toBe(
      true,
    );
    await next.lock.release();
    expect((await admin(`SELECT token FROM "${schema}"."${table}_locks"`)).rows).toEqual([]);
  });
});

/** What a release NOTIFYs for `id`: its SHA-256, since any role of the database may LISTEN. */
function digestOf(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}

/** The store's NOTIFY channel for `table`, as the store names it. */
function channelOf(table: string): string {
  const digest = createHash('sha256').update(`${schema}.${table}`).digest('hex');
  return `sessile_${digest.slice(0, 16)}`;
}

/**
 * A client LISTENing on the table's channel. `heard()` sends a marker NOTIFY of its own and
 * resolves, once the marker is back, with every key notified before it.
 */
async function listenTo(table: string) {
  const channel = channelOf(table);
  const client = new pg.Client({ connectionString: CONNECTION_STRING });
  await client.connect();
  cleanups.push(() => client.end());
  const payloads: string[] = [];
  let marker: (() => void) | undefined;
  client.on('notification', (message) => {
    if (message.payload === 'marker') marker?.();
    else if (message.payload !== undefined) payloads.push(message.payload);
  });
  await client.query(`LISTEN "${channel}"`);
  return {
    async heard(): Promise<string[]> {
      const back = new Promise<void>((resolve) => {
        marker = resolve;
      });
      await client.query('SELECT pg_notify($1, $2)', [channel, 'marker']);
      await back;
      return payloads.splice(0);
    },
  };
}

async function waitedFlag(table: string, id: string): Promise<boolean | undefined> {
  const { rows } = await admin<{ waited: boolean }>(
    `SELECT waited FROM "${schema}"."${table}_locks" WHERE id = $1`,
    [id],
  );
  return rows[0]?.waited;
}

describe('release notifications', () => {
  it('a release nobody waited for sends no NOTIFY; one another store waited for wakes it', async () => {
    const table = newTable('n');
    const { store } = await countingStore(table);
    const { store: other } = await countingStore(table);
    const listener = await listenTo(table);
    const quiet = [idOf('q1'), idOf('q2'), idOf('q3')];
    for (const id of quiet) await store.set(id, record('v'));

    // A commit that saves, one that touches, and a plain release: none had a waiter.
    const saved = await store.locks.acquire(quiet[0] as string);
    await store.set(quiet[0] as string, record('w'), {
      lock: saved,
      only: 'present',
      release: true,
    });
    await saved.release();
    const touched = await store.locks.acquire(quiet[1] as string);
    await store.touch(quiet[1] as string, Date.now() + HOUR_MS, { lock: touched, release: true });
    await touched.release();
    const plain = await store.locks.acquire(quiet[2] as string);
    await plain.release();
    expect(await listener.heard()).toEqual([]);

    for (const release of ['write', 'plain'] as const) {
      const id = idOf(release);
      await store.set(id, record('before'));
      const held = await store.locks.acquire(id, { leaseMs: 60_000 });
      expect(await waitedFlag(table, id)).toBe(false);
      const waiting = other.locks.acquireAndGet?.(id, { waitMs: 60_000, leaseMs: 60_000 });
      // The other store's refused claim marks the lease before its release.
      while ((await waitedFlag(table, id)) !== true) await new Promise((r) => setTimeout(r, 5));
      if (release === 'write') {
        await store.set(id, record('after'), { lock: held, only: 'present', release: true });
      }
      await held.release();
      const next = await waiting;
      expect(textOf(next?.record?.data)).toBe(release === 'write' ? 'after' : 'before');
      expect(await listener.heard()).toEqual([digestOf(id)]);
      await next?.lock.release();
    }
  }, 90_000);

  it('a release names its session in the NOTIFY by digest, never by id, and still wakes the waiter', async () => {
    // NOTIFY has no privileges: a role that may not read the sessions table may LISTEN.
    const table = newTable('n');
    const { store } = await countingStore(table);
    const { store: other } = await countingStore(table);
    const listener = await listenTo(table);
    const id = idOf('bearer');
    await store.set(id, record('mine'));
    for (const release of ['write', 'plain'] as const) {
      const held = await store.locks.acquire(id, { leaseMs: 60_000 });
      const waiting = other.locks.acquireAndGet?.(id, { waitMs: 60_000, leaseMs: 60_000 });
      while ((await waitedFlag(table, id)) !== true) await new Promise((r) => setTimeout(r, 5));
      if (release === 'write') {
        await store.set(id, record('mine'), { lock: held, only: 'present', release: true });
      }
      await held.release();
      const next = await waiting;
      expect(textOf(next?.record?.data)).toBe('mine');
      await next?.lock.release();
      const heard = await listener.heard();
      expect(heard).toEqual([digestOf(id)]);
      expect(heard.join(' ')).not.toContain(id);
    }
  }, 60_000);

  it('batched releases notify only the keys another store waited for', async () => {
    const table = newTable('n');
    const { store, statements } = await countingStore(table);
    const { store: other } = await countingStore(table);
    const listener = await listenTo(table);
    for (const release of ['write', 'plain'] as const) {
      const ids = Array.from({ length: 12 }, (_, i) => idOf(`${release}${i}`));
      await Promise.all(ids.map((id) => store.set(id, record('before'))));
      const locks = await Promise.all(
        ids.map((id) => store.locks.acquire(id, { leaseMs: 60_000 })),
      );
      const wanted = ids[11] as string;
      const waiting = other.locks.acquire(wanted, { waitMs: 60_000, leaseMs: 60_000 });
      while ((await waitedFlag(table, wanted)) !== true) await new Promise((r) => setTimeout(r, 5));
      const before = statements();
      await Promise.all(
        ids.map(async (id, i) => {
          const lock = locks[i];
          if (release === 'write') {
            await store.set(id, record('after'), { lock, only: 'present', release: true });
          }
          await lock?.release();
        }),
      );
      // 12 releases over a pool of 2: most went out batched.
      expect(statements() - before).toBeLessThan(12);
      await (await waiting).release();
      expect(await listener.heard()).toEqual([digestOf(wanted)]);
    }
  }, 90_000);

  it("a lease row whose expires_at was set to 'NaN' by hand has ended: the next acquire takes it", async () => {
    const table = newTable('n');
    const { store: holder } = await countingStore(table);
    const { store } = await countingStore(table);
    const [plain, read] = [idOf('plain'), idOf('read')];
    await store.set(read, record('kept'));
    for (const id of [plain, read]) {
      await holder.locks.acquire(id, { leaseMs: 60_000 });
      await admin(`UPDATE "${schema}"."${table}_locks" SET expires_at = 'NaN' WHERE id = $1`, [id]);
    }
    const taken = await store.locks.acquire(plain, { waitMs: 0 });
    await taken.release();
    const locked = await store.locks.acquireAndGet?.(read, { waitMs: 0 });
    expect(textOf(locked?.record?.data)).toBe('kept');
    await locked?.lock.release();
  });

  it('migrates a version 4 table by replacing its claim function, so a NaN lease row ends', async () => {
    const table = newTable('m');
    const { store } = await countingStore(table);
    const id = idOf('kept');
    await store.set(id, record('kept'));
    await admin(`UPDATE "${schema}".sessile_versions SET version = 4 WHERE table_name = $1`, [
      table,
    ]);
    const { store: migrated } = await countingStore(table);
    expect(
      (
        await admin(`SELECT version FROM "${schema}".sessile_versions WHERE table_name = $1`, [
          table,
        ])
      ).rows,
    ).toEqual([{ version: SCHEMA_VERSION }]);
    await store.locks.acquire(id, { leaseMs: 60_000 });
    await admin(`UPDATE "${schema}"."${table}_locks" SET expires_at = 'NaN' WHERE id = $1`, [id]);
    const locked = await migrated.locks.acquireAndGet?.(id, { waitMs: 0 });
    expect(textOf(locked?.record?.data)).toBe('kept');
    await locked?.lock.release();
  });

  it('migrates a version 3 table by adding the waited flag and replacing its claim function', async () => {
    const table = newTable('m');
    const { store } = await countingStore(table);
    const id = idOf('kept');
    await store.set(id, record('kept'));
    await admin(`ALTER TABLE "${schema}"."${table}_locks" DROP COLUMN waited`);
    await admin(`UPDATE "${schema}".sessile_versions SET version = 3 WHERE table_name = $1`, [
      table,
    ]);
    const { store: migrated } = await countingStore(table);
    const { rows } = await admin(
      `SELECT version FROM "${schema}".sessile_versions WHERE table_name = $1`,
      [table],
    );
    expect(rows).toEqual([{ version: SCHEMA_VERSION }]);
    const locked = await migrated.locks.acquireAndGet?.(id, { leaseMs: 60_000 });
    expect(textOf(locked?.record?.data)).toBe('kept');
    expect(await codeOf(store.locks.acquire(id, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
    expect(await waitedFlag(table, id)).toBe(true);
    await locked?.lock.release();
  });
});

/** The lease row of `id`: who holds it, until when, and whether another claim asked for it. */
async function leaseOf(table: string, id: string) {
  const { rows } = await admin<{ token: string; expires_at: number; waited: boolean }>(
    `SELECT token, expires_at, waited FROM "${schema}"."${table}_locks" WHERE id = $1`,
    [id],
  );
  return rows;
}

describe('a claim-and-read sent again with its token', () => {
  it('takes the lease its token holds and reads the session, even after another claim asked for it', async () => {
    const table = newTable('c');
    const { store } = await countingStore(table);
    const [alone, asked] = [idOf('alone'), idOf('asked')];
    await store.set(alone, record('alone'));
    await store.set(asked, record('asked'));
    // A first send whose answer was lost, then the same claim sent again, twice.
    for (let send = 0; send < 3; send++) {
      expect(await claimRead(schema, table, alone, 'lost-answer')).toEqual([
        { token: 'lost-answer', data: 'alone' },
      ]);
    }
    // Nobody else asked, so its release sends no NOTIFY.
    expect(await waitedFlag(table, alone)).toBe(false);
    expect(await claimRead(schema, table, asked, 'first')).toEqual([
      { token: 'first', data: 'asked' },
    ]);
    const [lease] = await leaseOf(table, asked);
    // Another process asks between the sends: refused, and the lease is marked waited for.
    expect(await claimRead(schema, table, asked, 'other')).toEqual([]);
    expect(await claimRead(schema, table, asked, 'first')).toEqual([
      { token: 'first', data: 'asked' },
    ]);
    // Still the one lease of the first send, so its release wakes the other process.
    expect(await leaseOf(table, asked)).toEqual([
      { token: 'first', expires_at: lease?.expires_at, waited: true },
    ]);
    expect(await codeOf(store.locks.acquire(asked, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
  });

  it('is taken on a version 5 table once open has replaced its claim-and-read function', async () => {
    const table = newTable('m');
    const { store } = await countingStore(table);
    const [before, after] = [idOf('before'), idOf('after')];
    await store.set(before, record('before'));
    await store.set(after, record('after'));
    await downgradeToVersionFive(schema, table);
    // The version 5 function refuses its own lease once another claim asked for it.
    expect(await claimRead(schema, table, before, 'first')).toHaveLength(1);
    expect(await claimRead(schema, table, before, 'other')).toEqual([]);
    expect(await claimRead(schema, table, before, 'first')).toEqual([]);

    const { store: upgraded } = await countingStore(table);
    const { rows } = await admin(
      `SELECT version FROM "${schema}".sessile_versions WHERE table_name = $1`,
      [table],
    );
    expect(rows).toEqual([{ version: SCHEMA_VERSION }]);
    expect(await claimRead(schema, table, after, 'first')).toHaveLength(1);
    expect(await claimRead(schema, table, after, 'other')).toEqual([]);
    expect(await claimRead(schema, table, after, 'first')).toEqual([
      { token: 'first', data: 'after' },
    ]);
    // The sessions and leases are as they were, for the store opened before too.
    const locked = await store.locks.acquireAndGet?.(idOf('free'), { waitMs: 0 });
    await locked?.lock.release();
    expect(textOf((await upgraded.get(before))?.data)).toBe('before');
    expect(await codeOf(upgraded.locks.acquire(before, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
  });
});
