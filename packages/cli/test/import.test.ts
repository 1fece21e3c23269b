import { execFileSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  realpathSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { generateSessionId, jsonCodec } from '@sessile/core';
import { toExpressStore } from '@sessile/express';
import { FileStore } from '@sessile/file';
import { LevelStore } from '@sessile/level';
import { SqliteStore } from '@sessile/sqlite';
import Database from 'better-sqlite3';
import session from 'express-session';
import { describe, expect, it } from 'vitest';
import { expectDefaultTtl, jsonOf, runCli, tempRoot } from './helpers.js';
import { call, idOf, login, me, startApp } from './peer-apps.js';

const require = createRequire(import.meta.url);
const nextDir = tempRoot('sessile-cli-import-');
const HOUR_MS = 3_600_000;

// A peer's class implements the methods session.Store leaves abstract, so a test may extend it.
type StoreClass = new (options: object) => Pick<session.Store, keyof session.Store>;

interface Peer {
  store: session.Store;
  /** The `--from` address of its data. */
  address: string;
  close(): Promise<void>;
}

/**
 * `sessile import --from <from> --to file:<target> --default-ttl 1h --json`, and a check that a
 * session it imported lives the default TTL from the import's start.
 */
async function importIntoFileStore(from: string, target: string) {
  const startedAt = Date.now();
  const result = await runCli([
    'import',
    '--from',
    from,
    '--to',
    `file:${target}`,
    '--default-ttl',
    String(HOUR_MS),
    '--json',
  ]);
  const expectLivesDefaultTtl = async (id: string): Promise<void> => {
    const store = await FileStore.open({ path: target });
    try {
      expectDefaultTtl((await store.get(id))?.expiresAt, HOUR_MS, startedAt);
    } finally {
      await store.close();
    }
  };
  return { result, expectLivesDefaultTtl };
}

const peers: Record<string, (dir: string) => Promise<Peer>> = {
  async 'session-file-store'(dir) {
    const FileStore = (require('session-file-store') as (s: unknown) => StoreClass)(session);
    const path = join(dir, 'sessions');
    const store = new FileStore({ path, reapInterval: -1, logFn: () => {} });
    return { store, address: `session-file-store:${path}`, close: async () => {} };
  },
  async 'level-session-store'(dir) {
    return openLevelPeer(join(dir, 'peer-level'));
  },
  async 'connect-sqlite3'(dir) {
    const SQLiteStore = (require('connect-sqlite3') as (s: unknown) => StoreClass)(session);
    const store = new SQLiteStore({ dir, db: 'peer.db' }) as session.Store & {
      db: { close(done: () => void): void };
      client: NodeJS.EventEmitter;
    };
    await new Promise((resolve) => store.client.once('connect', resolve));
    return {
      store,
      address: `connect-sqlite3:${join(dir, 'peer.db')}`,
      close: () => new Promise<void>((resolve) => store.db.close(() => resolve())),
    };
  },
  async 'better-sqlite3-session-store'(dir) {
    const Base = (require('better-sqlite3-session-store') as (s: unknown) => StoreClass)(session);
    // Its constructor arms a 15-minute cleanup timer that would hold the test process open.
    const BetterSqliteStore = class extends Base {
      startInterval(): void {}
    };
    const client = new Database(join(dir, 'peer.db'));
    const store = new BetterSqliteStore({ client });
    return {
      store,
      address: `better-sqlite3-session-store:${join(dir, 'peer.db')}`,
      close: async () => {
        client.close();
      },
    };
  },
};

type LevelSessionStore = session.Store & {
  db: { close(): Promise<void>; put(key: string, value: string): Promise<void> };
};

/**
 * level-session-store over the LevelDB directory `path` it opens itself (keys `<sid>`), or over
 * a database the app opened and passed in (`shared`, keys `_session/<sid>`).
 */
async function openLevelPeer(path: string, shared = false): Promise<Peer> {
  const LevelStore = (
    require('level-session-store') as (s: unknown) => new (db: unknown) => LevelSessionStore
  )(session);
  if (!shared) {
    const store = new LevelStore(path);
    await new Promise((resolve) => store.once('connect', resolve));
    // It emits 'connect' before its counter is written, so a set at once may find none.
    await store.db.put('__length__', '0');
    return { store, address: `level-session-store:${path}`, close: () => store.db.close() };
  }
  const level = require('level') as (path: string) => {
    put(key: string, value: string): Promise<void>;
  };
  const db = level(path);
  // Its set fails in a database without its counter, which it creates only in one it opened.
  await db.put('_session/__length__', '0');
  const store = new LevelStore(db);
  return { store, address: `level-session-store:${path}`, close: () => store.db.close() };
}

/** A session-file-store in a new test directory. */
async function fileStorePeer(): Promise<{ dir: string; peer: Peer }> {
  const dir = nextDir();
  mkdirSync(dir, { recursive: true });
  return { dir, peer: await (peers['session-file-store'] as (dir: string) => Promise<Peer>)(dir) };
}

/** A session-file-store directory in a new test directory, after one user signed in on its app. */
async function fileStoreWithOneLogin(): Promise<{ dir: string; peer: Peer; path: string }> {
  const { dir, peer } = await fileStorePeer();
  const app = await startApp(peer.store);
  await login(app, 'ada');
  await app.close();
  return { dir, peer, path: peer.address.slice('session-file-store:'.length) };
}

/**
 * The whole move for one peer: users sign in on an express-session app over the peer store,
 * `sessile import` moves the data, and an express-session app over `toExpressStore` serves the
 * same users from the same cookies.
 */
async function move(name: string) {
  const dir = nextDir();
  mkdirSync(dir, { recursive: true });
  const peer = await (peers[name] as (dir: string) => Promise<Peer>)(dir);
  const before = await startApp(peer.store);
  const cookies = [];
  for (const user of ['ada', 'grace', 'edsger']) cookies.push(await login(before, user));
  const seen = [];
  for (const cookie of cookies) seen.push(await me(before, cookie));
  await before.close();
  const peerSessions = new Map<string, session.SessionData>();
  for (const cookie of cookies) {
    const id = idOf(cookie);
    const stored = await call<session.SessionData | null>((done) => peer.store.get(id, done));
    if (!stored) throw new Error(`the peer has no session ${id}`);
    peerSessions.set(id, stored);
  }
  await peer.close();

  const targetPath = join(dir, 'sessile.db');
  const result = await importJson(peer.address, `sqlite:${targetPath}`);
  const target = await SqliteStore.open({ path: targetPath });
  // Read before the app below serves anyone: each request moves the expiry on.
  const imported = new Map<string, number | undefined>();
  for (const cookie of cookies)
    imported.set(idOf(cookie), (await target.get(idOf(cookie)))?.expiresAt);
  const after = await startApp(toExpressStore(target) as unknown as session.Store);
  try {
    const served = [];
    for (const cookie of cookies) served.push(await me(after, cookie));
    return { result, seen, served, cookies, peerSessions, target, peer, dir, imported };
  } finally {
    await after.close();
  }
}

describe.each(Object.keys(peers))('import from %s', (name) => {
  it('the same users are served from the same cookies, nobody logged out', async () => {
    const { result, seen, served, target } = await move(name);
    try {
      expect(result.code).toBe(0);
      expect(jsonOf(result)).toMatchObject({
        ok: true,
        counts: { read: 3, written: 3, present: 0, unreadable: 0, invalidId: 0 },
      });
      expect(seen.map((body) => (body as { user: string }).user)).toEqual([
        'ada',
        'grace',
        'edsger',
      ]);
      expect(served).toEqual(seen);
      expect(served.map((body) => (body as { cart: unknown }).cart)).toEqual([
        [{ sku: 'tea', quantity: 2 }],
        [{ sku: 'tea', quantity: 2 }],
        [{ sku: 'tea', quantity: 2 }],
      ]);
    } finally {
      await target.close();
    }
  });
});

describe('expiry', () => {
  it('connect-sqlite3: the record expires when its `expired` column says', async () => {
    const { target, dir, cookies, imported } = await move('connect-sqlite3');
    const db = new Database(join(dir, 'peer.db'), { readonly: true });
    try {
      for (const cookie of cookies) {
        const id = idOf(cookie);
        const row = db.prepare('SELECT expired FROM sessions WHERE sid = ?').get(id) as {
          expired: number;
        };
        expect(imported.get(id)).toBe(row.expired);
      }
    } finally {
      db.close();
      await target.close();
    }
  });

  it('connect-sqlite3: an `expired` of -9e999 (a hand edit) is expired, as the peer reads it', async () => {
    const dir = nextDir();
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'peer.db');
    const db = new Database(file);
    db.exec('CREATE TABLE sessions (sid PRIMARY KEY, expired, sess)');
    const id = generateSessionId();
    const sess = JSON.stringify({ cookie: { originalMaxAge: 3_600_000, path: '/' }, user: 'ada' });
    db.prepare('INSERT INTO sessions VALUES (?, -9e999, ?)').run(id, sess);
    // connect-sqlite3's get: `WHERE sid = ? AND ? <= expired`, which no time passes.
    expect(
      db.prepare('SELECT 1 FROM sessions WHERE sid = ? AND ? <= expired').get(id, Date.now()),
    ).toBe(undefined);
    db.close();
    const target = join(dir, 'sessile.db');
    const result = await importJson(`connect-sqlite3:${file}`, `sqlite:${target}`);
    expect(result.code, result.stderr).toBe(0);
    expect(jsonOf(result)).toMatchObject({ counts: { read: 1, written: 0, expired: 1 } });
  });

  it('better-sqlite3-session-store: the record expires when its `expire` column says', async () => {
    const { target, dir, cookies, imported } = await move('better-sqlite3-session-store');
    const db = new Database(join(dir, 'peer.db'), { readonly: true });
    try {
      for (const cookie of cookies) {
        const id = idOf(cookie);
        const row = db.prepare('SELECT expire FROM sessions WHERE sid = ?').get(id) as {
          expire: string;
        };
        expect(imported.get(id)).toBe(Date.parse(row.expire));
      }
    } finally {
      db.close();
      await target.close();
    }
  });

  it('better-sqlite3-session-store: a touched session keeps its touch, an expired one stays gone', async () => {
    const dir = nextDir();
    mkdirSync(dir, { recursive: true });
    const peer = await (peers['better-sqlite3-session-store'] as (dir: string) => Promise<Peer>)(
      dir,
    );
    const now = Date.now();
    const cookie = (expires: number) => ({ originalMaxAge: 3000, expires: new Date(expires) });
    const [touched, lapsed] = [generateSessionId(), generateSessionId()];
    // Its touch moves the `expire` column and leaves the cookie in `sess` at its first expiry.
    await call((done) =>
      peer.store.set(touched, { cookie: cookie(now + 3000), user: 'ada' } as never, done),
    );
    // express-session's Store leaves touch optional; better-sqlite3-session-store has one.
    const touch = peer.store.touch?.bind(peer.store);
    if (touch === undefined) throw new Error('better-sqlite3-session-store has no touch()');
    // express-session's types give touch's callback no arguments; this store passes it an error.
    await call((done) =>
      touch(touched, { cookie: cookie(now + 60_000) } as never, (error?: unknown) => done(error)),
    );
    // A browser-session cookie, whose row's `expire` passed an hour ago.
    await call((done) => peer.store.set(lapsed, { cookie: {}, user: 'grace' } as never, done));
    await peer.close();
    const db = new Database(join(dir, 'peer.db'));
    db.prepare('UPDATE sessions SET expire = ? WHERE sid = ?').run(
      new Date(now - 3_600_000).toISOString(),
      lapsed,
    );
    db.close();
    const path = join(dir, 'sessile.db');
    const result = await runCli(['import', '--from', peer.address, '--to', `sqlite:${path}`]);
    expect(result.code).toBe(0);
    const target = await SqliteStore.open({ path });
    try {
      expect((await target.get(touched))?.expiresAt).toBe(now + 60_000);
      expect(await target.get(lapsed)).toBeUndefined();
      expect(await target.count()).toBe(1);
    } finally {
      await target.close();
    }
  });

  it('session-file-store: the record expires at __lastAccess plus the ttl', async () => {
    const { target, cookies, peerSessions, imported } = await move('session-file-store');
    try {
      for (const cookie of cookies) {
        const id = idOf(cookie);
        const stored = peerSessions.get(id) as unknown as {
          __lastAccess: number;
          cookie: { originalMaxAge: number };
        };
        expect(imported.get(id)).toBe(stored.__lastAccess + stored.cookie.originalMaxAge);
        const data = jsonCodec().decode((await target.get(id))?.data as Uint8Array, id).data;
        expect(data).not.toHaveProperty('__lastAccess');
      }
    } finally {
      await target.close();
    }
  });
});

