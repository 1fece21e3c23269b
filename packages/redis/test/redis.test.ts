import { constants } from 'node:buffer';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { isSessionError, jsonCodec, type SessionLock, type SessionRecord } from '@sessile/core';
import {
  encodeLibrarySession,
  openStoreAdapter,
  READS_TEXT,
  RECORD_TEXT,
} from '@sessile/core/store';
import { RedisStore } from '@sessile/redis';
import { createClient, createClientPool } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  closedPort,
  deleteKeys,
  FakeRedis,
  OwnRedis,
  runPrefix,
  SilentServer,
  STANDALONE_URL,
} from './redis-server.js';

const HOUR_MS = 3_600_000;
const root = runPrefix('specific');
const newId = () => Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString('base64url');
const bytes = (text: string) => new TextEncoder().encode(text);

/** A record's header as the README documents format 3, to write values the store did not. */
function header(parts: {
  format?: number;
  expiresAt?: number;
  indexedUntil?: number;
  ownerLength?: string;
}): string {
  const hex = (value: number) => {
    const float = Buffer.alloc(8);
    float.writeDoubleBE(value);
    return float.toString('hex');
  };
  const expiresAt = parts.expiresAt ?? Date.now() + HOUR_MS;
  const indexedUntil = hex(parts.indexedUntil ?? 0);
  return `~s${parts.format ?? 3}${hex(expiresAt)}${indexedUntil}${parts.ownerLength ?? '0000'}`;
}
let opened = 0;
const newPrefix = () => `${root}${++opened}:`;
const indexKey = (prefix: string, owner: string) =>
  `${prefix}o:{${Buffer.from(owner).toString('base64url')}}`;

const raw = createClient({ url: STANDALONE_URL });
beforeAll(async () => {
  await raw.connect();
});
afterAll(async () => {
  raw.destroy();
  await deleteKeys(STANDALONE_URL, root);
});

async function withStore(body: (store: RedisStore, prefix: string) => Promise<void>) {
  const prefix = newPrefix();
  const store = await RedisStore.open({ url: STANDALONE_URL, prefix });
  try {
    await body(store, prefix);
  } finally {
    await store.close();
  }
}

