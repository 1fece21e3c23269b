import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { toExpressStore } from '@sessile/express';
import { PostgresStore } from '@sessile/postgres';
import { RedisStore } from '@sessile/redis';
import session from 'express-session';
import { afterAll, describe, expect, it } from 'vitest';
import { expectDefaultTtl, jsonOf, runCli, tempRoot } from './helpers.js';
import { call, idOf, login, me, signedIn, startApp } from './peer-apps.js';

const USERS = ['ada', 'grace', 'edsger'];

const require = createRequire(import.meta.url);
const REDIS_URL = 'redis://127.0.0.1:6379';
const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
const run = randomBytes(4).toString('hex');
const temp = tempRoot('sessile-cli-servers-');

type StoreClass = new (options: object) => session.Store;
// express-session's Cookie takes its options (maxAge sets expires), which its types leave out.
const Cookie = session.Cookie as unknown as new (options: session.CookieOptions) => session.Cookie;

/** Signs three users in on the peer, imports, and serves them again over the sessile store. */
async function moveAndServe(
  peerStore: session.Store,
  from: string[],
  to: string,
  target: () => Promise<import('@sessile/core').SessionStore>,
) {
  const before = await startApp(peerStore);
  const cookies = [];
  for (const user of USERS) cookies.push(await login(before, user));
  await before.close();
  const result = await runCli(['import', ...from, '--to', to, '--json']);
  const store = await target();
  const after = await startApp(toExpressStore(store) as unknown as session.Store);
  const served = [];
  for (const cookie of cookies) served.push(await me(after, cookie));
  await after.close();
  return { result, served, cookies, store };
}