describe('level-session-store', () => {
  it('a session lives until its cookie expires; one with a browser-session cookie lives --default-ttl', async () => {
    const { target, cookies, peerSessions, imported } = await move('level-session-store');
    try {
      for (const cookie of cookies) {
        const id = idOf(cookie);
        const stored = peerSessions.get(id) as session.SessionData;
        expect(imported.get(id)).toBe(new Date(stored.cookie.expires as Date).getTime());
      }
    } finally {
      await target.close();
    }
    const dir = nextDir();
    mkdirSync(dir, { recursive: true });
    const peer = await openLevelPeer(join(dir, 'peer-level'));
    const [browser, lapsed] = [generateSessionId(), generateSessionId()];
    const cookie = (expires: Date | null) => ({ originalMaxAge: null, expires });
    await call((done) => peer.store.set(browser, { cookie: cookie(null) } as never, done));
    await call((done) =>
      peer.store.set(lapsed, { cookie: cookie(new Date(Date.now() - 1000)) } as never, done),
    );
    await peer.close();
    const { result, expectLivesDefaultTtl } = await importIntoFileStore(
      peer.address,
      join(dir, 'to'),
    );
    expect(result.code, result.stderr).toBe(0);
    expect(jsonOf(result)).toMatchObject({ counts: { read: 2, written: 1, expired: 1 } });
    await expectLivesDefaultTtl(browser);
  });

  it("a database the app passed in keeps its sessions under '_session/': --prefix reads them, without it the import is refused with that hint", async () => {
    const dir = nextDir();
    mkdirSync(dir, { recursive: true });
    const peer = await openLevelPeer(join(dir, 'peer-level'), true);
    const app = await startApp(peer.store);
    const cookie = await login(app, 'ada');
    await app.close();
    await peer.close();
    const target = join(dir, 'sessile.db');
    const refused = await importJson(peer.address, `sqlite:${target}`);
    expect(refused.code).toBe(1);
    expect(jsonOf(refused)).toMatchObject({ error: { code: 'ERR_NOT_PEER_DATA' } });
    expect(refused.stderr).toContain('give --prefix _session/');
    expect(existsSync(target)).toBe(false);
    const result = await importJson(peer.address, `sqlite:${target}`, ['--prefix', '_session/']);
    expect(result.code, result.stderr).toBe(0);
    expect(jsonOf(result)).toMatchObject({ counts: { read: 1, written: 1, invalidId: 0 } });
    await expectSqliteHolds(target, idOf(cookie));
  });

  it('a database the running app holds is refused with ERR_STORE_BUSY, and a directory that is not LevelDB as not the peer', async () => {
    const dir = nextDir();
    mkdirSync(dir, { recursive: true });
    const peer = await openLevelPeer(join(dir, 'peer-level'));
    const target = join(dir, 'sessile.db');
    try {
      const busy = await importJson(peer.address, `sqlite:${target}`);
      expect(busy.code).toBe(1);
      expect(jsonOf(busy)).toMatchObject({ error: { code: 'ERR_STORE_BUSY' } });
      expect(busy.stderr).toContain('stop the app that uses it');
    } finally {
      await peer.close();
    }
    mkdirSync(join(dir, 'app'));
    const foreign = await importJson(`level-session-store:${join(dir, 'app')}`, `sqlite:${target}`);
    expect(foreign.code).toBe(1);
    expect(jsonOf(foreign)).toMatchObject({ error: { code: 'ERR_NOT_PEER_DATA' } });
    expect(foreign.stderr).toContain('not a LevelDB directory');
    // sessile's own LevelStore directory is LevelDB, but not the peer's data.
    const ours = join(dir, 'sessile-level');
    await (await LevelStore.open({ path: ours })).close();
    const notPeer = await importJson(`level-session-store:${ours}`, `sqlite:${target}`);
    expect(notPeer.code).toBe(1);
    expect(notPeer.stderr).toContain('not level-session-store data');
    expect(existsSync(target)).toBe(false);
  });
});