describe('RedisStore.open()', () => {
  it('refuses bad options with a TypeError, rejecting rather than throwing, before any connection', async () => {
    const nowhere = `redis://127.0.0.1:${await closedPort()}`;
    const bad: unknown[] = [
      undefined,
      {},
      { url: STANDALONE_URL, client: raw },
      { url: STANDALONE_URL, prefx: 'x:' },
      { url: 42 },
      { url: STANDALONE_URL, prefix: 'a{b}:' },
      { url: STANDALONE_URL, prefix: '' },
      { url: STANDALONE_URL, commandTimeoutMs: -1 },
      { url: STANDALONE_URL, commandTimeoutMs: 2 ** 31 },
      { url: 'http://127.0.0.1:6379' },
      { url: 'redis://127.0.0.1:port' },
      { url: STANDALONE_URL, maxRecordBytes: 0 },
      { url: STANDALONE_URL, maxRecordBytes: 1.5 },
      { url: STANDALONE_URL, maxRecordBytes: '10' },
      // Refused before connecting, so never reported as the connection's failure.
      { url: nowhere, maxRecordBytes: -1 },
    ];
    for (const options of bad) {
      const opening = RedisStore.open(options as never);
      await expect(opening).rejects.toThrow(TypeError);
    }
    await expect(RedisStore.open({ url: STANDALONE_URL, prefx: 'x:' } as never)).rejects.toThrow(
      /prefix/,
    );
  });

  it('refuses a maxRecordBytes above what one Redis string holds with its header and owner, before connecting', async () => {
    // A record's value is its 39-byte header, the owner (up to 768 bytes of UTF-8) and the data.
    // Redis refuses a longer argument than 512 MiB by closing the connection, failing every
    // command on it, and node-redis cannot read a value back as text past V8's longest string.
    const largest = constants.MAX_STRING_LENGTH - 39 - 768;
    const nowhere = `redis://127.0.0.1:${await closedPort()}`;
    for (const maxRecordBytes of [largest + 1, 512 * 1024 * 1024, 2 ** 40]) {
      const refused = await RedisStore.open({ url: nowhere, maxRecordBytes }).catch((e) => e);
      expect(refused).toBeInstanceOf(TypeError);
      expect(refused.message).toContain('maxRecordBytes');
    }
    const store = await RedisStore.open({
      url: STANDALONE_URL,
      prefix: newPrefix(),
      maxRecordBytes: largest,
    });
    expect(store.maxRecordBytes).toBe(largest);
    await store.close();
  });

  it('refuses a client that is not a node-redis 5 client, pool included, with a TypeError before connecting it', async () => {
    const pool = createClientPool({ url: STANDALONE_URL });
    const notClients: unknown[] = [pool, {}, { connect: async () => {}, isOpen: false }];
    try {
      for (const client of notClients) {
        const refused = await RedisStore.open({ client: client as never }).catch((e) => e);
        expect(refused).toBeInstanceOf(TypeError);
        expect(refused.message).toContain('node-redis 5 client');
      }
      expect(pool.isOpen).toBe(false);
    } finally {
      pool.destroy();
    }
  });

  it("a malformed url's error never holds the url or its password", async () => {
    for (const url of [
      'redis://user:hunter2@[::1',
      'redis://user:hunter2@127.0.0.1:99999',
      'ftp://user:hunter2@127.0.0.1',
    ]) {
      const error = await RedisStore.open({ url }).catch((e) => e);
      expect(error).toBeInstanceOf(TypeError);
      expect(inspect(error, { depth: 5, showHidden: true })).not.toContain('hunter2');
    }
  });

  it('a url whose credentials or database node-redis cannot read is a TypeError naming url, before connecting', async () => {
    const nowhere = `127.0.0.1:${await closedPort()}`;
    for (const url of [
      // A '%' that starts no escape: node-redis's decodeURIComponent threw a URIError.
      `redis://:50%off-hunter2@${nowhere}`,
      `redis://hunter2%:secret@${nowhere}`,
      // A path that is no database number.
      `redis://:hunter2@${nowhere}/sessions`,
      `redis://:hunter2@${nowhere}/1.5`,
      `redis://:hunter2@${nowhere}/-1`,
    ]) {
      const error = await RedisStore.open({ url }).catch((e) => e);
      expect(error).toBeInstanceOf(TypeError);
      expect(error.message).toMatch(/^url /);
      expect(inspect(error, { depth: 5, showHidden: true })).not.toContain('hunter2');
    }
  });

  it('a server that does not answer rejects with ERR_STORE_IO naming it', async () => {
    const error = await RedisStore.open({ url: 'redis://127.0.0.1:7119' }).catch((e) => e);
    expect(isSessionError(error, 'ERR_STORE_IO')).toBe(true);
    expect(error.message).toContain('127.0.0.1:7119');
  });

  it('a server that accepts the connection and never answers rejects within commandTimeoutMs, leaving no connection', async () => {
    const silent = new SilentServer();
    await silent.start();
    try {
      const error = await RedisStore.open({ url: silent.url, commandTimeoutMs: 200 }).catch(
        (e) => e,
      );
      expect(isSessionError(error, 'ERR_STORE_IO')).toBe(true);
      expect(error.message).toContain(`127.0.0.1:${silent.port}`);
      await silent.allClosed();
      const accepted = silent.accepted.length;
      await new Promise((resolve) => setTimeout(resolve, 300));
      // Nothing reconnects afterwards.
      expect(silent.accepted.length).toBe(accepted);
    } finally {
      await silent.stop();
    }
  });

  it('a release channel that never subscribes rejects within commandTimeoutMs, leaving no connection', async () => {
    // Commands reach the real Redis; the subscriber's own connection is never answered.
    const silent = new SilentServer(1);
    await silent.start();
    try {
      const error = await RedisStore.open({
        url: silent.url,
        prefix: newPrefix(),
        commandTimeoutMs: 300,
      }).catch((e) => e);
      expect(isSessionError(error, 'ERR_STORE_IO')).toBe(true);
      expect(error.message).toContain(`127.0.0.1:${silent.port}: subscribe`);
      expect(silent.accepted.length).toBe(2);
      await silent.allClosed();
    } finally {
      await silent.stop();
    }
  });

  it("an app's client that cannot connect rejects within commandTimeoutMs with ERR_STORE_IO naming the server, and is left to the app", async () => {
    const port = await closedPort();
    const retrying = createClient({ url: `redis://127.0.0.1:${port}` });
    retrying.on('error', () => {});
    const error = await RedisStore.open({ client: retrying, commandTimeoutMs: 200 }).catch(
      (e) => e,
    );
    expect(isSessionError(error, 'ERR_STORE_IO')).toBe(true);
    // Every try was refused: that is what the error says and keeps, not that nothing answered.
    expect(error.message).toContain(`127.0.0.1:${port}: connect failed: `);
    expect(error.message).toContain('ECONNREFUSED');
    expect(error.cause).toBeInstanceOf(Error);
    expect((error.cause as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
    // Still reconnecting by its own strategy: the app decides when to stop it.
    expect(retrying.isOpen).toBe(true);
    retrying.destroy();

    // The same for one whose connect() the app started and did not await.
    const started = createClient({ url: `redis://127.0.0.1:${port}` });
    started.on('error', () => {});
    started.connect().catch(() => {});
    const waited = await RedisStore.open({ client: started, commandTimeoutMs: 200 }).catch(
      (e) => e,
    );
    expect(isSessionError(waited, 'ERR_STORE_IO')).toBe(true);
    expect(waited.message).toContain(`127.0.0.1:${port}: connect failed: `);
    expect((waited.cause as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
    started.destroy();

    const once = createClient({
      url: `redis://127.0.0.1:${port}`,
      socket: { reconnectStrategy: false },
    });
    once.on('error', () => {});
    const refused = await RedisStore.open({ client: once }).catch((e) => e);
    expect(isSessionError(refused, 'ERR_STORE_IO')).toBe(true);
    expect(refused.message).toContain(`127.0.0.1:${port}: connect failed`);
    expect(refused.cause).toBeInstanceOf(Error);
  });

  it("names an app's client on a Unix socket by its path, in open's errors and once connected", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sessile-redis-sock-'));
    const path = join(dir, 'redis.sock');
    const missing = createClient({ socket: { path, reconnectStrategy: false } });
    missing.on('error', () => {});
    const refused = await RedisStore.open({ client: missing }).catch((e) => e);
    expect(isSessionError(refused, 'ERR_STORE_IO')).toBe(true);
    expect(refused.message).toContain(`Redis at ${path}: connect failed`);

    // The machine's Redis, reached through a socket file that forwards to it.
    const { port, hostname } = new URL(STANDALONE_URL);
    const piped = new Set<Socket>();
    const forwarder = createServer((socket) => {
      const upstream = connect(Number(port || 6379), hostname);
      for (const end of [socket, upstream]) {
        piped.add(end);
        end.on('error', () => {});
      }
      socket.pipe(upstream).pipe(socket);
    });
    await new Promise<void>((resolve) => forwarder.listen(path, resolve));
    const client = createClient({ socket: { path, reconnectStrategy: false } });
    client.on('error', () => {});
    const store = await RedisStore.open({ client, prefix: newPrefix() });
    try {
      await store.set(newId(), { data: bytes('x'), expiresAt: Date.now() + HOUR_MS });
      const closing = new Promise((resolve) => forwarder.close(resolve));
      for (const end of piped) end.destroy();
      await closing;
      await expect.poll(() => client.isReady).toBe(false);
      const failed = await store.get(newId()).catch((e) => e);
      expect(isSessionError(failed, 'ERR_STORE_IO')).toBe(true);
      expect(failed.message).toContain(`Redis at ${path}`);
      expect(failed.message).not.toContain('localhost');
    } finally {
      await store.close();
      if (client.isOpen) client.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses an app's client in RESP2's subscriber mode, where Redis takes no other command, naming the option", async () => {
    const client = createClient({ url: STANDALONE_URL });
    await client.connect();
    await client.subscribe(`${newPrefix()}channel`, () => {});
    const refused = await RedisStore.open({ client, prefix: newPrefix() }).catch((e) => e);
    expect(refused).toBeInstanceOf(TypeError);
    expect(refused.message).toContain('options.client');
    expect(client.isPubSubActive).toBe(true);
    client.destroy();
  });

  it("refuses an app's client left inside a MULTI transaction, where Redis runs no command until EXEC, naming the option", async () => {
    const client = createClient({ url: STANDALONE_URL });
    await client.connect();
    try {
      await client.sendCommand(['MULTI']);
      const refused = await RedisStore.open({ client, prefix: newPrefix() }).catch((e) => e);
      expect(refused).toBeInstanceOf(TypeError);
      expect(refused.message).toContain('options.client');
      expect(refused.message).toContain('inside a MULTI transaction');
      // The app's transaction is the app's to end; its client still works afterwards.
      await client.sendCommand(['DISCARD']);
      expect(await client.ping()).toBe('PONG');
    } finally {
      client.destroy();
    }
  });

  it("uses the app's client without closing it", async () => {
    const client = createClient({ url: STANDALONE_URL });
    await client.connect();
    const store = await RedisStore.open({ client, prefix: newPrefix() });
    const id = newId();
    await store.set(id, { data: bytes('app'), expiresAt: Date.now() + HOUR_MS });
    await store.clear();
    await store.close();
    expect(client.isReady).toBe(true);
    expect(await client.ping()).toBe('PONG');
    client.destroy();
  });
});

describe('RedisStore.open() and the server version', () => {
  it("reads the server's version with INFO server before it serves, and opens on Redis 7", async () => {
    const client = createClient({ url: STANDALONE_URL });
    client.on('error', () => {});
    await client.connect();
    const sent: string[] = [];
    const send = client.sendCommand.bind(client);
    client.sendCommand = ((args: string[], options: never) => {
      sent.push(args.join(' '));
      return send(args, options);
    }) as never;
    try {
      const store = await RedisStore.open({ client, prefix: newPrefix() });
      expect(sent[0]).toBe('INFO server');
      const info = String(await send(['INFO', 'server']));
      expect(Number(/^redis_version:(\d+)\./m.exec(info)?.[1])).toBeGreaterThanOrEqual(7);
      await store.close();
    } finally {
      client.destroy();
    }
  });

  it('refuses a server older than Redis 7.0 with ERR_UNSUPPORTED naming it and both versions, never its password', async () => {
    const old = new FakeRedis('6.2.14');
    await old.start();
    try {
      const url = `redis://sessile:hunter2@127.0.0.1:${old.port}`;
      const refused = await RedisStore.open({ url, prefix: newPrefix() }).catch((e) => e);
      expect(isSessionError(refused, 'ERR_UNSUPPORTED'), String(refused)).toBe(true);
      expect(refused.message).toBe(
        `Redis at 127.0.0.1:${old.port} runs Redis 6.2.14; @sessile/redis needs Redis 7.0 or newer (SET PXAT, ZADD GT, PEXPIRETIME)`,
      );
      expect(inspect(refused, { depth: 5, showHidden: true })).not.toContain('hunter2');
      // Refused before anything was written, subscribed or left connected.
      expect(old.received.some((command) => /^(SET|EVALSHA|EVAL|SUBSCRIBE) /i.test(command))).toBe(
        false,
      );
      await old.allClosed();

      // An app's client is refused alike, and left to the app.
      const client = createClient({ url });
      client.on('error', () => {});
      await client.connect();
      const alsoRefused = await RedisStore.open({ client, prefix: newPrefix() }).catch((e) => e);
      expect(isSessionError(alsoRefused, 'ERR_UNSUPPORTED')).toBe(true);
      expect(alsoRefused.message).toContain('runs Redis 6.2.14');
      expect(client.isReady).toBe(true);
      client.destroy();
    } finally {
      await old.stop();
    }
  });

  it('reads the version from HELLO where an ACL refuses INFO, which it answers whatever the ACL', async () => {
    const own = new OwnRedis(7141);
    await own.start();
    const admin = createClient({ url: own.url });
    admin.on('error', () => {});
    try {
      await admin.connect();
      // Redis answers HELLO before authentication, so no ACL refuses it, '-hello' included.
      const rules = ['on', '>hunter2', '~*', '&*', '+@all', '-info', '-hello'];
      await admin.sendCommand(['ACL', 'SETUSER', 'noinfo', ...rules]);
      const url = `redis://noinfo:hunter2@127.0.0.1:${own.port}`;
      const store = await RedisStore.open({ url, prefix: newPrefix() });
      const id = newId();
      await store.set(id, { data: bytes('x'), expiresAt: Date.now() + HOUR_MS });
      expect(await store.get(id)).toBeDefined();
      await store.close();
      const stats = String(await admin.sendCommand(['INFO', 'commandstats']));
      expect(stats).toMatch(/cmdstat_info:calls=\d+,.*,rejected_calls=1,/);
      expect(stats).toMatch(/cmdstat_hello:calls=1,/);
      // Over RESP3, HELLO's answer is a map, and node-redis's own handshake is a HELLO too.
      const resp3 = createClient({ url, RESP: 3 });
      resp3.on('error', () => {});
      await resp3.connect();
      try {
        const overResp3 = await RedisStore.open({ client: resp3, prefix: newPrefix() });
        await overResp3.close();
      } finally {
        resp3.destroy();
      }
      const after = String(await admin.sendCommand(['INFO', 'commandstats']));
      expect(after).toMatch(/cmdstat_info:calls=\d+,.*,rejected_calls=2,/);
      // The store's HELLO, and node-redis's on the client and on the store's subscriber.
      expect(Number(/cmdstat_hello:calls=(\d+),/.exec(after)?.[1])).toBe(4);
    } finally {
      admin.destroy();
      await own.remove();
    }
  });

  it('reads an older version from HELLO where INFO is refused, and refuses a server that tells it by neither', async () => {
    const noInfo = "NOPERM this user has no permissions to run the 'info' command";
    const hidden = new FakeRedis('6.2.14', { INFO: noInfo });
    // Redis before 6.0 knows no HELLO; this one also has INFO renamed.
    const ancient = new FakeRedis('5.0.14', {
      INFO: "ERR unknown command 'INFO', with args beginning with: 'server' ",
      HELLO: "ERR unknown command 'HELLO', with args beginning with: ",
    });
    await hidden.start();
    await ancient.start();
    try {
      const old = await RedisStore.open({ url: `redis://127.0.0.1:${hidden.port}` }).catch(
        (e) => e,
      );
      expect(isSessionError(old, 'ERR_UNSUPPORTED'), String(old)).toBe(true);
      expect(old.message).toContain(`Redis at 127.0.0.1:${hidden.port} runs Redis 6.2.14;`);
      expect(hidden.received).toContain('HELLO');

      const unknown = await RedisStore.open({
        url: `redis://sessile:hunter2@127.0.0.1:${ancient.port}`,
      }).catch((e) => e);
      expect(isSessionError(unknown, 'ERR_UNSUPPORTED'), String(unknown)).toBe(true);
      expect(unknown.message).toContain(
        `Redis at 127.0.0.1:${ancient.port} refused both INFO and HELLO, so its version is unknown`,
      );
      expect(unknown.message).toContain("unknown command 'HELLO'");
      expect(unknown.message).toContain('needs Redis 7.0 or newer');
      expect(inspect(unknown, { depth: 5, showHidden: true })).not.toContain('hunter2');
      await hidden.allClosed();
      await ancient.allClosed();
    } finally {
      await hidden.stop();
      await ancient.stop();
    }
  });

  it("listens for the reconnects of an app's client once, however many stores share it, and no longer once they close", async () => {
    const client = createClient({ url: STANDALONE_URL });
    client.on('error', () => {});
    await client.connect();
    const listeners = client.listenerCount('connect');
    try {
      const stores = await Promise.all(
        Array.from({ length: 12 }, () => RedisStore.open({ client, prefix: newPrefix() })),
      );
      expect(client.listenerCount('connect')).toBe(listeners + 1);
      for (const store of stores) await store.close();
      expect(client.listenerCount('connect')).toBe(listeners);
    } finally {
      client.destroy();
    }
  });

  it("waits for an app's client whose connect() is still under way, within commandTimeoutMs", async () => {
    const client = createClient({ url: STANDALONE_URL });
    client.on('error', () => {});
    const connecting = client.connect();
    try {
      const store = await RedisStore.open({ client, prefix: newPrefix() });
      await connecting;
      await store.close();
    } finally {
      client.destroy();
    }
  });
});

describe('RedisStore.close()', () => {
  it("resolves after the app's client gave up reconnecting, and leaves that client to the app", async () => {
    // The app's client and the store's subscriber (its duplicate, with the same strategy).
    const relay = new SilentServer(2);
    await relay.start();
    const client = createClient({ url: relay.url, socket: { reconnectStrategy: false } });
    client.on('error', () => {});
    await client.connect();
    try {
      const store = await RedisStore.open({ client, prefix: newPrefix() });
      await store.set(newId(), { data: bytes('x'), expiresAt: Date.now() + HOUR_MS });
      await relay.stop();
      await expect.poll(() => client.isOpen).toBe(false);
      await expect(store.get(newId())).rejects.toMatchObject({ code: 'ERR_STORE_IO' });
      await expect(store.close()).resolves.toBeUndefined();
      await expect(store.close()).resolves.toBeUndefined();
    } finally {
      if (client.isOpen) client.destroy();
    }
  });

  it("lets a lock's release() made just before it go out: the release resolves and another store takes the lock at once", async () => {
    const prefix = newPrefix();
    const store = await RedisStore.open({ url: STANDALONE_URL, prefix });
    const other = await RedisStore.open({ url: STANDALONE_URL, prefix });
    try {
      const id = newId();
      const lock = await store.locks.acquire(id, { leaseMs: 60_000 });
      // Not awaited before close(), as a request that ends while the app shuts down.
      const released = lock.release().then(
        () => 'released',
        (error: Error) => error,
      );
      await store.close();
      expect(await released).toBe('released');
      const next = await other.locks.acquire(id, { waitMs: 0 });
      await next.release();
    } finally {
      await store.close();
      await other.close();
    }
  });
});

describe('RedisStore keys', () => {
  it('get never returns a record past expiresAt, even while Redis still holds the key', async () => {
    await withStore(async (store, prefix) => {
      const id = newId();
      const expiresAt = Date.now() + 50;
      await store.set(id, { data: bytes('soon'), expiresAt });
      // Redis's clock may lag the app's: the key outlives the record's own expiresAt here.
      await raw.pExpire(`${prefix}s:{${id}}`, HOUR_MS);
      await new Promise((resolve) => setTimeout(resolve, 80));
      expect(await raw.exists(`${prefix}s:{${id}}`)).toBe(1);
      expect(await store.get(id)).toBeUndefined();
    });
  });

  it('sets PXAT so Redis drops the record at its expiresAt, and touch moves it', async () => {
    await withStore(async (store, prefix) => {
      const id = newId();
      const expiresAt = Date.now() + HOUR_MS;
      await store.set(id, { data: bytes('kept'), expiresAt });
      expect(await raw.pExpireTime(`${prefix}s:{${id}}`)).toBe(expiresAt - 1);
      expect(await store.touch(id, expiresAt + 1000)).toBe(true);
      expect(await raw.pExpireTime(`${prefix}s:{${id}}`)).toBe(expiresAt + 999);
      const record = await store.get(id);
      expect(record?.expiresAt).toBe(expiresAt + 1000);
      expect(new TextDecoder().decode(record?.data)).toBe('kept');
    });
  });

  it('a touch whose new expiry Redis finds already past ends the session and leaves no key', async () => {
    await withStore(async (store, prefix) => {
      const id = newId();
      const key = `${prefix}s:{${id}}`;
      await store.set(id, { data: bytes('kept'), expiresAt: Date.now() + HOUR_MS });
      // The app's clock 10 s behind Redis's (or the touch 10 s late): a second more by the app's
      // clock is already past by Redis's, whose PEXPIREAT then deletes the key.
      const realNow = Date.now;
      const behind = realNow() - 10_000;
      Date.now = () => behind;
      let touched: boolean;
      try {
        touched = await store.touch(id, behind + 1000);
      } finally {
        Date.now = realNow;
      }
      expect(touched).toBe(false);
      expect(await raw.exists(key)).toBe(0);
      expect(await store.get(id)).toBeUndefined();
    });
  });

  it('never reads, counts, lists or clears a key outside its prefix, glob characters included', async () => {
    const prefix = `${root}glob*?[x]:`;
    const store = await RedisStore.open({ url: STANDALONE_URL, prefix });
    try {
      const mine = newId();
      const foreign = newId();
      await store.set(mine, { data: bytes('mine'), expiresAt: Date.now() + HOUR_MS });
      const neighbours = [
        `${root}globXYx]:s:{${foreign}}`,
        `${root}glob*?[x]:other`,
        `${root}other:s:{${foreign}}`,
      ];
      for (const key of neighbours) await raw.set(key, 'not ours');
      expect(await store.count()).toBe(1);
      const listed: string[] = [];
      for await (const id of store.ids()) listed.push(id);
      expect(listed).toEqual([mine]);
      await store.clear();
      expect(await store.count()).toBe(0);
      for (const key of neighbours) expect(await raw.get(key)).toBe('not ours');
    } finally {
      await store.close();
    }
  });

  it("refuses a prefix that is not well-formed Unicode, whose keys would be another prefix's", async () => {
    // Redis keys are UTF-8: a lone surrogate is sent as U+FFFD, so '\uD800' and '\uDC00' would
    // name the same keys, and SCAN would find none of them under either prefix.
    for (const prefix of [`${root}\uD800:`, `${root}\uDC00:`, `${root}\uDFFF\uD800:`]) {
      const refused = await RedisStore.open({ url: STANDALONE_URL, prefix }).catch((e) => e);
      if (refused instanceof RedisStore) await refused.close();
      expect(refused).toBeInstanceOf(TypeError);
      expect(refused.message).toContain('prefix');
    }
    const store = await RedisStore.open({ url: STANDALONE_URL, prefix: `${root}\u{1F511}:` });
    try {
      const id = newId();
      await store.set(id, { data: bytes('key'), expiresAt: Date.now() + HOUR_MS });
      expect(await store.count()).toBe(1);
    } finally {
      await store.close();
    }
  });

  it('counts and lists only keys that name a session id, so every listed id can be read', async () => {
    await withStore(async (store, prefix) => {
      const mine = newId();
      await store.set(mine, { data: bytes('mine'), expiresAt: Date.now() + HOUR_MS });
      // Someone else's keys under the prefix, in the shape of a record key.
      for (const stray of ['', 'short', 'not a session id', `${newId()}.bak`, 'a}b'.repeat(8)]) {
        await raw.set(`${prefix}s:{${stray}}`, header({}));
      }
      expect(await store.count()).toBe(1);
      const listed: string[] = [];
      for await (const id of store.ids()) listed.push(id);
      expect(listed).toEqual([mine]);
      for (const id of listed) await store.get(id);
    });
  });

  it('a record of a newer format rejects with ERR_UNSUPPORTED, other bytes with ERR_CORRUPT_RECORD', async () => {
    await withStore(async (store, prefix) => {
      const newer = newId();
      await raw.set(`${prefix}s:{${newer}}`, header({ format: 4 }));
      await expect(store.get(newer)).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED' });
      for (const bad of [
        '~s1',
        header({ format: 2 }),
        header({}).slice(0, 38),
        header({ ownerLength: '000A' }),
        header({ ownerLength: 'zz00' }),
      ]) {
        const garbage = newId();
        await raw.set(`${prefix}s:{${garbage}}`, bad);
        await expect(store.get(garbage)).rejects.toMatchObject({ code: 'ERR_CORRUPT_RECORD' });
      }
      // The header as this version writes it reads back, data and all.
      const whole = newId();
      await raw.set(`${prefix}s:{${whole}}`, `${header({})}{"a":1}`);
      const record = await store.get(whole);
      expect(Buffer.from(record?.data ?? []).toString()).toBe('{"a":1}');
    });
  });

  it('get, lend (bytes or text) and touch reject the same bytes alike, and touch leaves them as they are', async () => {
    // A reader of text, as core's library adapters are: lend then asks Redis for text first.
    const textReader = Object.defineProperty(
      (record: Readonly<SessionRecord>) => record.data.byteLength,
      READS_TEXT,
      { value: true },
    );
    await withStore(async (store, prefix) => {
      const foreign = Buffer.from('hello world, not sessile');
      // What the unpublished format 2 wrote: binary magic f5 5e, version 2, float64s.
      const formerFormat = Buffer.alloc(24);
      formerFormat.set([0xf5, 0x5e, 2]);
      formerFormat.writeDoubleBE(Date.now() + HOUR_MS, 3);
      const newer = Buffer.from(header({ format: 4 }));
      const noExpiry = Buffer.from(`${header({ expiresAt: Number.NaN })}x`);
      const infinite = Buffer.from(`${header({ expiresAt: Number.POSITIVE_INFINITY })}x`);
      const noIndexedUntil = Buffer.from(`${header({ indexedUntil: Number.NaN })}x`);
      // A whole header whose owner length runs past the value's end.
      const cutShort = Buffer.from(`${header({ ownerLength: '000a' })}abc`);
      const values = [
        foreign,
        Buffer.alloc(0),
        Buffer.from('~'),
        formerFormat,
        newer,
        noExpiry,
        infinite,
        noIndexedUntil,
        cutShort,
      ];
      for (const value of values) {
        const id = newId();
        const key = `${prefix}s:{${id}}`;
        await raw.set(key, value);
        const read = await store.get(id).catch((e) => e);
        expect(read.code).toMatch(/^ERR_(CORRUPT_RECORD|UNSUPPORTED)$/);
        await expect(store.lend(id, (record) => record.expiresAt)).rejects.toMatchObject({
          code: read.code,
        });
        await expect(store.lend(id, textReader)).rejects.toMatchObject({ code: read.code });
        for (const expiresAt of [Date.now() + HOUR_MS, Date.now() - 1]) {
          await expect(store.touch(id, expiresAt)).rejects.toMatchObject({ code: read.code });
        }
        const kept = await raw.sendCommand(['GET', key], { typeMapping: { 36: Buffer } });
        expect(kept).toEqual(value);
        expect(await raw.pTTL(key)).toBe(-1);
      }
    });
  });

  it.each([
    ['cut within a character', [0x61, 0xc3]],
    ['with a byte no UTF-8 holds', [0xff, 0xfe]],
    ['in an overlong form', [0xc0, 0xaf]],
    ['holding a surrogate', [0xed, 0xa0, 0x80]],
  ])(
    'an owner %s rejects get, lend and touch as a corrupt record, and indexes nothing',
    async (_name, ownerBytes) => {
      await withStore(async (store, prefix) => {
        // A whole header whose index entry covers any touch here, then the owner's bytes.
        const value = Buffer.concat([
          Buffer.from(
            header({
              indexedUntil: Date.now() + 2000 * HOUR_MS,
              ownerLength: ownerBytes.length.toString(16).padStart(4, '0'),
            }),
          ),
          Buffer.from(ownerBytes),
          Buffer.from('{}'),
        ]);
        const id = newId();
        const key = `${prefix}s:{${id}}`;
        await raw.set(key, value);
        const corrupt = { code: 'ERR_CORRUPT_RECORD' };
        await expect(store.get(id)).rejects.toMatchObject(corrupt);
        await expect(store.lend(id, (record) => record.owner)).rejects.toMatchObject(corrupt);
        // Within the entry (no owner steps needed) and past it, alike.
        await expect(store.touch(id, Date.now() + HOUR_MS)).rejects.toMatchObject(corrupt);
        await expect(store.touch(id, Date.now() + 3000 * HOUR_MS)).rejects.toMatchObject(corrupt);
        expect(await raw.sendCommand(['GET', key], { typeMapping: { 36: Buffer } })).toEqual(value);
        const indexes = await raw.keys(`${prefix}o:*`);
        expect(indexes).toEqual([]);
        // Expiring it needs no owner: like any record, it is gone.
        expect(await store.touch(id, Date.now() - 1)).toBe(true);
        expect(await raw.exists(key)).toBe(0);
      });
    },
  );

  it('lends text only to a reader of text, and bytes to every other reader', async () => {
    await withStore(async (store) => {
      const textOf = (record: Readonly<SessionRecord>) =>
        (record as { [RECORD_TEXT]?: string })[RECORD_TEXT];
      const textReader = Object.defineProperty(textOf, READS_TEXT, { value: true });
      const id = newId();
      await store.set(id, { data: bytes('{"user":"zoë"}'), expiresAt: Date.now() + HOUR_MS });
      expect(await store.lend(id, textReader)).toBe('{"user":"zoë"}');
      expect(await store.lend(id, (record) => textOf(record))).toBeUndefined();
      // Bytes that are not UTF-8 reach a reader of text as bytes, never as text.
      const binary = newId();
      await store.set(binary, { data: Buffer.from([0xff, 0x7b]), expiresAt: Date.now() + HOUR_MS });
      expect(await store.lend(binary, textReader)).toBeUndefined();
    });
  });
});

describe('RedisStore and core library adapters', () => {
  const expires = new Date(Date.now() + HOUR_MS).toISOString();
  const sessions = [
    { cookie: { expires }, user: 'alice' },
    { cookie: { expires }, user: 'zoë 🍪' },
  ];

  it('stores a library session as the header and its JSON text, and reads it back', async () => {
    await withStore(async (store, prefix) => {
      const adapter = openStoreAdapter(store, {}, 'test');
      for (const session of sessions) {
        const id = newId();
        const expiresAt = Date.now() + HOUR_MS;
        const record = adapter.record(id, session, 1_700_000_000_000, expiresAt);
        expect(await store.set(id, record)).toBe(true);
        const value = await raw.sendCommand(['GET', `${prefix}s:{${id}}`], {
          typeMapping: { 36: Buffer },
        });
        const envelope = encodeLibrarySession(jsonCodec(), id, session, 1_700_000_000_000);
        expect(value).toEqual(Buffer.concat([Buffer.from(header({ expiresAt })), envelope]));
        expect(await adapter.read(id)).toEqual(session);
        expect(Buffer.from((await store.get(id))?.data ?? [])).toEqual(Buffer.from(envelope));
      }
    });
  });

  it('lends every record exactly as stored: text, bytes that are not UTF-8, U+FFFD, non-ASCII owners', async () => {
    await withStore(async (store) => {
      const values = [
        Buffer.from('{"plain":"ascii"}'),
        Buffer.from('{"user":"zoë 🍪"}'),
        Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x7b]),
        Buffer.from([0xe2, 0x82]),
        Buffer.from('holds \uFFFD itself'),
        Buffer.alloc(0),
      ];
      for (const owner of [undefined, 'ada', 'zoë 🍪']) {
        for (const data of values) {
          const id = newId();
          const expiresAt = Date.now() + HOUR_MS + 0.5;
          await store.set(id, { data, expiresAt, owner });
          const lent = await store.lend(id, (record) => ({
            data: Buffer.from(record.data),
            expiresAt: record.expiresAt,
            owner: record.owner,
            hasOwner: 'owner' in record,
          }));
          expect(lent).toEqual({ data, expiresAt, owner, hasOwner: owner !== undefined });
        }
      }
    });
  });

  it('counts UTF-8 bytes against maxRecordBytes, and a proxy of the store gets plain records', async () => {
    const prefix = newPrefix();
    const store = await RedisStore.open({ url: STANDALONE_URL, prefix, maxRecordBytes: 200 });
    try {
      const wide = { cookie: { expires }, user: 'é'.repeat(70) };
      const adapter = openStoreAdapter(store, {}, 'test');
      const id = newId();
      await expect(
        store.set(id, adapter.record(id, wide, Date.now(), Date.now() + HOUR_MS)),
      ).rejects.toMatchObject({ code: 'ERR_RECORD_TOO_LARGE' });
      // A wrapper that copies the record it is given: a TextRecord's data, a getter, would be lost.
      const copying = new Proxy(store, {
        get(target, key) {
          const value = Reflect.get(target, key, target);
          if (key === 'constructor' || typeof value !== 'function') return value;
          if (key !== 'set') return value.bind(target);
          return (at: string, record: SessionRecord) => target.set(at, { ...record });
        },
      });
      const proxied = openStoreAdapter(copying, {}, 'test');
      for (const session of sessions) {
        const at = newId();
        await copying.set(at, proxied.record(at, session, Date.now(), Date.now() + HOUR_MS));
        expect(await proxied.read(at)).toEqual(session);
      }
    } finally {
      await store.close();
    }
  });
});

describe('RedisStore far-future expiresAt', () => {
  // The last time a Date holds, the latest expiresAt a store takes, and the latest PXAT Redis takes.
  const LATEST_MS = 8.64e15;
  const FAR = [LATEST_MS - 0.25, LATEST_MS];

  it('a record keeps its exact expiresAt up to the last Date; Redis is given a time it takes', async () => {
    await withStore(async (store, prefix) => {
      for (const expiresAt of FAR) {
        for (const owner of [undefined, 'ada']) {
          const id = newId();
          const record = { data: bytes('far'), expiresAt, owner };
          expect(await store.set(id, record)).toBe(true);
          expect((await store.get(id))?.expiresAt).toBe(expiresAt);
          expect(await raw.pExpireTime(`${prefix}s:{${id}}`)).toBe(Math.ceil(expiresAt) - 1);
          expect(await store.set(id, record, { only: 'present' })).toBe(true);
        }
      }
      const key = indexKey(prefix, 'ada');
      expect(await raw.pTTL(key)).toBeGreaterThan(0);
      expect(await store.ownedBy('ada')).toHaveLength(FAR.length);
    });
  });

  it('refuses an expiresAt past the last Date with a TypeError, and stores nothing', async () => {
    await withStore(async (store, prefix) => {
      const id = newId();
      for (const expiresAt of [LATEST_MS + 1, 1e19, 1e300]) {
        await expect(store.set(id, { data: bytes('far'), expiresAt })).rejects.toThrow(TypeError);
      }
      expect(await raw.exists(`${prefix}s:{${id}}`)).toBe(0);
      await store.set(id, { data: bytes('t'), expiresAt: Date.now() + HOUR_MS });
      await expect(store.touch(id, 1e300)).rejects.toThrow(TypeError);
    });
  });

  it('touch to the last Date moves the record and its TTL together', async () => {
    await withStore(async (store, prefix) => {
      for (const owner of [undefined, 'ada']) {
        const id = newId();
        await store.set(id, { data: bytes('t'), expiresAt: Date.now() + HOUR_MS, owner });
        expect(await store.touch(id, LATEST_MS)).toBe(true);
        expect((await store.get(id))?.expiresAt).toBe(LATEST_MS);
        expect(await raw.pExpireTime(`${prefix}s:{${id}}`)).toBe(LATEST_MS - 1);
      }
      expect((await store.ownedBy('ada')).map((session) => session.record.expiresAt)).toEqual([
        LATEST_MS,
      ]);
    });
  });

  it("creates with an owner batched in one call each stand alone: one's failure never sinks another", async () => {
    await withStore(async (store, prefix) => {
      const soon = Date.now() + HOUR_MS;
      const [ada, far, cy, blocked, dee] = [newId(), newId(), newId(), newId(), newId()];
      // An owner index key of another type under the prefix: that one create fails.
      await raw.set(indexKey(prefix, 'mallory'), 'not a sorted set');
      const results = await Promise.allSettled([
        store.set(ada, { data: bytes('a'), expiresAt: soon, owner: 'ada' }, { only: 'absent' }),
        store.set(far, { data: bytes('f'), expiresAt: 8.64e15, owner: 'bob' }, { only: 'absent' }),
        store.set(cy, { data: bytes('c'), expiresAt: soon, owner: 'cy' }, { only: 'absent' }),
        store.set(
          blocked,
          { data: bytes('m'), expiresAt: soon, owner: 'mallory' },
          { only: 'absent' },
        ),
        store.set(dee, { data: bytes('d'), expiresAt: soon, owner: 'dee' }, { only: 'absent' }),
      ]);
      expect(results.map((result) => result.status)).toEqual([
        'fulfilled',
        'fulfilled',
        'fulfilled',
        'rejected',
        'fulfilled',
      ]);
      const failure = (results[3] as PromiseRejectedResult).reason;
      expect(isSessionError(failure, 'ERR_STORE_IO')).toBe(true);
      expect(failure.message).toContain('WRONGTYPE');
      expect(await store.get(blocked)).toBeUndefined();
      for (const [id, owner] of [
        [ada, 'ada'],
        [far, 'bob'],
        [cy, 'cy'],
        [dee, 'dee'],
      ] as const) {
        expect((await store.ownedBy(owner)).map((session) => session.id)).toEqual([id]);
      }
    });
  });
});

describe('RedisStore owner index', () => {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  it("a record key of another type reads as a corrupt record, and the owner's other sessions are still listed", async () => {
    await withStore(async (store, prefix) => {
      const [kept, replaced] = [newId(), newId()];
      const expiresAt = Date.now() + HOUR_MS;
      await store.set(kept, { data: bytes('a'), expiresAt, owner: 'ada' });
      await store.set(replaced, { data: bytes('b'), expiresAt, owner: 'ada' });
      // Someone else writes a hash where a record was.
      await raw.del(`${prefix}s:{${replaced}}`);
      await raw.hSet(`${prefix}s:{${replaced}}`, 'field', 'not a sessile record');
      await expect(store.get(replaced)).rejects.toMatchObject({ code: 'ERR_CORRUPT_RECORD' });
      await expect(store.touch(replaced, expiresAt + 1000)).rejects.toMatchObject({
        code: 'ERR_CORRUPT_RECORD',
      });
      expect(await raw.hGet(`${prefix}s:{${replaced}}`, 'field')).toBe('not a sessile record');
      expect((await store.ownedBy('ada')).map((session) => session.id)).toEqual([kept]);
      // A write replaces it, with an owner as without one, as a plain SET would.
      for (const owner of ['ada', undefined]) {
        await raw.del(`${prefix}s:{${replaced}}`);
        await raw.hSet(`${prefix}s:{${replaced}}`, 'field', 'not a sessile record');
        expect(await store.set(replaced, { data: bytes('c'), expiresAt, owner })).toBe(true);
        expect((await store.get(replaced))?.owner).toBe(owner);
      }
    });
  });

  it("keeps each owner's ids in a sorted set under the prefix that expires no earlier than its latest entry", async () => {
    await withStore(async (store, prefix) => {
      const [first, second] = [newId(), newId()];
      const now = Date.now();
      await store.set(first, { data: bytes('a'), expiresAt: now + HOUR_MS, owner: 'ada' });
      await store.set(second, { data: bytes('b'), expiresAt: now + 3 * HOUR_MS, owner: 'ada' });
      await store.set(newId(), { data: bytes('c'), expiresAt: now + HOUR_MS });
      const key = indexKey(prefix, 'ada');
      const entries = await raw.zRangeWithScores(key, 0, -1);
      expect(entries.map((entry) => entry.value).sort()).toEqual([first, second].sort());
      const latest = Math.max(...entries.map((entry) => entry.score));
      expect(latest).toBeGreaterThanOrEqual(now + 3 * HOUR_MS);
      expect(await raw.pExpireTime(key)).toBeGreaterThanOrEqual(latest);
      expect(await raw.keys(`${prefix}o:*`)).toEqual([key]);
    });
  });

  it('touch raises the entry before moving expiresAt past it, so the session stays listed after the entry would have lapsed', async () => {
    await withStore(async (store, prefix) => {
      const id = newId();
      await store.set(id, { data: bytes('short'), expiresAt: Date.now() + 200, owner: 'ada' });
      const later = Date.now() + HOUR_MS;
      expect(await store.touch(id, later)).toBe(true);
      expect(await raw.zScore(indexKey(prefix, 'ada'), id)).toBeGreaterThanOrEqual(later);
      await sleep(600);
      const [session] = await store.ownedBy('ada');
      expect(session?.id).toBe(id);
      expect(session?.record.expiresAt).toBe(later);
      expect(new TextDecoder().decode(session?.record.data)).toBe('short');
    });
  });

  it('an update within the entry keeps it as it is; one past it, or to another owner, writes the entry first', async () => {
    await withStore(async (store, prefix) => {
      const id = newId();
      const key = indexKey(prefix, 'ada');
      const write = (expiresAt: number, owner: string) =>
        store.set(id, { data: bytes(owner), expiresAt, owner }, { only: 'present' });
      await store.set(id, { data: bytes('ada'), expiresAt: Date.now() + 200, owner: 'ada' });
      const first = await raw.zScore(key, id);
      expect(await write(Date.now() + 150, 'ada')).toBe(true);
      expect(await raw.zScore(key, id)).toBe(first);
      const later = Date.now() + HOUR_MS;
      expect(await write(later, 'ada')).toBe(true);
      expect(await raw.zScore(key, id)).toBeGreaterThanOrEqual(later);
      await sleep(600);
      expect((await store.ownedBy('ada')).map((session) => session.id)).toEqual([id]);
      expect(await write(later, 'bob')).toBe(true);
      expect(await raw.zScore(indexKey(prefix, 'bob'), id)).toBeGreaterThanOrEqual(later);
      expect(await store.ownedBy('ada')).toEqual([]);
      expect((await store.ownedBy('bob')).map((session) => session.id)).toEqual([id]);
    });
  });

  it('writes drop the entries of expired records, so the index of an owner who is never listed stays near its live sessions', async () => {
    await withStore(async (store, prefix) => {
      const key = indexKey(prefix, 'ada');
      const create = (lifetimeMs: number) => {
        const id = newId();
        const record = { data: bytes(id), expiresAt: Date.now() + lifetimeMs, owner: 'ada' };
        return store.set(id, record, { only: 'absent' }).then(() => id);
      };
      const createMany = (count: number, lifetimeMs: number) =>
        Promise.all(Array.from({ length: count }, () => create(lifetimeMs)));
      await createMany(40, 100);
      await sleep(300);
      // An entry that outlives the key moves its expiry, and drops what expired.
      const first = await create(HOUR_MS);
      expect(await raw.zRange(key, 0, -1)).toEqual([first]);
      await createMany(40, 100);
      await sleep(300);
      // Entries the key's expiry covers drop the expired ones too, on some of the adds.
      const later = await createMany(120, HOUR_MS);
      expect((await raw.zRange(key, 0, -1)).sort()).toEqual([first, ...later].sort());
      expect((await store.ownedBy('ada')).length).toBe(121);
    });
  });

  it('an entry without a live record of that owner is skipped, and an expired one is removed', async () => {
    await withStore(async (store, prefix) => {
      const [kept, expiring, interrupted] = [newId(), newId(), newId()];
      await store.set(kept, { data: bytes('k'), expiresAt: Date.now() + HOUR_MS, owner: 'ada' });
      await store.set(expiring, { data: bytes('e'), expiresAt: Date.now() + 100, owner: 'ada' });
      // What a write that stopped between its two steps leaves: an entry and no record.
      const key = indexKey(prefix, 'ada');
      await raw.zAdd(key, { score: Date.now() + HOUR_MS, value: interrupted });
      await sleep(300);
      expect((await store.ownedBy('ada')).map((session) => session.id)).toEqual([kept]);
      expect((await raw.zRange(key, 0, -1)).sort()).toEqual([kept, interrupted].sort());
    });
  });
});

describe('RedisStore round trips', () => {
  // A server of the test's own, so what MONITOR shows is this test's alone.
  const own = new OwnRedis(7113);
  beforeAll(() => own.start());
  afterAll(() => own.remove());

  /**
   * What the server runs on keys under `prefix` once `start()` resolves, as MONITOR reports it
   * (the commands inside scripts left out), with a client of its own (`admin`) for the test's
   * setup. `sent()` answers once every command sent before it has been seen.
   */
  async function watch(prefix: string) {
    const monitor = createClient({ url: own.url });
    await monitor.connect();
    const admin = createClient({ url: own.url });
    await admin.connect();
    const lines: string[] = [];
    let markerSeen: () => void = () => {};
    const seen = new Promise<void>((resolve) => (markerSeen = resolve));
    return {
      admin,
      start: () =>
        monitor.monitor((line) => {
          if (line.includes(`${prefix}end`)) markerSeen();
          else if (!line.includes('[0 lua]') && line.includes(prefix)) lines.push(line);
        }),
      async sent(): Promise<{ lines: string[]; commands: (string | undefined)[] }> {
        // MONITOR reports commands in the order the server ran them: after this one, all are in.
        await admin.get(`${prefix}end`);
        await seen;
        return { lines, commands: lines.map((line) => /"(\w+)"/.exec(line)?.[1]?.toUpperCase()) };
      },
      async close() {
        await monitor.close();
        await admin.close();
      },
    };
  }

  it('on one server, creates with an owner started together are one script that writes each entry and then its record', async () => {
    const store = await RedisStore.open({ url: own.url, prefix: 'trips:' });
    const watched = await watch('trips:');
    try {
      const record = (owner: string) => ({
        data: bytes(owner),
        expiresAt: Date.now() + HOUR_MS,
        owner,
      });
      // The first call loads the script into the server.
      await store.set(newId(), record('ada'), { only: 'absent' });
      await watched.start();
      const id = newId();
      expect(await store.set(id, record('ada'), { only: 'absent' })).toBe(true);
      expect(await store.set(id, record('bob'), { only: 'absent' })).toBe(false);
      // Creates started in one turn share one script call; of two on one id, the first wins,
      // and the second, made after it, waits for its answer: a call of its own.
      const [other, again] = [newId(), newId()];
      const created = await Promise.all([
        store.set(other, record('ada'), { only: 'absent' }),
        store.set(again, record('bob'), { only: 'absent' }),
        store.set(again, record('cy'), { only: 'absent' }),
      ]);
      expect(created).toEqual([true, true, false]);
      const sent = await watched.sent();
      expect(sent.commands).toEqual(['EVALSHA', 'EVALSHA', 'EVALSHA', 'EVALSHA']);
      // The shared call held the creates of `other` and `again`, one each.
      expect(
        sent.lines.filter((line) => line.includes(other) && line.includes(again)),
      ).toHaveLength(1);
      const listed = async (owner: string) =>
        (await store.ownedBy(owner)).map((session) => session.id).sort();
      expect(await listed('ada')).toEqual(expect.arrayContaining([id, other]));
      expect(await listed('bob')).toEqual([again]);
      expect(await listed('cy')).toEqual([]);
    } finally {
      await watched.close();
      await store.close();
    }
  });

  it('on one server, reads started in one turn are one MGET, each answered as it would be alone, and writes called after them reach Redis after them', async () => {
    const store = await RedisStore.open({ url: own.url, prefix: 'reads:' });
    const watched = await watch('reads:');
    try {
      const [a, b, missing, foreign] = [newId(), newId(), newId(), newId()];
      const expiresAt = Date.now() + HOUR_MS;
      await store.set(a, { data: bytes('a'), expiresAt });
      await store.set(b, { data: bytes('b'), expiresAt });
      // MGET answers nil for a key of another type, as for a missing one; GET tells them apart.
      await watched.admin.hSet(`reads:s:{${foreign}}`, 'field', 'not a sessile record');
      await watched.start();
      const text = (record: SessionRecord | undefined) =>
        record === undefined ? undefined : new TextDecoder().decode(record.data);
      const reads = [a, missing, foreign, b].map((id) =>
        store.get(id).then(text, (error: unknown) => (error as { code?: string }).code),
      );
      const written = store.set(b, { data: bytes('b2'), expiresAt });
      // Written before the nil of its read is asked again: the read still answers absent.
      const created = store.set(missing, { data: bytes('m'), expiresAt }, { only: 'absent' });
      const after = store.get(b).then(text);
      expect(await Promise.all(reads)).toEqual(['a', undefined, 'ERR_CORRUPT_RECORD', 'b']);
      expect([await written, await created, await after]).toEqual([true, true, 'b2']);
      const { lines, commands } = await watched.sent();
      // The four reads in one command, in the order they were called, then the writes.
      expect(commands.slice(0, 3)).toEqual(['MGET', 'SET', 'SET']);
      expect(lines[0]).toMatch(new RegExp(`${a}.*${missing}.*${foreign}.*${b}`));
      // Then the read made after the writes, and the two nils asked again.
      expect(commands.slice(3)).toEqual(['GET', 'GET', 'GET']);
      expect(text(await store.get(missing))).toBe('m');
    } finally {
      await watched.close();
      await store.close();
    }
  });

  it('a script Redis no longer knows (NOSCRIPT, then sent again) applies before the calls on its session made after it', async () => {
    const store = await RedisStore.open({ url: own.url, prefix: 'noscript:' });
    const admin = createClient({ url: own.url });
    await admin.connect();
    try {
      for (const owner of [undefined, 'ada']) {
        const id = newId();
        const expiresAt = Date.now() + HOUR_MS;
        const record = { data: bytes('x'), expiresAt, ...(owner === undefined ? {} : { owner }) };
        await store.set(id, record);
        // As after a restart or a failover: every script is sent again after its NOSCRIPT.
        await admin.scriptFlush();
        const touched = store.touch(id, expiresAt + HOUR_MS);
        const deleted = store.delete(id);
        expect([await touched, await deleted]).toEqual([true, true]);
        expect(await store.get(id)).toBeUndefined();

        await admin.scriptFlush();
        const created = store.set(id, { ...record, owner: 'ada' }, { only: 'absent' });
        const removed = store.delete(id);
        expect([await created, await removed]).toEqual([true, true]);
        expect(await store.get(id)).toBeUndefined();

        await store.set(id, record);
        const lock = await store.locks.acquire(id);
        await admin.scriptFlush();
        const fenced = store.set(id, { ...record, data: bytes('y') }, { lock, release: true });
        const read = store.get(id);
        expect(await fenced).toBe(true);
        expect(new TextDecoder().decode((await read)?.data)).toBe('y');
      }
    } finally {
      await admin.close();
      await store.clear();
      await store.close();
    }
  });
});

describe('RedisStore lock claims', () => {
  it('a claim whose record key is of another type rejects as get does, with ERR_CORRUPT_RECORD, and leaves the lock free', async () => {
    await withStore(async (store, prefix) => {
      const id = newId();
      await raw.hSet(`${prefix}s:{${id}}`, 'field', 'not a sessile record');
      const failure = await store.locks.acquireAndGet?.(id).catch((error: unknown) => error);
      expect(isSessionError(failure, 'ERR_CORRUPT_RECORD'), String(failure)).toBe(true);
      expect(await raw.exists(`${prefix}l:{${id}}`)).toBe(0);
      const lock = await store.locks.acquire(id, { waitMs: 2000 });
      await lock.release();
    });
  });

  it('a fenced write that finds its lease gone loses the lock: its signal aborts and the next acquire here gets it at once', async () => {
    await withStore(async (store, prefix) => {
      const id = newId();
      const lock = await store.locks.acquire(id, { leaseMs: 20_000 });
      // The lease key goes, as after a restart without persistence, a failover or an eviction.
      await raw.del(`${prefix}l:{${id}}`);
      const record = { data: bytes('late'), expiresAt: Date.now() + HOUR_MS };
      await expect(store.set(id, record, { lock })).rejects.toMatchObject({
        code: 'ERR_LOCK_LOST',
      });
      expect(lock.signal.aborted).toBe(true);
      expect((lock.signal.reason as { code?: string }).code).toBe('ERR_LOCK_LOST');
      const next = await store.locks.acquire(id, { waitMs: 1000 });
      await next.release();
      await expect(lock.release()).rejects.toMatchObject({ code: 'ERR_LOCK_LOST' });
      expect(await store.get(id)).toBeUndefined();
    });
  });
});

describe('RedisStore and a lock key of another type', () => {
  it('is no lease of ours: fenced writes, extend and release lose the lock and write nothing, and an acquire waits it out', async () => {
    await withStore(async (store, prefix) => {
      const id = newId();
      const lockKey = `${prefix}l:{${id}}`;
      const kept = { data: bytes('kept'), expiresAt: Date.now() + HOUR_MS };
      await store.set(id, kept);
      const late = { data: bytes('late'), expiresAt: Date.now() + HOUR_MS };
      const uses: [string, (lock: SessionLock) => Promise<unknown>][] = [
        ['set', (lock) => store.set(id, late, { lock })],
        ['set and release', (lock) => store.set(id, late, { lock, release: true })],
        ['touch', (lock) => store.touch(id, Date.now() + 2 * HOUR_MS, { lock })],
        ['delete', (lock) => store.delete(id, { lock })],
        ['extend', (lock) => lock.extend(20_000)],
        ['release', (lock) => lock.release()],
      ];
      for (const [name, use] of uses) {
        await raw.del(lockKey);
        const lock = await store.locks.acquire(id, { leaseMs: 20_000 });
        // Someone else's key takes the lock's name while the lease is held.
        await raw.del(lockKey);
        await raw.hSet(lockKey, 'field', 'not a lease');
        const failure = await use(lock).catch((error: unknown) => error);
        expect([name, isSessionError(failure, 'ERR_LOCK_LOST')], String(failure)).toEqual([
          name,
          true,
        ]);
      }
      expect(await raw.type(lockKey)).toBe('hash');
      const stored = await store.get(id);
      expect(Buffer.from(stored?.data ?? []).toString()).toBe('kept');
      expect(stored?.expiresAt).toBe(kept.expiresAt);
      await expect(store.locks.acquire(id, { waitMs: 200 })).rejects.toMatchObject({
        code: 'ERR_LOCK_TIMEOUT',
      });
    });
  });
});

describe('RedisStore locks', () => {
  // A server of the test's own, so its command counts are this test's alone.
  const own = new OwnRedis(7112);
  beforeAll(() => own.start());
  afterAll(() => own.remove());

  it('a release is published, and a waiter on another connection polls at most every 250 ms', async () => {
    const holderStore = await RedisStore.open({ url: own.url, prefix: 'locks:' });
    const waiterStore = await RedisStore.open({ url: own.url, prefix: 'locks:' });
    const listener = createClient({ url: own.url });
    await listener.connect();
    const messages: string[] = [];
    await listener.subscribe('locks:released', (message) => {
      messages.push(message);
    });
    const admin = createClient({ url: own.url });
    await admin.connect();
    const claims = async () => {
      const stats = await admin.info('commandstats');
      return Number(/cmdstat_set:calls=(\d+)/.exec(stats)?.[1] ?? 0);
    };
    try {
      const id = newId();
      const held = await holderStore.locks.acquire(id, { leaseMs: 60_000 });
      const before = await claims();
      const waiting = waiterStore.locks.acquire(id, { waitMs: 60_000 });
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const during = (await claims()) - before;
      await held.release();
      const next = await waiting;
      await next.release();
      // Doubling from 1 ms to the 250 ms ceiling, then at most one claim per 250 ms (jitter ±50%).
      expect(during).toBeLessThanOrEqual(25);
      expect(messages).toContain(id);
    } finally {
      await listener.close();
      await admin.close();
      await holderStore.close();
      await waiterStore.close();
    }
  });
});