describe('import from connect-redis', () => {
  const { createClient } = require('redis') as typeof import('redis');
  const client = createClient({ url: REDIS_URL });
  const peerPrefix = `cli-test-${run}-sess:`;
  const targetPrefix = `cli-test-${run}-sessile:`;
  afterAll(async () => {
    for (const prefix of [peerPrefix, targetPrefix]) {
      for await (const keys of client.scanIterator({ MATCH: `${prefix}*` })) {
        if (keys.length > 0) await client.del(keys);
      }
    }
    await client.quit();
  });

  it('serves the same users from the same cookies, each expiring with its TTL', async () => {
    await client.connect();
    const { RedisStore: PeerStore } = require('connect-redis') as { RedisStore: StoreClass };
    const peer = new PeerStore({ client, prefix: peerPrefix });
    const { result, served, cookies, store } = await moveAndServe(
      peer,
      ['--from', `connect-redis:${REDIS_URL}`, '--prefix', peerPrefix],
      `${REDIS_URL}?prefix=${targetPrefix}`,
      () => RedisStore.open({ url: REDIS_URL, prefix: targetPrefix }),
    );
    try {
      expect(result.code).toBe(0);
      expect(jsonOf(result)).toMatchObject({ counts: { read: 3, written: 3, invalidId: 0 } });
      // Exactly what the app stored at login, read back through sessile.
      expect(served).toEqual(USERS.map(signedIn));
      for (const cookie of cookies) {
        const ttlMs = await client.pTTL(`${peerPrefix}${idOf(cookie)}`);
        const expiresAt = (await store.get(idOf(cookie)))?.expiresAt as number;
        // The peer's key and the record expire together, give or take the requests between.
        expect(Math.abs(expiresAt - (Date.now() + ttlMs))).toBeLessThan(60_000);
      }
    } finally {
      await store.close();
    }
  });

  it('a key the peer keeps with no TTL (disableTTL) lives --default-ttl, whatever its cookie says', async () => {
    if (!client.isOpen) await client.connect();
    const { RedisStore: PeerStore } = require('connect-redis') as { RedisStore: StoreClass };
    const prefix = `${peerPrefix}nottl:`;
    const peer = new PeerStore({ client, prefix, disableTTL: true });
    const app = await startApp(peer);
    const cookie = await login(app, 'ada');
    await app.close();
    // A rolling app's touches never rewrite the record under disableTTL: its cookie keeps the
    // expiry of the login, long past while the browser's cookie is renewed on every response.
    const key = `${prefix}${idOf(cookie)}`;
    expect(await client.pTTL(key)).toBe(-1);
    const stored = JSON.parse((await client.get(key)) as string);
    stored.cookie.expires = new Date(Date.now() - 3_600_000).toISOString();
    await client.set(key, JSON.stringify(stored));
    const startedAt = Date.now();
    const result = await runCli([
      'import',
      '--from',
      `connect-redis:${REDIS_URL}`,
      '--prefix',
      prefix,
      '--to',
      `${REDIS_URL}?prefix=${targetPrefix}nottl:`,
      '--default-ttl',
      '3600000',
      '--json',
    ]);
    expect(jsonOf(result)).toMatchObject({ counts: { read: 1, written: 1, expired: 0 } });
    const store = await RedisStore.open({ url: REDIS_URL, prefix: `${targetPrefix}nottl:` });
    try {
      expectDefaultTtl((await store.get(idOf(cookie)))?.expiresAt, 3_600_000, startedAt);
    } finally {
      await store.close();
    }
  });

  it('with --ledger, runs again with nothing changed on the old app update nothing, and count every session read; a touch or a change there is carried', async () => {
    if (!client.isOpen) await client.connect();
    const { RedisStore: PeerStore } = require('connect-redis') as { RedisStore: StoreClass };
    const prefix = `${peerPrefix}ledger:`;
    const to = `${REDIS_URL}?prefix=${targetPrefix}ledger:`;
    const ledger = temp();
    const app = await startApp(new PeerStore({ client, prefix }));
    try {
      const cookies = [];
      for (const user of USERS) cookies.push(await login(app, user));
      const args = [
        'import',
        '--from',
        `connect-redis:${REDIS_URL}`,
        '--prefix',
        prefix,
        '--to',
        to,
        '--ledger',
        ledger,
      ];
      const importAgain = async () => {
        const result = await runCli([...args, '--json']);
        expect(result.code).toBe(0);
        return result;
      };
      expect(jsonOf(await importAgain())).toMatchObject({ counts: { read: 3, written: 3 } });
      // The keys' TTLs count down between the runs, yet the sessions did not change.
      for (let again = 0; again < 2; again++) {
        const result = await importAgain();
        expect(jsonOf(result)).toMatchObject({
          counts: {
            read: 3,
            written: 0,
            inLedger: 3,
            reconciled: { unchanged: 3, updated: 0, deleted: 0, keptChanged: 0 },
          },
        });
      }
      const text = await runCli(args);
      expect(text.stdout).toContain('3 read, 0 written');
      expect(text.stdout).toContain(
        '3 brought over before (in --ledger); of those brought over before, 3 unchanged, 0 ended on the source (deleted), 0 changed there (updated)',
      );
      const [ada, grace] = cookies as [string, string];
      const store = await RedisStore.open({ url: REDIS_URL, prefix: `${targetPrefix}ledger:` });
      try {
        const before = (await store.get(idOf(ada)))?.expiresAt as number;
        // A request renews ada's session on the old app (connect-redis's touch moves the TTL
        // alone), and grace signs in again as another user there.
        await me(app, ada);
        await fetch(`${app.url}/login/barbara`, {
          method: 'POST',
          headers: { cookie: grace },
        }).then((response) => response.text());
        expect(jsonOf(await importAgain())).toMatchObject({
          counts: { read: 3, written: 0, reconciled: { unchanged: 1, updated: 2 } },
        });
        expect((await store.get(idOf(ada)))?.expiresAt).toBeGreaterThan(before);
        const after = await startApp(toExpressStore(store) as unknown as session.Store);
        try {
          expect(await me(after, grace)).toMatchObject({ user: 'barbara' });
        } finally {
          await after.close();
        }
      } finally {
        await store.close();
      }
    } finally {
      await app.close();
    }
  });

  it("reads a prefix's keys alone, glob characters in it included", async () => {
    // `[ab]` as SCAN reads a pattern would match `b`: another prefix's key.
    const globPrefix = `${peerPrefix}[ab]:`;
    const neighbour = `${peerPrefix}b:${'A'.repeat(32)}`;
    const own = `${globPrefix}${'B'.repeat(32)}`;
    const value = JSON.stringify({ cookie: { originalMaxAge: 60_000 }, user: 'ada' });
    await client.set(neighbour, value, { expiration: { type: 'PX', value: 60_000 } });
    await client.set(own, value, { expiration: { type: 'PX', value: 60_000 } });
    const result = await runCli([
      'import',
      '--from',
      `connect-redis:${REDIS_URL}`,
      '--prefix',
      globPrefix,
      '--to',
      `${REDIS_URL}?prefix=${targetPrefix}glob:`,
      '--json',
    ]);
    expect(result.code).toBe(0);
    expect(jsonOf(result)).toMatchObject({ counts: { read: 1, written: 1 } });
    const store = await RedisStore.open({ url: REDIS_URL, prefix: `${targetPrefix}glob:` });
    try {
      expect(await store.get('B'.repeat(32))).toBeDefined();
      expect(await store.count()).toBe(1);
    } finally {
      await store.close();
    }
  });
});