describe('a peer on a read-only filesystem', () => {
  it.skipIf(process.getuid?.() !== 0 || process.platform !== 'linux')(
    'level-session-store data there is refused naming the directory and why, with what to do (a read-only bind mount needs root)',
    async () => {
      const dir = nextDir();
      mkdirSync(join(dir, 'mount'), { recursive: true });
      mkdirSync(join(dir, 'data'));
      const peer = await openLevelPeer(join(dir, 'data', 'peer-level'));
      const id = generateSessionId();
      const cookie = { originalMaxAge: HOUR_MS, expires: new Date(Date.now() + HOUR_MS) };
      await call((done) => peer.store.set(id, { cookie } as session.SessionData, done));
      await peer.close();
      const mount = join(dir, 'mount');
      execFileSync('mount', ['--bind', join(dir, 'data'), mount]);
      try {
        execFileSync('mount', ['-o', 'remount,bind,ro', mount]);
        const path = join(mount, 'peer-level');
        const target = join(dir, 'sessile.db');
        const result = await importJson(`level-session-store:${path}`, `sqlite:${target}`);
        expect(result.code).toBe(1);
        expect(jsonOf(result)).toMatchObject({ error: { code: 'ERR_STORE_IO' } });
        expect(result.stderr).toContain(
          `level-session-store:${path}: cannot open ${path}: it is on a read-only filesystem, and LevelDB writes in its directory (its LOCK file and log) even to read it. Copy the directory somewhere writable (cp -a) and import from the copy`,
        );
        expect(existsSync(target)).toBe(false);
        // What it says to do works.
        execFileSync('cp', ['-a', path, join(dir, 'copy')]);
        const copied = await importJson(
          `level-session-store:${join(dir, 'copy')}`,
          `sqlite:${target}`,
        );
        expect(copied.code, copied.stderr).toBe(0);
        await expectSqliteHolds(target, id);
      } finally {
        execFileSync('umount', [mount]);
      }
    },
  );
});

describe('level-session-store data given as a level: store', () => {
  it('is refused by every command, with the import that reads it, and left as it was', async () => {
    const dir = nextDir();
    mkdirSync(join(dir, 'no-sessions'), { recursive: true });
    // Sources for a copy and an import into it: a sessile store and a peer's, both empty.
    const source = join(dir, 'source.db');
    await (await SqliteStore.open({ path: source })).close();
    const cookie = { originalMaxAge: HOUR_MS, expires: new Date(Date.now() + HOUR_MS) };
    // Not starting with '-': `show` gets it before '--json' is appended.
    const id = `s${generateSessionId().slice(1)}`;
    for (const shared of [false, true]) {
      const path = join(dir, shared ? 'shared' : 'own');
      const peer = await openLevelPeer(path, shared);
      await call((done) => peer.store.set(id, { cookie } as session.SessionData, done));
      await peer.close();
      const runs = [
        ...['stats', 'ls', 'sweep'].map((command) => [command, `level:${path}`]),
        ['show', `level:${path}`, id],
        ['copy', '--from', `level:${path}`, '--to', `sqlite:${join(dir, 'copy.db')}`],
        ...[[], ['--dry-run']].map((dryRun) => [
          'copy',
          '--from',
          `sqlite:${source}`,
          '--to',
          `level:${path}`,
          ...dryRun,
        ]),
        [
          'import',
          '--from',
          `session-file-store:${join(dir, 'no-sessions')}`,
          '--to',
          `level:${path}`,
        ],
      ];
      for (const args of runs) {
        const result = await runCli([...args, '--json']);
        expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(1);
        expect(jsonOf(result)).toMatchObject({ ok: false, error: { code: 'ERR_STORE_IO' } });
        expect(result.stderr).toContain(`level:${path}: `);
        expect(result.stderr).toContain("so it is probably another program's database");
        expect(result.stderr).toContain(
          `If it is level-session-store's, import its sessions: sessile import --from level-session-store:${path} --to <another store>`,
        );
      }
      // What the hint says works (the import asks for --prefix _session/ where the app's database
      // keeps them there): the session is there, as the peer wrote it.
      const target = join(dir, `${shared ? 'shared' : 'own'}.db`);
      const imported = await importJson(
        `level-session-store:${path}`,
        `sqlite:${target}`,
        shared ? ['--prefix', '_session/'] : [],
      );
      expect(imported.code, imported.stderr).toBe(0);
      expect(jsonOf(imported)).toMatchObject({ counts: { read: 1, written: 1 } });
      await expectSqliteHolds(target, id);
    }
  });

  it("is refused with the import's hint while the app holds it, and the hint follows LevelStore's code, not its words", async () => {
    const dir = nextDir();
    mkdirSync(dir, { recursive: true });
    const path = join(dir, 'peer-level');
    const peer = await openLevelPeer(path);
    const hint = `If it is level-session-store's, import its sessions: sessile import --from level-session-store:${path} --to <another store>`;
    try {
      // This process holds the directory as the running app would; the CLI is another process.
      for (const args of [
        ['stats', `level:${path}`],
        ['copy', '--from', `sqlite:${join(dir, 'none.db')}`, '--to', `level:${path}`],
      ]) {
        const held = await runCli([...args, '--json']);
        expect(held.code, held.stderr).toBe(1);
        expect(held.stderr).toContain(hint);
      }
    } finally {
      await peer.close();
    }
    // A sessile store the app holds, at a path that merely holds the refusal's words: busy, no hint.
    const named = join(dir, "another program's database");
    const ours = await LevelStore.open({ path: named });
    try {
      const busy = await runCli(['stats', `level:${named}`, '--json']);
      expect(busy.code).toBe(1);
      expect(jsonOf(busy)).toMatchObject({ error: { code: 'ERR_STORE_BUSY' } });
      expect(busy.stderr).not.toContain('import its sessions');
      expect(busy.stderr).toContain('Stop the app that holds it, then run the command again');
    } finally {
      await ours.close();
    }
  });

  it("another program's LevelDB database is refused as one, and a sessile store still opens", async () => {
    const dir = nextDir();
    mkdirSync(dir, { recursive: true });
    const level = require('level') as (path: string) => {
      put(key: string, value: string): Promise<void>;
      get(key: string): Promise<string>;
      close(): Promise<void>;
    };
    const app = level(join(dir, 'app'));
    await app.put('user:42', '{"name":"ada"}');
    await app.close();
    const refused = await runCli(['stats', `level:${join(dir, 'app')}`]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`level:${join(dir, 'app')}: `);
    expect(refused.stderr).toContain("so it is probably another program's database");
    const reopened = level(join(dir, 'app'));
    expect(await reopened.get('user:42')).toBe('{"name":"ada"}');
    await reopened.close();
    // sessile's own: a store with sessions, owners and their index, and an empty one.
    const ours = await LevelStore.open({ path: join(dir, 'ours') });
    const data = new TextEncoder().encode('{}');
    await ours.set(generateSessionId(), { data, expiresAt: Date.now() + HOUR_MS, owner: 'ada' });
    await ours.set(generateSessionId(), { data, expiresAt: Date.now() + HOUR_MS });
    await ours.close();
    await (await LevelStore.open({ path: join(dir, 'empty') })).close();
    const stats = await runCli(['stats', `level:${join(dir, 'ours')}`, '--json']);
    expect(stats.code, stats.stderr).toBe(0);
    expect(jsonOf(stats)).toMatchObject({ live: 2, owners: 1 });
    expect((await runCli(['ls', `level:${join(dir, 'empty')}`])).code).toBe(0);
  });
});

