import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { isSessionError, type SessionLock, type SessionRecord } from '@sessile/core';
import { PostgresStore, type PostgresStoreOptions } from '@sessile/postgres';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { lostConnection } from '../src/database.js';
import {
  admin,
  CONNECTION_STRING,
  codeOf,
  faultyRelay,
  HOUR_MS,
  idOf,
  record,
  textOf,
  useTestSchema,
} from './helpers.js';

const { schema, cleanups, newTable } = useTestSchema('failure');

async function openStore(options: Partial<PostgresStoreOptions> = {}): Promise<PostgresStore> {
  const store = await PostgresStore.open({
    connectionString: CONNECTION_STRING,
    schema,
    table: newTable(),
    ...options,
  });
  cleanups.push(() => store.close());
  return store;
}

/** Ends every server connection of `applicationName`, as a failover or an admin would. */
async function terminateBackends(applicationName: string): Promise<number> {
  const { rows } = await admin<{ ended: boolean }>(
    `SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE application_name = $1`,
    [applicationName],
  );
  return rows.filter((row) => row.ended).length;
}

/** Server connections of `applicationName` waiting for a lock (a table, a row, an advisory lock). */
async function waitingBackends(applicationName: string): Promise<number> {
  const { rows } = await admin<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
     WHERE application_name = $1 AND wait_event_type = 'Lock'`,
    [applicationName],
  );
  return rows[0]?.n ?? 0;
}

/** A lock on `id` by `locks.acquire` or `locks.acquireAndGet`, waiting up to 3 s. */
async function acquireFor(
  store: PostgresStore,
  how: 'acquire' | 'acquireAndGet',
  id: string,
): Promise<{ lock: SessionLock; record: SessionRecord | undefined }> {
  // Shorter than the lease, so a lease left to nobody fails the wait with ERR_LOCK_TIMEOUT.
  const options = { waitMs: 3_000, leaseMs: 60_000 };
  if (how === 'acquire') return { lock: await store.locks.acquire(id, options), record: undefined };
  const acquireAndGet = store.locks.acquireAndGet;
  if (acquireAndGet === undefined) throw new Error('PostgresStore offers acquireAndGet');
  return acquireAndGet.call(store.locks, id, options);
}

/** A store on `table` whose connections go through a `faultyRelay`, named `applicationName`. */
async function storeBehindRelay(
  table: string,
  options: Partial<PostgresStoreOptions> = {},
): Promise<{
  store: PostgresStore;
  relay: Awaited<ReturnType<typeof faultyRelay>>;
  applicationName: string;
}> {
  const relay = await faultyRelay();
  cleanups.push(() => relay.close());
  const applicationName = `sessile_relay_${randomBytes(4).toString('hex')}`;
  const url = relay.url();
  url.searchParams.set('application_name', applicationName);
  const store = await openStore({ connectionString: url.href, table, ...options });
  return { store, relay, applicationName };
}

/** Resolves once the connections of `applicationName` include a LISTEN connection. */
async function listening(applicationName: string): Promise<void> {
  for (;;) {
    const { rows } = await admin(
      `SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN %'`,
      [applicationName],
    );
    if (rows.length > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface Traffic {
  /** The last data each id was acknowledged with. */
  acknowledged: Map<string, string>;
  failures: Map<string, number>;
}

/** Writers and readers on their own ids, each op counted; `interrupt` runs once, midway. */
async function runTraffic(
  store: PostgresStore,
  operations: number,
  interrupt: () => Promise<void>,
): Promise<Traffic> {
  const traffic: Traffic = { acknowledged: new Map(), failures: new Map() };
  let done = 0;
  let interrupting: Promise<void> | undefined;
  const worker = async (w: number) => {
    const ids = Array.from({ length: 5 }, (_, i) => idOf(`w${w}i${i}`));
    for (let n = 0; done < operations; n++) {
      done++;
      if (done === Math.floor(operations / 3)) interrupting = interrupt();
      const id = ids[n % ids.length] as string;
      const data = `w${w} n${n}`;
      try {
        if (n % 3 === 2) await store.get(id);
        else {
          await store.set(id, record(data));
          traffic.acknowledged.set(id, data);
        }
      } catch (error) {
        const code = isSessionError(error) ? error.code : String(error);
        traffic.failures.set(code, (traffic.failures.get(code) ?? 0) + 1);
        // An unacknowledged write may or may not have landed; the id's next write settles it.
        traffic.acknowledged.delete(id);
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
  await interrupting;
  return traffic;
}

/**
 * A connection of its own holding `table` in ACCESS EXCLUSIVE mode, so every query of the store
 * on it waits; `ROLLBACK` on the returned client lets them through.
 */
async function lockTable(table: string): Promise<pg.Client> {
  const blocker = new pg.Client({ connectionString: CONNECTION_STRING });
  await blocker.connect();
  cleanups.push(() => blocker.end());
  await blocker.query('BEGIN');
  await blocker.query(`LOCK TABLE "${schema}"."${table}" IN ACCESS EXCLUSIVE MODE`);
  return blocker;
}

/**
 * A connection of its own holding the schema's migration lock, as a sibling instance in the
 * middle of its migration does; `ROLLBACK` on the returned client lets `open()` through.
 */
async function holdSchemaMigration(): Promise<pg.Client> {
  const holder = new pg.Client({ connectionString: CONNECTION_STRING });
  await holder.connect();
  cleanups.push(() => holder.end());
  await holder.query('BEGIN');
  await holder.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`sessile schema ${schema}`]);
  return holder;
}

async function expectAcknowledgedWrites(store: PostgresStore, traffic: Traffic): Promise<void> {
  for (const [id, data] of traffic.acknowledged) {
    expect(textOf((await store.get(id))?.data)).toBe(data);
  }
}

/** The store works again, without reopening: reads, writes and locks across two stores. */
async function expectRecovered(store: PostgresStore, peer: PostgresStore): Promise<void> {
  const id = idOf('after');
  expect(await store.set(id, record('after'))).toBe(true);
  expect(textOf((await peer.get(id))?.data)).toBe('after');
  const lock = await store.locks.acquire(id, { leaseMs: 30_000 });
  expect(await codeOf(peer.locks.acquire(id, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
  expect(await store.set(id, record('locked'), { lock })).toBe(true);
  await lock.release();
  const next = await peer.locks.acquire(id, { waitMs: 10_000 });
  await next.release();
}

describe('failure', () => {
  it("a lock table emptied by a crash fails the holders' fenced writes with ERR_LOCK_LOST", async () => {
    const table = newTable();
    const store = await openStore({ table });
    const id = idOf('crash');
    await store.set(id, record('before'));
    const lock = await store.locks.acquire(id, { leaseMs: 60_000 });
    // What crash recovery does to an UNLOGGED table.
    await admin(`TRUNCATE "${schema}"."${table}_locks"`);
    expect(await codeOf(store.set(id, record('after'), { lock }))).toBe('ERR_LOCK_LOST');
    expect(await codeOf(store.touch(id, Date.now() + 2 * HOUR_MS, { lock }))).toBe('ERR_LOCK_LOST');
    expect(await codeOf(store.delete(id, { lock }))).toBe('ERR_LOCK_LOST');
    expect(textOf((await store.get(id))?.data)).toBe('before');
  });

  it('backends killed during traffic fail those operations with ERR_STORE_IO; the store recovers and no acknowledged write is lost', async () => {
    const applicationName = `sessile_kill_${randomBytes(4).toString('hex')}`;
    const connectionString = `${CONNECTION_STRING}?application_name=${applicationName}`;
    const table = newTable();
    const store = await openStore({ connectionString, table });
    const peer = await openStore({ table });
    // A waiter keeps the store's LISTEN connection open, so the kill ends it too.
    const held = await peer.locks.acquire(idOf('held'), { leaseMs: 60_000 });
    // Its claims run during the kill too, and are sent again on a fresh connection.
    const waiting = store.locks.acquire(held.id, { waitMs: 60_000 }).then(
      (lock) => lock,
      (error: unknown) => error,
    );
    let ended = 0;
    const traffic = await runTraffic(store, 3000, async () => {
      for (let i = 0; i < 3; i++) {
        ended += await terminateBackends(applicationName);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    });
    expect(ended).toBeGreaterThan(0);
    expect([...traffic.failures.keys()].filter((code) => code !== 'ERR_STORE_IO')).toEqual([]);
    await held.release();
    const woken = await waiting;
    expect(isSessionError(woken) ? woken.code : 'locked').toBe('locked');
    await (woken as SessionLock).release();
    await expectAcknowledgedWrites(store, traffic);
    await expectRecovered(store, peer);
  }, 60_000);

  for (const how of ['acquire', 'acquireAndGet'] as const) {
    it(`a waiting ${how} outlives a brief network drop: it gets the lock when the holder releases, instead of ERR_STORE_IO`, async () => {
      const table = newTable();
      const { store, relay, applicationName } = await storeBehindRelay(table);
      const peer = await openStore({ table });
      // Idle pooled connections, which the drop kills unseen until one is used.
      await Promise.all(Array.from({ length: 5 }, (_, i) => store.get(idOf(`warm${i}`))));
      const id = idOf('dropped');
      const held = await peer.locks.acquire(id, { leaseMs: 60_000 });
      const waiting = acquireFor(store, how, id);
      await listening(applicationName);
      relay.cut();
      await peer.set(id, record('written by the holder'), { lock: held });
      await held.release();
      const { lock, record: read } = await waiting;
      if (how === 'acquireAndGet') expect(textOf(read?.data)).toBe('written by the holder');
      expect(await codeOf(peer.locks.acquire(id, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
      await lock.release();
      await (await peer.locks.acquire(id, { waitMs: 0 })).release();
    });

    it(`a waiting ${how} whose claim committed but whose answer was lost holds the lock, not a lease held by nobody`, async () => {
      const table = newTable();
      const { store, relay, applicationName } = await storeBehindRelay(table);
      const peer = await openStore({ table });
      const id = idOf('unanswered');
      const held = await peer.locks.acquire(id, { leaseMs: 60_000 });
      await peer.set(id, record('written by the holder'), { lock: held });
      const waiting = acquireFor(store, how, id);
      // Its first claim refused, the acquire waits (and listens): only a waiting claim is sent
      // again after a lost connection, so the claim that queues below must not be the first.
      await listening(applicationName);
      // A release that has not committed yet: the waiter's next claim queues behind it.
      const releaser = new pg.Client({ connectionString: CONNECTION_STRING });
      await releaser.connect();
      cleanups.push(() => releaser.end());
      await releaser.query('BEGIN');
      await releaser.query(`DELETE FROM "${schema}"."${table}_locks" WHERE id = $1`, [id]);
      while ((await waitingBackends(applicationName)) === 0) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      // The claim takes the key once the release commits, and its answer never arrives.
      relay.swallowReplies();
      await releaser.query('COMMIT');
      let taken: string | undefined;
      while (taken === undefined) {
        const { rows } = await admin<{ token: string }>(
          `SELECT token FROM "${schema}"."${table}_locks" WHERE id = $1`,
          [id],
        );
        taken = rows[0]?.token;
      }
      // Another host asks meanwhile, so the lease is marked waited for.
      const third = await openStore({ table });
      expect(await codeOf(third.locks.acquire(id, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
      relay.cut();
      const { lock, record: read } = await waiting;
      expect(lock.token).toBe(taken);
      if (how === 'acquireAndGet') expect(textOf(read?.data)).toBe('written by the holder');
      await lock.release();
      // The peer's lease, freed under it by hand, is lost to it.
      expect(await codeOf(held.release())).toBe('ERR_LOCK_LOST');
      // Nothing is left holding the key.
      await (await peer.locks.acquire(id, { waitMs: 0 })).release();
    });
  }

  it('a waiting acquire still fails with ERR_STORE_IO when the server stays unreachable for queryTimeoutMs', async () => {
    const table = newTable();
    const { store, relay, applicationName } = await storeBehindRelay(table, {
      queryTimeoutMs: 500,
    });
    const peer = await openStore({ table });
    const id = idOf('unreachable');
    const held = await peer.locks.acquire(id, { leaseMs: 60_000 });
    const waiting = codeOf(store.locks.acquire(id, { waitMs: 60_000 }));
    await listening(applicationName);
    await relay.close();
    expect(await waiting).toBe('ERR_STORE_IO');
    await held.release();
  });

  it('close() ends a waiting acquire whose claims are being sent again, without waiting out queryTimeoutMs', async () => {
    const table = newTable();
    const { store, relay, applicationName } = await storeBehindRelay(table, {
      queryTimeoutMs: 60_000,
    });
    const peer = await openStore({ table });
    const id = idOf('closing');
    const held = await peer.locks.acquire(id, { leaseMs: 60_000 });
    const waiting = codeOf(store.locks.acquire(id, { waitMs: 60_000 }));
    await listening(applicationName);
    await relay.close();
    // The lost LISTEN connection wakes the waiter, whose claims then meet a refused connection.
    await new Promise((resolve) => setTimeout(resolve, 200));
    // Within the test's timeout, far shorter than queryTimeoutMs.
    await store.close();
    expect(await waiting).toBe('ERR_STORE_CLOSED');
    await held.release();
  });

  it('an operation the server does not answer fails with ERR_STORE_IO after queryTimeoutMs, and the next one succeeds', async () => {
    const table = newTable();
    const store = await openStore({ table, queryTimeoutMs: 300 });
    const id = idOf('stuck');
    await store.set(id, record('before'));
    const blocker = await lockTable(table);
    try {
      const failure = await store.get(id).catch((error: Error) => error);
      expect(failure).toMatchObject({ code: 'ERR_STORE_IO' });
      // Named by what it did, to which table and where, not by its prepared statement's
      // internal name.
      expect((failure as Error).message).toMatch(
        new RegExp(`^get of "${schema}"\\."${table}" on PostgreSQL 127\\.0\\.0\\.1:5432/`),
      );
      expect((failure as Error).message).not.toMatch(/sessile_[0-9a-f]{16}/);
      expect(await codeOf(store.set(id, record('during')))).toBe('ERR_STORE_IO');
    } finally {
      await blocker.query('ROLLBACK');
    }
    expect(await store.set(id, record('after'))).toBe(true);
    expect(textOf((await store.get(id))?.data)).toBe('after');
  });

  it('a statement the store gave up on is cancelled by the server too: no backend is left waiting, and the write never lands', async () => {
    const queryTimeoutMs = 300;
    const applicationName = `sessile_gave_up_${randomBytes(4).toString('hex')}`;
    const table = newTable();
    const store = await openStore({
      connectionString: `${CONNECTION_STRING}?application_name=${applicationName}`,
      table,
      queryTimeoutMs,
    });
    const id = idOf('late');
    await store.set(id, record('before'));
    const blocker = await lockTable(table);
    try {
      expect(await codeOf(store.set(id, record('late')))).toBe('ERR_STORE_IO');
      expect(await codeOf(store.delete(idOf('other')))).toBe('ERR_STORE_IO');
      // Ten times queryTimeoutMs: a backend still waiting then waits as long as the lock does,
      // and every retry during a long stall would leave one more, up to max_connections.
      await new Promise((resolve) => setTimeout(resolve, 10 * queryTimeoutMs));
      expect(await waitingBackends(applicationName)).toBe(0);
    } finally {
      await blocker.query('ROLLBACK');
    }
    expect(await store.set(idOf('after'), record('after'))).toBe(true);
    expect(textOf((await store.get(id))?.data)).toBe('before');
  });

  it('open() whose connection is killed while it waits fails with ERR_STORE_IO and leaves no unhandled error', async () => {
    const applicationName = `sessile_open_kill_${randomBytes(4).toString('hex')}`;
    const pool = new pg.Pool({
      connectionString: `${CONNECTION_STRING}?application_name=${applicationName}`,
    });
    pool.on('error', () => {});
    cleanups.push(() => pool.end());
    // A sibling's migration holds the schema; this open waits for it on a checked-out connection.
    const holder = await holdSchemaMigration();
    const table = newTable();
    const opening = codeOf(PostgresStore.open({ pool, schema, table }));
    while ((await waitingBackends(applicationName)) === 0) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(await terminateBackends(applicationName)).toBe(1);
    expect(await opening).toBe('ERR_STORE_IO');
    await holder.query('ROLLBACK');
    const store = await PostgresStore.open({ pool, schema, table });
    await store.close();
  });

  it('calls queued behind a stalled server each fail with ERR_STORE_IO within queryTimeoutMs of being made', async () => {
    const queryTimeoutMs = 300;
    const table = newTable();
    const store = await openStore({ table, poolSize: 1, queryTimeoutMs });
    const id = idOf('hot');
    await store.set(id, record('before'));
    const blocker = await lockTable(table);
    const calls = Promise.all(Array.from({ length: 20 }, () => codeOf(store.get(id))));
    // Held ten times longer than any call may wait; a call still queued then would be answered.
    await Promise.race([calls, new Promise((resolve) => setTimeout(resolve, 10 * queryTimeoutMs))]);
    await blocker.query('ROLLBACK');
    expect(await calls).toEqual(Array.from({ length: 20 }, () => 'ERR_STORE_IO'));
    expect(textOf((await store.get(id))?.data)).toBe('before');
  });

  it("open() with the app's pool fails with ERR_STORE_IO within queryTimeoutMs while the schema is locked", async () => {
    const pool = new pg.Pool({ connectionString: CONNECTION_STRING });
    pool.on('error', () => {});
    cleanups.push(() => pool.end());
    // What a sibling instance stuck in its migration holds.
    const holder = await holdSchemaMigration();
    const table = newTable();
    const opening = codeOf(PostgresStore.open({ pool, schema, table, queryTimeoutMs: 300 }));
    const outcome = await Promise.race([
      opening,
      new Promise((resolve) => setTimeout(() => resolve('still pending'), 10_000)),
    ]);
    await holder.query('ROLLBACK');
    expect(outcome).toBe('ERR_STORE_IO');
    const store = await PostgresStore.open({ pool, schema, table, queryTimeoutMs: 300 });
    await store.close();
  });

  it('a server that accepts connections but never answers fails open() with ERR_STORE_IO', async () => {
    const { createServer } = await import('node:net');
    const sockets = new Set<import('node:net').Socket>();
    const server = createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          for (const socket of sockets) socket.destroy();
          server.close(() => resolve());
        }),
    );
    const address = server.address() as import('node:net').AddressInfo;
    const open = PostgresStore.open({
      connectionString: `postgres://postgres@127.0.0.1:${address.port}/test`,
      queryTimeoutMs: 300,
    });
    expect(await codeOf(open)).toBe('ERR_STORE_IO');
    await expect(open).rejects.toThrow(`127.0.0.1:${address.port}/test`);
  });

  it('close() ends when the server stopped answering, a LISTEN connection open', async () => {
    const relay = await faultyRelay();
    cleanups.push(() => relay.close());
    const applicationName = `relay-${randomBytes(4).toString('hex')}`;
    const url = relay.url();
    url.searchParams.set('application_name', applicationName);
    const table = newTable();
    const store = await openStore({ connectionString: url.href, table, queryTimeoutMs: 300 });
    const otherHost = await openStore({ table });
    const id = idOf('partitioned');
    const held = await otherHost.locks.acquire(id, { leaseMs: 60_000 });
    const waiting = codeOf(store.locks.acquire(id, { waitMs: 60_000 }));
    // The waiter opens the store's LISTEN connection.
    for (;;) {
      const { rows } = await admin(
        `SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN %'`,
        [applicationName],
      );
      if (rows.length > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    relay.silence();
    // The server never answers the goodbye; close() used to wait for it for good.
    await store.close();
    expect(await waiting).toBe('ERR_STORE_CLOSED');
    await held.release();
  });

  it('on a server that ends idle sessions (idle_session_timeout), the LISTEN connection stays up and a waiter gets the lock', async () => {
    const applicationName = `sessile_idle_${randomBytes(4).toString('hex')}`;
    const url = new URL(CONNECTION_STRING);
    url.searchParams.set('application_name', applicationName);
    url.searchParams.set('options', '-c idle_session_timeout=100');
    const table = newTable();
    const store = await openStore({ connectionString: url.href, table });
    const peer = await openStore({ table });
    const id = idOf('idle');
    const held = await peer.locks.acquire(id, { leaseMs: 60_000 });
    const waiting = store.locks.acquire(id, { waitMs: 30_000 });
    const listener = async () => {
      const { rows } = await admin<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN %'`,
        [applicationName],
      );
      return rows.map((row) => row.pid);
    };
    await listening(applicationName);
    const first = await listener();
    // Several idle periods: the server ended the connection after each, and it came back anew.
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(await listener()).toEqual(first);
    await held.release();
    await (await waiting).release();
  });

  it('a call given a pooled connection the server ended for idling (idle_session_timeout) is sent again on another', async () => {
    const url = new URL(CONNECTION_STRING);
    url.searchParams.set('options', '-c idle_session_timeout=100');
    const store = await openStore({ connectionString: url.href, poolSize: 2 });
    const id = idOf('idle');
    await Promise.all([store.set(id, record('kept')), store.get(idOf('other'))]);
    // A busy event loop: the server ends the idle connections before the pool can hear of it.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 400);
    expect(textOf((await store.get(id))?.data)).toBe('kept');
  });

  it('a connection the server ended for idling (57P05) counts as lost, so a waiting claim is sent again', async () => {
    const url = new URL(CONNECTION_STRING);
    url.searchParams.set('options', '-c idle_session_timeout=50');
    const client = new pg.Client({ connectionString: url.href });
    const ended = new Promise<Error>((resolve) => client.once('error', resolve));
    await client.connect();
    const error = await ended;
    await client.end().catch(() => {});
    expect(error).toMatchObject({ code: '57P05' });
    expect(lostConnection(error)).toBe(true);
  });

  it("a role's short lock_timeout fails neither an open waiting for a sibling's migration nor a claim queued behind another's on its lease row", async () => {
    const applicationName = `sessile_locktimeout_${randomBytes(4).toString('hex')}`;
    const url = new URL(CONNECTION_STRING);
    url.searchParams.set('application_name', applicationName);
    url.searchParams.set('options', '-c lock_timeout=1');
    const table = newTable();
    // A sibling migrating the schema: it holds the schema's advisory lock until it commits.
    const sibling = new pg.Client({ connectionString: CONNECTION_STRING });
    await sibling.connect();
    cleanups.push(() => sibling.end());
    await sibling.query('BEGIN');
    await sibling.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`sessile schema ${schema}`]);
    const opening = PostgresStore.open({ connectionString: url.href, schema, table });
    while ((await waitingBackends(applicationName)) === 0) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await sibling.query('COMMIT');
    const store = await opening;
    cleanups.push(() => store.close());
    // Another process's claim in flight on the same key: its lease row is locked until it ends.
    const id = idOf('queued');
    await sibling.query('BEGIN');
    await sibling.query(
      `INSERT INTO "${schema}"."${table}_locks" (id, token, expires_at) VALUES ($1, 'theirs', 0)`,
      [id],
    );
    const claiming = store.locks.acquire(id, { waitMs: 30_000 });
    while ((await waitingBackends(applicationName)) === 0) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await sibling.query('ROLLBACK');
    await (await claiming).release();
  });

  it('a process whose store closed while the server stopped answering exits: no pool socket holds it', async () => {
    const relay = await faultyRelay();
    cleanups.push(() => relay.close());
    const options = {
      connectionString: relay.url().href,
      schema,
      table: newTable(),
      queryTimeoutMs: 300,
      poolSize: 3,
    };
    const child = fork(
      fileURLToPath(new URL('./close-child.mjs', import.meta.url)),
      [JSON.stringify(options)],
      {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      },
    );
    cleanups.push(() => child.kill());
    const exited = new Promise((resolve) => child.once('exit', resolve));
    await new Promise((resolve) => child.once('message', resolve));
    relay.silence();
    child.send('close');
    await new Promise((resolve) => child.once('message', resolve));
    // Its pool said goodbye to a server that never closes the connections; they used to keep
    // the process alive until TCP gave up on them.
    expect(await exited).toBe(0);
  });

  // Restarts the whole server, so it runs only where the machine allows it: give the command.
  const restart = process.env.SESSILE_PG_RESTART_CMD;
  it.runIf(restart !== undefined)(
    'a server restart during traffic fails operations with ERR_STORE_IO; the store recovers and no acknowledged write is lost',
    async () => {
      const { exec } = await import('node:child_process');
      const { promisify } = await import('node:util');
      const table = newTable();
      const store = await openStore({ table, queryTimeoutMs: 2000 });
      const peer = await openStore({ table });
      const traffic = await runTraffic(store, 3000, async () => {
        // Asynchronous, so traffic keeps running against the stopped server.
        await promisify(exec)(restart as string);
      });
      expect(traffic.failures.get('ERR_STORE_IO') ?? 0).toBeGreaterThan(0);
      expect([...traffic.failures.keys()].filter((code) => code !== 'ERR_STORE_IO')).toEqual([]);
      await expectAcknowledgedWrites(store, traffic);
      await expectRecovered(store, peer);
    },
    120_000,
  );
});