describe('import from connect-pg-simple', () => {
  const pg = require('pg') as typeof import('pg');
  const pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
  const peerSchema = `cli_test_${run}_peer`;
  const targetSchema = `cli_test_${run}_sessile`;
  const zonePeerSchema = `cli_test_${run}_zone_peer`;
  const zoneTargetSchema = `cli_test_${run}_zone_sessile`;
  afterAll(async () => {
    for (const schema of [peerSchema, targetSchema, zonePeerSchema, zoneTargetSchema]) {
      await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    }
    await pool.end();
  });

  /** `sessile import` of the connect-pg-simple table in `schema` into a PostgresStore in `target`, as JSON. */
  function importFromSchema(schema: string, target: string) {
    return runCli([
      'import',
      '--from',
      `connect-pg-simple:${PG_URL}`,
      '--schema',
      schema,
      '--to',
      `${PG_URL}?schema=${target}`,
      '--json',
    ]);
  }

  /**
   * Runs `body` with a connect-pg-simple store in a new schema `cli_test_<run>_<name>_peer` and
   * the name of a target schema beside it, both dropped afterwards.
   */
  async function withPeerSchema(
    name: string,
    body: (names: { schema: string; target: string; peer: session.Store }) => Promise<void>,
  ): Promise<void> {
    const schema = `cli_test_${run}_${name}_peer`;
    const target = `cli_test_${run}_${name}_sessile`;
    await pool.query(`CREATE SCHEMA ${schema}`);
    try {
      const PgStore = (require('connect-pg-simple') as (s: unknown) => StoreClass)(session);
      const peer = new PgStore({
        pool,
        schemaName: schema,
        createTableIfMissing: true,
        pruneSessionInterval: false,
      });
      await body({ schema, target, peer });
    } finally {
      await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await pool.query(`DROP SCHEMA IF EXISTS ${target} CASCADE`);
    }
  }

  it('serves the same users from the same cookies, each expiring at its `expire`', async () => {
    await pool.query(`CREATE SCHEMA ${peerSchema}`);
    const PgStore = (require('connect-pg-simple') as (s: unknown) => StoreClass)(session);
    const peer = new PgStore({
      pool,
      schemaName: peerSchema,
      createTableIfMissing: true,
      pruneSessionInterval: false,
    });
    const { result, served, cookies, store } = await moveAndServe(
      peer,
      ['--from', `connect-pg-simple:${PG_URL}`, '--schema', peerSchema],
      `${PG_URL}?schema=${targetSchema}`,
      () => PostgresStore.open({ connectionString: PG_URL, schema: targetSchema }),
    );
    try {
      expect(result.code).toBe(0);
      expect(jsonOf(result)).toMatchObject({ counts: { read: 3, written: 3, invalidId: 0 } });
      // Exactly what the app stored at login, read back through sessile.
      expect(served).toEqual(USERS.map(signedIn));
      const { rows } = await pool.query(`SELECT sid, expire FROM ${peerSchema}.session`);
      expect(rows).toHaveLength(3);
      for (const cookie of cookies) {
        const row = rows.find((entry) => entry.sid === idOf(cookie));
        const expiresAt = (await store.get(idOf(cookie)))?.expiresAt as number;
        // The app above touched it once since the import, to now + maxAge in ms; connect-pg-simple
        // rounds `expire` up to the whole second, so within the same second the touch may land
        // up to 1 s before it.
        expect(expiresAt).toBeGreaterThanOrEqual((row.expire as Date).getTime() - 1000);
      }
    } finally {
      await store.close();
    }
  });

  it('with --ledger, runs again with nothing changed on the old app read every session and update none', async () => {
    await withPeerSchema('ledger', async ({ schema, target, peer }) => {
      const app = await startApp(peer);
      try {
        for (const user of USERS) await login(app, user);
      } finally {
        await app.close();
      }
      const ledger = temp();
      const importAgain = () =>
        runCli([
          'import',
          '--from',
          `connect-pg-simple:${PG_URL}`,
          '--schema',
          schema,
          '--to',
          `${PG_URL}?schema=${target}`,
          '--ledger',
          ledger,
          '--json',
        ]);
      expect(jsonOf(await importAgain())).toMatchObject({ counts: { read: 3, written: 3 } });
      for (let again = 0; again < 2; again++) {
        const result = await importAgain();
        expect(result.code, result.stderr).toBe(0);
        expect(jsonOf(result)).toMatchObject({
          counts: {
            read: 3,
            written: 0,
            inLedger: 3,
            reconciled: { unchanged: 3, updated: 0, deleted: 0, keptChanged: 0 },
          },
        });
      }
    });
  });

  it('a table without connect-pg-simple columns is refused', async () => {
    await pool.query(`CREATE TABLE ${peerSchema}.other (sid text, data text)`);
    const result = await runCli([
      'import',
      '--from',
      `connect-pg-simple:${PG_URL}`,
      '--schema',
      peerSchema,
      '--table',
      'other',
      '--to',
      `${PG_URL}?schema=${targetSchema}`,
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('has columns (sid, data), not connect-pg-simple');
  });

  it('a row whose sess is JSON but not an object is skipped as what it is, naming the table', async () => {
    await withPeerSchema('notobject', async ({ schema, target, peer }) => {
      const good = `good${randomBytes(12).toString('hex')}`;
      await call((done) =>
        peer.set(good, { cookie: new Cookie({ maxAge: 3_600_000 }) } as session.SessionData, done),
      );
      const values = {
        string: ['"{\\"cookie\\":{}}"', 'a JSON string'],
        array: ['[1, 2]', 'a JSON array'],
        number: ['42', 'a JSON number'],
        null: ['null', 'JSON null'],
      };
      for (const [name, [json]] of Object.entries(values)) {
        await pool.query(
          `INSERT INTO ${schema}.session (sid, sess, expire) VALUES ($1, $2::json, now() + interval '1 hour')`,
          [`${name}${'x'.repeat(20)}`, json],
        );
      }
      const result = await importFromSchema(schema, target);
      expect(result.code, result.stderr).toBe(5);
      const report = jsonOf<{ unreadable: { id: string; problem: string }[] }>(result);
      expect(report).toMatchObject({ counts: { written: 1, unreadable: 4 } });
      expect(report.unreadable.map(({ problem }) => problem).sort()).toEqual(
        Object.values(values)
          .map(
            ([, kind]) =>
              `sess in ${schema}.session is ${kind}, not an object (express-session stores each session as one)`,
          )
          .sort(),
      );
    });
  });

  it("a session whose `expire` was set to '-infinity' by hand is expired, as the peer reads it", async () => {
    await withPeerSchema('neginf', async ({ schema, target, peer }) => {
      const id = `neginf${randomBytes(12).toString('hex')}`;
      const cookie = new Cookie({ maxAge: 3_600_000 });
      await call((done) => peer.set(id, { cookie } as session.SessionData, done));
      await pool.query(`UPDATE ${schema}.session SET expire = '-infinity' WHERE sid = $1`, [id]);
      expect(await call((done) => peer.get(id, done))).toBeFalsy();
      const result = await importFromSchema(schema, target);
      expect(result.code, result.stderr).toBe(0);
      expect(jsonOf(result)).toMatchObject({ counts: { read: 1, written: 0, expired: 1 } });
      const { rows } = await pool.query(`SELECT id FROM ${target}.sessions`);
      expect(rows).toEqual([]);
    });
  });

  // `expire` is a timestamp without time zone; read in the CLI's zone it moved by hours.
  it.each(['Asia/Tokyo', 'America/Los_Angeles'])(
    'keeps `expire` when the CLI runs with TZ=%s',
    async (zone) => {
      await pool.query(`CREATE SCHEMA IF NOT EXISTS ${zonePeerSchema}`);
      const PgStore = (require('connect-pg-simple') as (s: unknown) => StoreClass)(session);
      const peer = new PgStore({
        pool,
        schemaName: zonePeerSchema,
        createTableIfMissing: true,
        pruneSessionInterval: false,
      });
      const id = `zone${randomBytes(12).toString('hex')}`;
      const cookie = new Cookie({ maxAge: 2 * 3_600_000 });
      await call((done) => peer.set(id, { cookie } as session.SessionData, done));
      const table = zone.replace('/', '_').toLowerCase();
      const to = `${PG_URL}?schema=${zoneTargetSchema}&table=${table}`;
      const result = await runCli(
        ['import', '--from', `connect-pg-simple:${PG_URL}`, '--schema', zonePeerSchema, '--to', to],
        { env: { TZ: zone } },
      );
      expect(result.code).toBe(0);
      const store = await PostgresStore.open({
        connectionString: PG_URL,
        schema: zoneTargetSchema,
        table,
      });
      try {
        const expiresAt = (await store.get(id))?.expiresAt as number;
        // connect-pg-simple rounds `expire` up to the whole second.
        expect(expiresAt).toBeGreaterThanOrEqual((cookie.expires as Date).getTime());
        expect(expiresAt).toBeLessThanOrEqual((cookie.expires as Date).getTime() + 1000);
      } finally {
        await store.close();
      }
    },
  );
});