describe("a SQLite peer's database given as an sqlite: store", () => {
  it.each(['connect-sqlite3', 'better-sqlite3-session-store'])(
    "%s's is refused with the import that reads it, which works",
    async (name) => {
      const dir = nextDir();
      mkdirSync(dir, { recursive: true });
      const peer = await (peers[name] as (dir: string) => Promise<Peer>)(dir);
      const id = generateSessionId();
      const cookie = { originalMaxAge: HOUR_MS, expires: new Date(Date.now() + HOUR_MS) };
      await call((done) => peer.store.set(id, { cookie } as session.SessionData, done));
      await peer.close();
      const path = join(dir, 'peer.db');
      const source = join(dir, 'source.db');
      await (await SqliteStore.open({ path: source })).close();
      for (const args of [
        ['stats', `sqlite:${path}`],
        ['copy', '--from', `sqlite:${source}`, '--to', `sqlite:${path}`],
      ]) {
        const result = await runCli([...args, '--json']);
        expect(result.code, result.stderr).toBe(1);
        expect(result.stderr).toContain(
          `Its sessions table is ${name}'s: import its sessions: sessile import --from ${name}:${path} --to <another store>`,
        );
      }
      const target = join(dir, 'sessile.db');
      const imported = await importJson(`${name}:${path}`, `sqlite:${target}`);
      expect(imported.code, imported.stderr).toBe(0);
      await expectSqliteHolds(target, id);
      // An app's own table of another shape gets no such hint.
      const app = join(dir, 'app.db');
      const db = new Database(app);
      db.exec('CREATE TABLE sessions (user TEXT, note TEXT)');
      db.close();
      const other = await runCli(['stats', `sqlite:${app}`]);
      expect(other.code).toBe(1);
      expect(other.stderr).toContain('Refusing to use the database');
      expect(other.stderr).not.toContain('import its sessions');
    },
  );
});

describe('a session-file-store lifetime too large to be finite', () => {
  it('a negative one (-1e999) is expired, as the peer reads it, not imported for --default-ttl', async () => {
    const dir = nextDir();
    const path = join(dir, 'sessions');
    mkdirSync(path, { recursive: true });
    const gone = generateSessionId();
    writeFileSync(
      join(path, `${gone}.json`),
      `{"cookie":{"originalMaxAge":-1e999,"path":"/"},"user":"ada","__lastAccess":${Date.now()}}`,
    );
    const result = await importJson(`session-file-store:${path}`, `file:${join(dir, 'to')}`);
    expect(result.code, result.stderr).toBe(0);
    expect(jsonOf(result)).toMatchObject({ counts: { read: 1, written: 0, expired: 1 } });
    const target = await FileStore.open({ path: join(dir, 'to') });
    try {
      expect(await target.get(gone)).toBeUndefined();
    } finally {
      await target.close();
    }
  });

  it('takes --default-ttl instead, and the sessions beside it are imported as usual', async () => {
    const dir = nextDir();
    const path = join(dir, 'sessions');
    mkdirSync(path, { recursive: true });
    const lastAccess = Date.now();
    const valid = generateSessionId();
    const endless = generateSessionId();
    // JSON.stringify never writes 1e999, but JSON.parse reads it as Infinity.
    const file = (user: string, maxAge: string) =>
      `{"cookie":{"originalMaxAge":${maxAge},"path":"/"},"user":"${user}","__lastAccess":${lastAccess}}`;
    writeFileSync(join(path, `${valid}.json`), file('ada', '3600000'));
    writeFileSync(join(path, `${endless}.json`), file('grace', '1e999'));
    // Finite, but past the last time a Date can hold: no store may keep it either.
    const distant = generateSessionId();
    writeFileSync(join(path, `${distant}.json`), file('linus', '1e300'));
    const defaultTtlMs = 600_000;
    const startedAt = Date.now();
    const result = await runCli([
      'import',
      '--from',
      `session-file-store:${path}`,
      '--to',
      `file:${join(dir, 'to')}`,
      '--default-ttl',
      String(defaultTtlMs),
      '--json',
    ]);
    const finishedAt = Date.now();
    expect(result.code, result.stderr).toBe(0);
    expect(jsonOf(result)).toMatchObject({
      ok: true,
      counts: { read: 3, written: 3, expired: 0, unreadable: 0 },
    });
    const target = await FileStore.open({ path: join(dir, 'to') });
    try {
      expect((await target.get(valid))?.expiresAt).toBe(lastAccess + 3_600_000);
      const far = await target.get(distant);
      expectDefaultTtl(far?.expiresAt, defaultTtlMs, startedAt, finishedAt);
      const imported = await target.get(endless);
      expectDefaultTtl(imported?.expiresAt, defaultTtlMs, startedAt, finishedAt);
      const data = jsonCodec().decode(imported?.data as Uint8Array, endless).data;
      expect(data).toMatchObject({ user: 'grace' });
    } finally {
      await target.close();
    }
  });
  it.each(['0', '4320000000000001', '9007199254740993', '99999999999999999999'])(
    'refuses --default-ttl %s, as toExpressStore refuses that defaultTtlMs',
    async (value) => {
      const dir = nextDir();
      const result = await runCli([
        'import',
        '--from',
        `session-file-store:${dir}`,
        '--to',
        `file:${join(dir, 'to')}`,
        '--default-ttl',
        value,
        '--json',
      ]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('--default-ttl must be from 1 to 4320000000000000');
    },
  );
});

describe('what cannot be imported', () => {
  it('a peer file or directory that is not there, or not of its kind, is refused naming it, and nothing is written', async () => {
    const dir = nextDir();
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'notes.txt');
    writeFileSync(file, 'keep me');
    const missing = join(dir, 'sessions.db');
    const cases = [
      [
        `connect-sqlite3:${missing}`,
        `${missing} does not exist: no connect-sqlite3 database there`,
      ],
      [
        `better-sqlite3-session-store:${dir}`,
        `${dir} is a directory, not a file: no better-sqlite3-session-store database there`,
      ],
      [
        `connect-sqlite3:${join(file, 'sessions.db')}`,
        `${join(file, 'sessions.db')} is inside a file, not a directory: no connect-sqlite3 database there`,
      ],
      [
        `session-file-store:${join(dir, 'sessions')}`,
        `${join(dir, 'sessions')} does not exist: no session-file-store directory there`,
      ],
      [
        `level-session-store:${file}`,
        `${file} is a file, not a directory: no level-session-store data there`,
      ],
    ];
    const target = join(dir, 'sessile.db');
    for (const [from, message] of cases) {
      const result = await importJson(from as string, `sqlite:${target}`);
      expect(result.code, result.stderr).toBe(1);
      expect(jsonOf(result)).toMatchObject({ error: { code: 'ERR_NOT_PEER_DATA' } });
      expect(result.stderr).toContain(`${from}: ${message}`);
    }
    expect(existsSync(target)).toBe(false);
    expect(existsSync(missing)).toBe(false);
  });

  it('a target in the same place as the peer is refused as the same store, however its path is spelt, before either is opened', async () => {
    const dir = nextDir();
    mkdirSync(dir, { recursive: true });
    const level = await openLevelPeer(join(dir, 'peer-level'));
    const id = generateSessionId();
    const cookie = { originalMaxAge: HOUR_MS, expires: new Date(Date.now() + HOUR_MS) };
    await call((done) => level.store.set(id, { cookie } as session.SessionData, done));
    await level.close();
    const sqlite = await (peers['connect-sqlite3'] as (dir: string) => Promise<Peer>)(dir);
    await sqlite.close();
    const linked = join(dir, 'linked');
    symlinkSync(dir, linked);
    const levelPath = join(dir, 'peer-level');
    const sqlitePath = join(dir, 'peer.db');
    // Said by the real path they share.
    const pairs = [
      [level.address, `level:${levelPath}`, realpathSync(levelPath)],
      [level.address, `level:${join(linked, 'peer-level')}`, realpathSync(levelPath)],
      [level.address, `file:${levelPath}/`, realpathSync(levelPath)],
      [sqlite.address, `sqlite:${join(linked, 'peer.db')}`, realpathSync(sqlitePath)],
      // Never reached: the servers are not asked anything.
      [
        'connect-pg-simple:postgres://sessile@192.0.2.1/app',
        'postgres://sessile@192.0.2.1/app?table=session',
        'postgres://sessile@192.0.2.1/app?table=session',
      ],
      [
        'connect-redis:redis://192.0.2.1:6379',
        'redis://192.0.2.1:6379/0?prefix=sess:',
        'redis://192.0.2.1:6379/0?prefix=sess:',
      ],
    ] as const;
    for (const [from, to, shown] of pairs) {
      const result = await importJson(from, to);
      expect(result.code, `${from} ${to}: ${result.stderr}`).toBe(2);
      expect(jsonOf(result)).toMatchObject({ ok: false, error: { code: 'ERR_USAGE' } });
      expect(result.stderr).toContain('--from and --to name the same store');
      expect(result.stderr).toContain(shown);
    }
    // What the peer keeps is as it was, and is still imported into another store.
    const elsewhere = await importJson(level.address, `sqlite:${join(dir, 'sessile.db')}`);
    expect(elsewhere.code, elsewhere.stderr).toBe(0);
    await expectSqliteHolds(join(dir, 'sessile.db'), id);
  });

  it('an id that is not a valid sessile id is reported and skipped, and an expired session is not written', async () => {
    const dir = nextDir();
    mkdirSync(dir, { recursive: true });
    const peer = await (peers['connect-sqlite3'] as (dir: string) => Promise<Peer>)(dir);
    const cookie = {
      originalMaxAge: 60_000,
      maxAge: 60_000,
      expires: new Date(Date.now() + 60_000),
    };
    const good = generateSessionId();
    const stale = generateSessionId();
    await call((done) => peer.store.set(good, { cookie } as session.SessionData, done));
    await call((done) => peer.store.set('legacy.id/1', { cookie } as session.SessionData, done));
    await call((done) =>
      peer.store.set(stale, { cookie: { ...cookie, maxAge: -5000 } } as session.SessionData, done),
    );
    await peer.close();
    const targetPath = join(dir, 'sessile.db');
    const result = await importJson(peer.address, `sqlite:${targetPath}`);
    expect(result.code, result.stderr).toBe(0);
    const report = jsonOf<{ counts: object; invalidIds: string[] }>(result);
    expect(report.counts).toMatchObject({ written: 1, expired: 1, invalidId: 1 });
    expect(report.invalidIds).toEqual(['lega… (11 characters)']);
    const target = await SqliteStore.open({ path: targetPath });
    try {
      expect(await target.count()).toBe(1);
      expect(await target.get(good)).toBeDefined();
    } finally {
      await target.close();
    }
  });

  it('unreadable session files are reported and skipped, the rest imported, exit 5', async () => {
    const { dir, peer, path } = await fileStoreWithOneLogin();
    writeFileSync(join(path, `${generateSessionId()}.json`), '{"cookie": {"originalMax');
    mkdirSync(join(path, `${generateSessionId()}.json`));
    const result = await runCli([
      'import',
      '--from',
      peer.address,
      '--to',
      `file:${join(dir, 'to')}`,
      '--json',
    ]);
    expect(result.code).toBe(5);
    const report = jsonOf<{ counts: object; unreadable: { problem: string }[] }>(result);
    expect(report.counts).toMatchObject({ written: 1, unreadable: 2 });
    expect(report.unreadable.map((entry) => entry.problem).sort()).toEqual([
      'not JSON (encrypted by the peer, or damaged)',
      'unreadable (EISDIR)',
    ]);
  });

  it('a directory with no session-file-store files in it is refused before anything is written, an empty one imports nothing', async () => {
    const dir = nextDir();
    const other = join(dir, 'app');
    mkdirSync(join(other, 'src'), { recursive: true });
    writeFileSync(join(other, 'README.md'), '# app');
    const target = join(dir, 'sessile.db');
    const wrong = await importJson(`session-file-store:${other}`, `sqlite:${target}`);
    expect(wrong.code).toBe(1);
    expect(jsonOf(wrong)).toMatchObject({ error: { code: 'ERR_NOT_PEER_DATA' } });
    expect(wrong.stderr).toContain('not session-file-store data');
    expect(existsSync(target)).toBe(false);

    // No sessions left: hidden files and the peer's temp files are not another's data.
    const empty = join(dir, 'sessions');
    mkdirSync(empty);
    writeFileSync(join(empty, '.DS_Store'), '');
    writeFileSync(join(empty, `${generateSessionId()}.json.1234`), '{');
    const none = await importJson(`session-file-store:${empty}`, `sqlite:${target}`);
    expect(none.code, none.stderr).toBe(0);
    expect(jsonOf(none)).toMatchObject({ counts: { read: 0, written: 0 } });
  });

  it("session-file-store's fileExtension: --file-extension reads its files, without it the directory is refused", async () => {
    const dir = nextDir();
    mkdirSync(dir, { recursive: true });
    const PeerFileStore = (require('session-file-store') as (s: unknown) => StoreClass)(session);
    const path = join(dir, 'sessions');
    const peer = new PeerFileStore({
      path,
      fileExtension: '.sess',
      reapInterval: -1,
      logFn: () => {},
    });
    const app = await startApp(peer);
    const cookie = await login(app, 'ada');
    await app.close();
    const target = join(dir, 'sessile.db');
    const refused = await importJson(`session-file-store:${path}`, `sqlite:${target}`);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('not session-file-store data');
    const result = await importJson(`session-file-store:${path}`, `sqlite:${target}`, [
      '--file-extension',
      '.sess',
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(jsonOf(result)).toMatchObject({ counts: { read: 1, written: 1 } });
    await expectSqliteHolds(target, idOf(cookie));
  });

  it('a session-file-store file gone by the time it is read (a logout on the running app) counts as expired, exit 0', async () => {
    const { dir, peer, path } = await fileStoreWithOneLogin();
    // Listed by name but not there to read, as a file the app deletes during the import.
    symlinkSync(join(dir, 'deleted'), join(path, `${generateSessionId()}.json`));
    const result = await runCli([
      'import',
      '--from',
      peer.address,
      '--to',
      `file:${join(dir, 'to')}`,
      '--json',
    ]);
    expect(result.code, result.stdout).toBe(0);
    expect(jsonOf(result)).toMatchObject({
      counts: { written: 1, expired: 1, unreadable: 0 },
      unreadable: [],
    });
  });

  it('a session that cannot be written again (nested too deep for JSON) is reported and skipped, the rest imported, exit 5', async () => {
    const dir = nextDir();
    const path = join(dir, 'sessions');
    mkdirSync(path, { recursive: true });
    const now = Date.now();
    const good = generateSessionId();
    const deep = generateSessionId();
    const depth = 200_000;
    writeFileSync(
      join(path, `${good}.json`),
      JSON.stringify({ cookie: { originalMaxAge: HOUR_MS }, __lastAccess: now, user: 'ada' }),
    );
    // JSON.parse reads it; writing it out again overflows the stack.
    writeFileSync(
      join(path, `${deep}.json`),
      `{"cookie":{"originalMaxAge":${HOUR_MS}},"__lastAccess":${now},"x":${'['.repeat(depth)}${']'.repeat(depth)}}`,
    );
    const target = join(dir, 'to');
    const result = await importJson(`session-file-store:${path}`, `file:${target}`);
    expect(result.code, result.stdout).toBe(5);
    const report = jsonOf<{ counts: object; unreadable: { id: string; problem: string }[] }>(
      result,
    );
    expect(report.counts).toMatchObject({ written: 1, unreadable: 1 });
    expect(report.unreadable).toEqual([
      {
        id: `${deep.slice(0, 4)}… (${deep.length} characters)`,
        problem: expect.stringContaining('cannot be written as a session'),
      },
    ]);
    const store = await FileStore.open({ path: target });
    try {
      expect(await store.get(good)).toBeDefined();
    } finally {
      await store.close();
    }
  });

  it('sessions session-file-store encrypted with its secret are reported unreadable, not expired, exit 5; a file without __lastAccess lives --default-ttl', async () => {
    const dir = nextDir();
    mkdirSync(dir, { recursive: true });
    const PeerFileStore = (require('session-file-store') as (s: unknown) => StoreClass)(session);
    const path = join(dir, 'sessions');
    const secret = 'keyboard cat, a secret long enough';
    const encrypted = new PeerFileStore({ path, secret, reapInterval: -1, logFn: () => {} });
    const app = await startApp(encrypted);
    await login(app, 'ada');
    await login(app, 'grace');
    await app.close();
    // Written by hand, as session-file-store never does: it never expires such a session.
    const timeless = generateSessionId();
    writeFileSync(
      join(path, `${timeless}.json`),
      '{"cookie":{"originalMaxAge":null},"user":"edsger"}',
    );
    const { result, expectLivesDefaultTtl } = await importIntoFileStore(
      `session-file-store:${path}`,
      join(dir, 'to'),
    );
    expect(result.code).toBe(5);
    const report = jsonOf<{ counts: object; unreadable: { problem: string }[] }>(result);
    expect(report.counts).toMatchObject({ written: 1, expired: 0, unreadable: 2 });
    for (const { problem } of report.unreadable) expect(problem).toMatch(/no cookie/);
    await expectLivesDefaultTtl(timeless);
  });

  it('better-sqlite3-session-store: a browser-session cookie (expires false) under an unreadable expire column lives --default-ttl', async () => {
    const dir = nextDir();
    mkdirSync(dir, { recursive: true });
    const path = join(dir, 'peer.db');
    const db = new Database(path);
    const id = generateSessionId();
    try {
      // The peer's own schema, with an expire value it could not have written.
      db.exec(
        'CREATE TABLE sessions (sid TEXT NOT NULL PRIMARY KEY, sess JSON NOT NULL, expire TEXT NOT NULL)',
      );
      db.prepare('INSERT INTO sessions VALUES (?, ?, ?)').run(
        id,
        JSON.stringify({ cookie: { originalMaxAge: null, expires: false }, user: 'ada' }),
        'not a date',
      );
    } finally {
      db.close();
    }
    const { result, expectLivesDefaultTtl } = await importIntoFileStore(
      `better-sqlite3-session-store:${path}`,
      join(dir, 'to'),
    );
    expect(result.code).toBe(0);
    expect(jsonOf<{ counts: object }>(result).counts).toMatchObject({ written: 1, expired: 0 });
    await expectLivesDefaultTtl(id);
  });

  it('a peer table that is not what the address claims is refused before anything is written', async () => {
    const dir = nextDir();
    mkdirSync(dir, { recursive: true });
    const peer = await (peers['better-sqlite3-session-store'] as (dir: string) => Promise<Peer>)(
      dir,
    );
    await call((done) =>
      peer.store.set(generateSessionId(), { cookie: {} } as session.SessionData, done),
    );
    await peer.close();
    const file = peer.address.slice('better-sqlite3-session-store:'.length);
    const target = join(dir, 'sessile.db');
    const wrong = await runCli([
      'import',
      '--from',
      `connect-sqlite3:${file}`,
      '--to',
      `sqlite:${target}`,
    ]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(
      "table 'sessions' has columns (sid, sess, expire), not connect-sqlite3's",
    );

    const sessile = await SqliteStore.open({ path: target });
    await sessile.close();
    const ours = await runCli([
      'import',
      '--from',
      `better-sqlite3-session-store:${target}`,
      '--to',
      `file:${join(dir, 'x')}`,
    ]);
    expect(ours.code).toBe(1);
    expect(ours.stderr).toContain('not better-sqlite3-session-store');

    writeFileSync(join(dir, 'junk.db'), 'junk '.repeat(500));
    const junk = await runCli([
      'import',
      '--from',
      `connect-sqlite3:${join(dir, 'junk.db')}`,
      '--to',
      `sqlite:${target}`,
    ]);
    expect(junk.code).toBe(1);
    expect(junk.stderr).toContain('junk.db');
    const missing = await runCli([
      'import',
      '--from',
      `session-file-store:${join(dir, 'nope')}`,
      '--to',
      `sqlite:${target}`,
    ]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`${join(dir, 'nope')} does not exist`);
  });

  it('a peer file damaged part way ends the import naming it, with the counts the target holds', async () => {
    const dir = nextDir();
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'peer.db');
    const db = new Database(file);
    db.exec('CREATE TABLE sessions (sid PRIMARY KEY, expired, sess)');
    const insert = db.prepare('INSERT INTO sessions VALUES (?, ?, ?)');
    const expired = Date.now() + HOUR_MS;
    const cookie = { originalMaxAge: HOUR_MS, expires: new Date(expired).toISOString() };
    db.transaction(() => {
      for (let index = 0; index < 2000; index++) {
        insert.run(generateSessionId(), expired, JSON.stringify({ cookie, pad: 'p'.repeat(800) }));
      }
    })();
    const leaves = db
      .prepare(
        "SELECT pageno FROM dbstat WHERE name = 'sessions' AND pagetype = 'leaf' ORDER BY pageno",
      )
      .all() as { pageno: number }[];
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    db.close();
    // A disk fault two thirds of the way through the sessions, past where the peer counts them (its index).
    const damaged = (leaves[Math.floor((leaves.length * 2) / 3)] as { pageno: number }).pageno;
    const handle = openSync(file, 'r+');
    writeSync(handle, Buffer.alloc(pageSize, 0x41), 0, pageSize, (damaged - 1) * pageSize);
    closeSync(handle);

    const target = join(dir, 'sessile.db');
    const ledger = join(dir, 'ledger');
    const result = await runCli([
      'import',
      '--from',
      `connect-sqlite3:${file}`,
      '--to',
      `sqlite:${target}`,
      '--ledger',
      ledger,
      '--concurrency',
      '1024',
      '--json',
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`connect-sqlite3:${file}: cannot read ${file}`);
    const report = jsonOf<{ stopped: boolean; counts: { written: number } }>(result);
    expect(report.stopped, result.stdout).toBe(true);
    const store = await SqliteStore.open({ path: target });
    const held = await store.count();
    await store.close();
    expect(held).toBeGreaterThan(0);
    expect(report.counts.written).toBe(held);
    expect(readFileSync(ledger, 'utf8').split('\n').filter(Boolean)).toHaveLength(held);
  });

  it('--ledger naming a file that is not a ledger (a session file of the peer) exits 2 and leaves it as it was', async () => {
    const dir = nextDir();
    const path = join(dir, 'sessions');
    mkdirSync(path, { recursive: true });
    const sessionFile = join(path, `${generateSessionId()}.json`);
    writeFileSync(
      sessionFile,
      `{"cookie":{"originalMaxAge":3600000,"path":"/"},"user":"ada","__lastAccess":${Date.now()}}`,
    );
    const before = readFileSync(sessionFile, 'utf8');
    const target = join(dir, 'sessile.db');
    const result = await importJson(`session-file-store:${path}`, `sqlite:${target}`, [
      '--ledger',
      sessionFile,
    ]);
    expect(result.code, result.stdout).toBe(2);
    expect(jsonOf(result)).toMatchObject({ ok: false, error: { code: 'ERR_USAGE' } });
    expect(result.stderr).toContain(`--ledger ${sessionFile}: not a ledger`);
    expect(readFileSync(sessionFile, 'utf8')).toBe(before);
    expect(existsSync(target)).toBe(false);
  });

  it('--dry-run writes nothing, and does not create the target', async () => {
    const dir = nextDir();
    mkdirSync(dir, { recursive: true });
    const peer = await (peers['connect-sqlite3'] as (dir: string) => Promise<Peer>)(dir);
    const app = await startApp(peer.store);
    await login(app, 'ada');
    await login(app, 'grace');
    await app.close();
    await peer.close();
    const targetPath = join(dir, 'sessile.db');
    const result = await runCli([
      'import',
      '--from',
      peer.address,
      '--to',
      `sqlite:${targetPath}`,
      '--dry-run',
      '--json',
    ]);
    expect(jsonOf(result)).toMatchObject({ dryRun: true, counts: { written: 2 } });
    expect(existsSync(targetPath)).toBe(false);
  });

  it('--dry-run with a --ledger the real run could not create fails as the real run does', async () => {
    const peer = nextDir();
    mkdirSync(peer, { recursive: true });
    const ledger = join(nextDir(), 'missing', 'import.ledger');
    const args = ['import', '--from', `session-file-store:${peer}`, '--to', `sqlite:${peer}.db`];
    for (const dryRun of [['--dry-run'], []]) {
      const result = await runCli([...args, '--ledger', ledger, ...dryRun, '--json']);
      expect([dryRun, result.code, jsonOf(result)]).toMatchObject([
        dryRun,
        1,
        {
          error: {
            code: 'ERR_STORE_IO',
            message: `--ledger ${ledger}: ENOENT, its directory ${dirname(ledger)} does not exist`,
          },
        },
      ]);
    }
    expect(existsSync(`${peer}.db`)).toBe(false);
  });
});

describe('importing again after the new app took over', () => {
  it('with --ledger, a session logged out on the new app stays out, and new ones arrive', async () => {
    const { dir, peer } = await fileStorePeer();
    const oldApp = await startApp(peer.store);
    const loggedOut = await login(oldApp, 'ada');
    const stayed = await login(oldApp, 'grace');
    const targetPath = join(dir, 'sessile.db');
    const importAgain = () => importWithLedger(peer, targetPath, join(dir, 'imported.ledger'));
    const first = await importAgain();
    expect(jsonOf(first)).toMatchObject({ counts: { written: 2, inLedger: 0 } });
    // Between the two imports: ada logs out on the new app, edsger signs in on the old one.
    const target = await SqliteStore.open({ path: targetPath });
    const newApp = toExpressStore(target);
    await call((done) => newApp.destroy(idOf(loggedOut), done));
    const arrived = await login(oldApp, 'edsger');
    await oldApp.close();
    await peer.close();
    try {
      const second = await importAgain();
      expect(second.code, second.stderr).toBe(0);
      expect(jsonOf(second)).toMatchObject({
        counts: { read: 3, written: 1, present: 0, inLedger: 2, reconciled: { unchanged: 2 } },
      });
      expect(await target.get(idOf(loggedOut))).toBeUndefined();
      expect(await target.get(idOf(stayed))).toBeDefined();
      expect(await target.get(idOf(arrived))).toBeDefined();
    } finally {
      await target.close();
    }
  });
});

/** express-session's data with the field these tests' logins set. */
type Fields = session.SessionData & { user?: string };

/** The session `store` holds under `id`, read through express-session's callback API. */
async function sessionOf(store: session.Store, id: string): Promise<Fields> {
  return (await call<session.SessionData | null>((done) => store.get(id, done))) as Fields;
}

/** `sessile import` of `peer` into the SqliteStore at `targetPath`, with `ledger`, as JSON. */
function importWithLedger(peer: Peer, targetPath: string, ledger: string) {
  return runCli([
    'import',
    '--from',
    peer.address,
    '--to',
    `sqlite:${targetPath}`,
    '--ledger',
    ledger,
    '--json',
  ]);
}

describe('importing again reconciles what the old app changed since', () => {
  for (const [name, open] of Object.entries(peers)) {
    it(`from ${name}, runs again with --ledger and nothing changed on the old app read every session and update none`, async () => {
      const dir = nextDir();
      mkdirSync(dir, { recursive: true });
      const peer = await open(dir);
      const oldApp = await startApp(peer.store);
      for (const user of ['ada', 'grace']) await login(oldApp, user);
      await oldApp.close();
      // The old app stopped: LevelDB lets one process open the directory.
      await peer.close();
      const targetPath = join(dir, 'sessile.db');
      const importAgain = () => importWithLedger(peer, targetPath, join(dir, 'imported.ledger'));
      expect(jsonOf(await importAgain())).toMatchObject({ counts: { read: 2, written: 2 } });
      for (let again = 0; again < 2; again++) {
        const result = await importAgain();
        expect(result.code, result.stderr).toBe(0);
        expect(jsonOf(result)).toMatchObject({
          counts: {
            read: 2,
            written: 0,
            inLedger: 2,
            reconciled: { unchanged: 2, updated: 0, deleted: 0, keptChanged: 0 },
          },
        });
      }
    });
  }

  it('with --ledger, a session logged out on the old app since is deleted from the target, one changed there is updated, one the new app changed is kept', async () => {
    const { dir, peer } = await fileStorePeer();
    const oldApp = await startApp(peer.store);
    const loggedOut = idOf(await login(oldApp, 'ada'));
    const changed = idOf(await login(oldApp, 'grace'));
    const untouched = idOf(await login(oldApp, 'edsger'));
    const usedOnTarget = idOf(await login(oldApp, 'barbara'));
    await oldApp.close();
    const targetPath = join(dir, 'sessile.db');
    const importAgain = () => importWithLedger(peer, targetPath, join(dir, 'imported.ledger'));
    const first = await importAgain();
    expect(jsonOf(first)).toMatchObject({ counts: { written: 4, inLedger: 0 } });
    const target = await SqliteStore.open({ path: targetPath });
    const newApp = toExpressStore(target);
    try {
      // After the first pass: ada logs out on the old app, grace's session changes there, and
      // barbara, already on the new app, changes hers there as the old app changes it too.
      await call((done) => peer.store.destroy(loggedOut, done));
      for (const id of [changed, usedOnTarget]) {
        const old = await sessionOf(peer.store, id);
        const fields: Fields = { ...old, user: 'changed on the old app' };
        await call((done) => peer.store.set(id, fields, done));
      }
      const onTarget = await sessionOf(newApp, usedOnTarget);
      const byNewApp: Fields = { ...onTarget, user: 'new app' };
      await call((done) => newApp.set(usedOnTarget, byNewApp, done));
      const untouchedBefore = await target.get(untouched);
      const second = await importAgain();
      expect(second.code, second.stderr).toBe(0);
      expect(jsonOf(second)).toMatchObject({
        counts: { written: 0, inLedger: 3, reconciled: { deleted: 1, updated: 1, keptChanged: 1 } },
      });
      expect(await target.get(loggedOut)).toBeUndefined();
      expect((await sessionOf(newApp, changed)).user).toBe('changed on the old app');
      expect((await sessionOf(newApp, usedOnTarget)).user).toBe('new app');
      expect(await target.get(untouched)).toEqual(untouchedBefore);
      const third = await importAgain();
      expect(jsonOf(third)).toMatchObject({
        counts: { reconciled: { deleted: 0, updated: 0, keptChanged: 1 } },
      });
    } finally {
      await target.close();
      await peer.close();
    }
  });

  it('with --ledger, a change on the old app reaches a session the new app only renewed (express-session touch), keeping its later expiry', async () => {
    const { dir, peer } = await fileStorePeer();
    const oldApp = await startApp(peer.store);
    const renewed = idOf(await login(oldApp, 'ada'));
    await oldApp.close();
    const targetPath = join(dir, 'sessile.db');
    const importAgain = () => importWithLedger(peer, targetPath, join(dir, 'imported.ledger'));
    expect(jsonOf(await importAgain())).toMatchObject({ counts: { written: 1 } });
    const target = await SqliteStore.open({ path: targetPath });
    const newApp = toExpressStore(target);
    try {
      // A read-only request on the new app renews it (resave: false touches), while the old
      // app, still draining, saves a change to it.
      const onTarget = await sessionOf(newApp, renewed);
      const later = new Date(Date.now() + 10 * 86_400_000);
      const touched = { ...onTarget, cookie: { ...onTarget.cookie, expires: later } } as Fields;
      await call((done) => newApp.touch?.(renewed, touched, done));
      const old = await sessionOf(peer.store, renewed);
      const changed: Fields = { ...old, user: 'changed on the old app' };
      await call((done) => peer.store.set(renewed, changed, done));
      const second = await importAgain();
      expect(second.code, second.stderr).toBe(0);
      expect(jsonOf(second)).toMatchObject({
        counts: { reconciled: { updated: 1, keptChanged: 0 } },
      });
      expect((await sessionOf(newApp, renewed)).user).toBe('changed on the old app');
      expect((await target.get(renewed))?.expiresAt).toBe(later.getTime());
    } finally {
      await target.close();
      await peer.close();
    }
  });
});

/** `sessile import --from <from> --to <to> --json`. */
function importJson(from: string, to: string, options: readonly string[] = []) {
  return runCli(['import', '--from', from, '--to', to, ...options, '--json']);
}

/** Checks that the SqliteStore at `path` holds a live session `id`. */
async function expectSqliteHolds(path: string, id: string): Promise<void> {
  const store = await SqliteStore.open({ path });
  try {
    expect(await store.get(id)).toBeDefined();
  } finally {
    await store.close();
  }
}
