import { execFile } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import { promisify } from 'node:util';
import { isSessionError, type SessionLock, type SessionRecord } from '@sessile/core';
import { RedisStore } from '@sessile/redis';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OwnRedis } from './redis-server.js';

// A server of the test's own that it can kill and restart; the machine's 6379 is never stopped.
const server = new OwnRedis(7111);
beforeAll(() => server.start());
afterAll(() => server.remove());

const HOUR_MS = 3_600_000;
// Far longer than the test's timeout: an operation that waited for Redis would fail the test.
const NEVER_MS = 600_000;
const newId = () => Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString('base64url');
const record = (text: string) => ({
  data: new TextEncoder().encode(text),
  expiresAt: Date.now() + HOUR_MS,
});
const run = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Tally {
  ok: number;
  io: number;
  other: unknown[];
}

/** Keeps `workers` set-then-get loops running on `store` until `stop` is set. */
function traffic(store: RedisStore, tally: Tally, state: { stop: boolean }, workers = 8) {
  return Promise.all(
    Array.from({ length: workers }, async () => {
      const id = newId();
      while (!state.stop) {
        try {
          await store.set(id, record('x'));
          await store.get(id);
          tally.ok++;
        } catch (error) {
          if (isSessionError(error, 'ERR_STORE_IO')) tally.io++;
          else tally.other.push(error);
          await sleep(5);
        }
      }
    }),
  );
}

/**
 * A relay to the test's server that fails as a network does. From `holdRequests()` on it keeps
 * what clients send until `sendHeld()`; from `swallowReplies()` on it forwards none of the
 * answers; `cut()` drops every connection at once, as a brief network drop does, and relays new
 * ones normally.
 */
async function faultyRelay() {
  const sockets = new Set<Socket>();
  const held: Array<() => void> = [];
  let holding = false;
  let swallowing = false;
  const relay = createServer((socket) => {
    const upstream = connect(server.port, '127.0.0.1');
    for (const end of [socket, upstream]) {
      sockets.add(end);
      end.on('error', () => {});
      end.on('close', () => {
        sockets.delete(end);
        socket.destroy();
        upstream.destroy();
      });
    }
    socket.on('data', (chunk) => {
      if (holding) held.push(() => upstream.write(chunk));
      else upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (!swallowing) socket.write(chunk);
    });
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  const { port } = relay.address() as { port: number };
  return {
    url: `redis://127.0.0.1:${port}`,
    held: () => held.length,
    holdRequests: () => {
      holding = true;
    },
    sendHeld: () => {
      holding = false;
      for (const send of held.splice(0)) send();
    },
    swallowReplies: () => {
      swallowing = true;
    },
    cut: () => {
      swallowing = false;
      for (const socket of sockets) socket.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        relay.close(() => resolve());
      }),
  };
}

async function until(check: () => Promise<boolean> | boolean, tries = 400): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await sleep(25);
  }
  throw new Error('condition not reached');
}

describe('RedisStore when Redis goes away and comes back', () => {
  it('fails fast with ERR_STORE_IO, recovers by itself, and a lease that ran out is lost', async () => {
    const appClient = createClient({ url: server.url });
    appClient.on('error', () => {});
    await appClient.connect();
    const stores = [
      await RedisStore.open({ url: server.url, prefix: 'o:', commandTimeoutMs: NEVER_MS }),
      // The app's client keeps node-redis's offline queue; the store still must not wait in it.
      await RedisStore.open({ client: appClient, prefix: 'o:', commandTimeoutMs: NEVER_MS }),
    ];
    const tallies: Tally[] = stores.map(() => ({ ok: 0, io: 0, other: [] }));
    const state = { stop: false };
    const running = stores.map((store, i) => traffic(store, tallies[i] as Tally, state));
    try {
      await until(() => tallies.every((tally) => tally.ok > 20));
      const lockedId = newId();
      const lock = await stores[0]?.locks.acquire(lockedId, { leaseMs: 300 });
      if (lock === undefined) throw new Error('no store');
      const lost = new Promise((resolve) => lock.signal.addEventListener('abort', resolve));

      await server.stop();
      const failuresBefore = tallies.map((tally) => tally.io);
      await until(() => tallies.every((tally, i) => tally.io > (failuresBefore[i] ?? 0) + 20));
      for (const store of stores) {
        await expect(store.get(newId())).rejects.toMatchObject({ code: 'ERR_STORE_IO' });
        await expect(store.set(newId(), record('y'))).rejects.toMatchObject({
          code: 'ERR_STORE_IO',
        });
        await expect(store.locks.acquire(newId(), { waitMs: NEVER_MS })).rejects.toMatchObject({
          code: 'ERR_STORE_IO',
        });
      }
      await lost;

      await server.start();
      const okBefore = tallies.map((tally) => tally.ok);
      await until(() => tallies.every((tally, i) => tally.ok > (okBefore[i] ?? 0) + 20));
      await expect(stores[0]?.set(lockedId, record('stale'), { lock })).rejects.toMatchObject({
        code: 'ERR_LOCK_LOST',
      });
      await expect(lock.release()).rejects.toMatchObject({ code: 'ERR_LOCK_LOST' });
      expect(await stores[0]?.get(lockedId)).toBeUndefined();

      // Locks work across both connections again, pub/sub included.
      const id = newId();
      const first = await stores[0]?.locks.acquire(id);
      const second = stores[1]?.locks.acquire(id, { waitMs: 30_000 });
      await first?.release();
      await (await second)?.release();
      for (const tally of tallies) expect(tally.other).toEqual([]);
    } finally {
      state.stop = true;
      await Promise.all(running);
      for (const store of stores) await store.clear().catch(() => {});
      for (const store of stores) await store.close();
      appClient.destroy();
    }
  }, 120_000);

  for (const how of ['acquire', 'acquireAndGet'] as const) {
    it(`a waiting ${how} outlives a brief outage: it gets the lock once Redis is back, instead of ERR_STORE_IO`, async () => {
      const [store, peer] = await Promise.all(
        [0, 1].map(() => RedisStore.open({ url: server.url, prefix: 'w:' })),
      );
      try {
        const id = newId();
        const held = await peer?.locks.acquire(id, { leaseMs: 60_000 });
        const options = { waitMs: 20_000, leaseMs: 60_000 };
        const waiting =
          how === 'acquire'
            ? store?.locks.acquire(id, options)
            : store?.locks.acquireAndGet?.(id, options).then(({ lock }) => lock);
        await sleep(100);
        await server.stop();
        try {
          // Several backstop polls of the waiter.
          await sleep(1_000);
        } finally {
          await server.start();
        }
        // The server kept nothing, the holder's lease included.
        const lock = await waiting;
        await held?.release().catch(() => {});
        await expect(peer?.locks.acquire(id, { waitMs: 0 })).rejects.toMatchObject({
          code: 'ERR_LOCK_TIMEOUT',
        });
        await lock?.release();
      } finally {
        for (const each of [store, peer]) await each?.close();
      }
    }, 30_000);
  }

  for (const how of ['acquire', 'acquireAndGet'] as const) {
    it(`a waiting ${how} whose claim Redis ran just before the connection dropped holds the lock under that claim's token`, async () => {
      const relay = await faultyRelay();
      const store = await RedisStore.open({ url: relay.url, prefix: 'd:' });
      const [peer, third] = await Promise.all(
        [0, 1].map(() => RedisStore.open({ url: server.url, prefix: 'd:' })),
      );
      const direct = createClient({ url: server.url });
      direct.on('error', () => {});
      await direct.connect();
      try {
        const id = newId();
        const lockKey = `d:l:{${id}}`;
        const held = await peer?.locks.acquire(id, { leaseMs: 60_000 });
        if (held === undefined) throw new Error('no store');
        await peer?.set(id, record('written by the holder'), { lock: held });
        const options = { waitMs: 20_000, leaseMs: 60_000 };
        const waiting: Promise<{ lock: SessionLock; record?: SessionRecord | undefined }> =
          how === 'acquire'
            ? store.locks.acquire(id, options).then((lock) => ({ lock }))
            : (store.locks.acquireAndGet?.(id, options) ?? Promise.reject(new Error('none')));
        await sleep(100);
        // The waiter's next claim is kept until the key is free, then Redis runs it and its
        // answer is lost.
        relay.holdRequests();
        await until(() => relay.held() > 0);
        await held.release();
        relay.swallowReplies();
        relay.sendHeld();
        await until(async () => (await direct.get(lockKey)) !== null);
        const taken = await direct.get(lockKey);
        expect(await third?.locks.acquire(id, { waitMs: 0 }).catch((error) => error)).toMatchObject(
          { code: 'ERR_LOCK_TIMEOUT' },
        );
        relay.cut();
        const { lock, record: read } = await waiting;
        expect(lock.token).toBe(taken);
        if (how === 'acquireAndGet') {
          expect(new TextDecoder().decode(read?.data)).toBe('written by the holder');
        }
        await lock.release();
        // Nothing is left holding the key.
        expect(await direct.get(lockKey)).toBeNull();
        await (await third?.locks.acquire(id, { waitMs: 0 }))?.release();
      } finally {
        direct.destroy();
        for (const each of [store, peer, third]) await each?.close();
        await relay.close();
      }
    }, 30_000);
  }

  it('a waiting acquire fails with ERR_STORE_IO once Redis stays away for commandTimeoutMs', async () => {
    const [store, peer] = await Promise.all(
      [0, 1].map(() => RedisStore.open({ url: server.url, prefix: 'w:', commandTimeoutMs: 500 })),
    );
    try {
      const id = newId();
      await peer?.locks.acquire(id, { leaseMs: 60_000 });
      const waiting = store?.locks.acquire(id, { waitMs: NEVER_MS });
      await sleep(100);
      await server.stop();
      try {
        await expect(waiting).rejects.toMatchObject({ code: 'ERR_STORE_IO' });
      } finally {
        await server.start();
      }
    } finally {
      for (const each of [store, peer]) await each?.close();
    }
  });

  it('close() on a hung server settles once its operations fail, and drops its connections', async () => {
    const clients = async () => {
      const { stdout } = await run('redis-cli', ['-p', String(server.port), 'client', 'list']);
      return stdout.trim().split('\n').length;
    };
    const before = await clients();
    const store = await RedisStore.open({ url: server.url, prefix: 'c:', commandTimeoutMs: 300 });
    const id = newId();
    try {
      await store.set(id, record('before'));
      server.pause();
      const reading = store.get(id).catch((caught: unknown) => caught);
      // Before the fix this waited forever for the answer of a get that had already failed.
      await store.close();
      expect(await reading).toMatchObject({ code: 'ERR_STORE_IO' });
      await expect(store.get(id)).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
    } finally {
      server.resume();
    }
    // The command connection and the release subscriber are both gone.
    await until(async () => (await clients()) === before);
  }, 60_000);

  it('close() on a server that hangs with a command still unanswered and not yet overdue settles', async () => {
    const store = await RedisStore.open({ url: server.url, prefix: 'c2:', commandTimeoutMs: 300 });
    try {
      server.pause();
      // An acquire that gives up at once leaves its claim waiting for Redis's answer.
      await expect(store.locks.acquire(newId(), { waitMs: 1 })).rejects.toMatchObject({
        code: 'ERR_LOCK_TIMEOUT',
      });
      // Before the fix this waited forever for the claim's answer.
      await store.close();
    } finally {
      server.resume();
    }
  }, 60_000);

  it('a server that hangs without closing the connection fails operations after commandTimeoutMs', async () => {
    const store = await RedisStore.open({ url: server.url, prefix: 'h:', commandTimeoutMs: 300 });
    try {
      const id = newId();
      await store.set(id, record('before'));
      server.pause();
      const error = await store.get(id).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ code: 'ERR_STORE_IO' });
      expect(String((error as Error).message)).toContain('commandTimeoutMs');
      await expect(store.locks.acquire(newId())).rejects.toMatchObject({ code: 'ERR_STORE_IO' });
      server.resume();
      await until(async () => (await store.get(id).catch(() => undefined)) !== undefined);
      await store.clear();
    } finally {
      server.resume();
      await store.close();
    }
  }, 60_000);
});

describe('RedisStore never applies a write it reported failed', () => {
  /** Resolves once `store` writes again: whatever still waited on its connection went out first. */
  async function untilWritable(store: RedisStore): Promise<void> {
    await until(() =>
      store.set(newId(), record('after')).then(
        () => true,
        () => false,
      ),
    );
  }

  /**
   * Pauses the server, fills the client's socket (`fillSocket`), then writes `id` and checks
   * that the write is reported failed with `ERR_STORE_IO`; resolves once the filling sets ended.
   */
  async function writeFailingBehindPausedServer(store: RedisStore, id: string): Promise<void> {
    server.pause();
    const filling = fillSocket(store);
    const failed = await store.set(id, record('reported failed')).catch((error) => error);
    expect(isSessionError(failed, 'ERR_STORE_IO'), String(failed)).toBe(true);
    await filling;
  }

  /**
   * Sets that a server which reads nothing (paused) leaves in the client: the first ones fill
   * the kernel's buffers and node-redis's socket, so whatever the client takes after them waits
   * to be written, in node-redis's queue.
   */
  function fillSocket(store: RedisStore): Promise<unknown[]> {
    const large = { data: new Uint8Array(1_000_000), expiresAt: Date.now() + HOUR_MS };
    return Promise.all(
      Array.from({ length: 24 }, () => store.set(newId(), large).catch((error) => error)),
    );
  }

  it("a write that timed out in the app's client's offline queue is dropped, not written when Redis returns", async () => {
    // node-redis's offline queue is on by default: an app's client keeps what it had not written
    // when the connection dropped, and writes it on the new connection.
    const appClient = createClient({ url: server.url });
    appClient.on('error', () => {});
    await appClient.connect();
    const store = await RedisStore.open({ client: appClient, prefix: 'q:', commandTimeoutMs: 500 });
    const lost = newId();
    try {
      await writeFailingBehindPausedServer(store, lost);
      // The server dies and comes back empty, so only a write sent after the restart can be there.
      await server.stop();
      await server.start();
      await untilWritable(store);
      expect(await store.get(lost)).toBeUndefined();
    } finally {
      server.resume();
      await store.clear().catch(() => {});
      await store.close();
      appClient.destroy();
    }
  }, 60_000);

  it('a write that timed out behind a hung server is dropped, not written once it reads again', async () => {
    // The store's own client has no offline queue, but a socket that the server no longer reads
    // holds commands back all the same.
    const store = await RedisStore.open({ url: server.url, prefix: 'q2:', commandTimeoutMs: 500 });
    const lost = newId();
    try {
      await writeFailingBehindPausedServer(store, lost);
      server.resume();
      await untilWritable(store);
      expect(await store.get(lost)).toBeUndefined();
    } finally {
      server.resume();
      await store.clear().catch(() => {});
      await store.close();
    }
  }, 60_000);

  it("the app's client still writes the app's own commands after the store dropped its waiting ones", async () => {
    // node-redis 5 unlinks aborted commands from its write queue in a way that breaks the queue
    // when they go first to last: every later command, the app's too, then waited forever.
    const appClient = createClient({ url: server.url });
    appClient.on('error', () => {});
    await appClient.connect();
    const store = await RedisStore.open({
      client: appClient,
      prefix: 'q3:',
      commandTimeoutMs: 500,
    });
    try {
      await writeFailingBehindPausedServer(store, newId());
      server.resume();
      const answer = await Promise.race([
        appClient.set('q3:app', 'own'),
        sleep(10_000).then(() => 'never written'),
      ]);
      expect(answer).toBe('OK');
      await untilWritable(store);
    } finally {
      server.resume();
      await store.clear().catch(() => {});
      await appClient.del('q3:app').catch(() => {});
      await store.close();
      appClient.destroy();
    }
  }, 60_000);

  it('a clear that failed leaves none of its deletes waiting, to delete sessions written after it', async () => {
    // A fixed reconnect delay, so that another host writes while this client is still away.
    const appClient = createClient({ url: server.url, socket: { reconnectStrategy: () => 300 } });
    appClient.on('error', () => {});
    await appClient.connect();
    const store = await RedisStore.open({
      client: appClient,
      prefix: 'c3:',
      commandTimeoutMs: 2000,
    });
    const ids = [newId(), newId(), newId()];
    for (const id of ids) await store.set(id, record('before'));
    const send = appClient.sendCommand.bind(appClient);
    const queued: string[] = [];
    let stopping: Promise<void> | undefined;
    // The first UNLINK is written, then a command the paused server never reads holds the
    // others in the client's queue; then the server dies, failing the one written.
    appClient.sendCommand = ((args: string[], options: never) => {
      if (args[0] !== 'UNLINK') return send(args, options);
      if (stopping !== undefined) {
        queued.push(String(args[1]));
        return send(args, options);
      }
      server.pause();
      const unlinked = send(args, options);
      send(['SET', 'c3:filler', Buffer.alloc(16 << 20)]).catch(() => {});
      stopping = new Promise((resolve) => setTimeout(resolve, 50)).then(() => server.stop());
      return unlinked;
    }) as never;
    const other = createClient({ url: server.url });
    other.on('error', () => {});
    try {
      const failed = await store.clear().catch((error) => error);
      expect(isSessionError(failed, 'ERR_STORE_IO'), String(failed)).toBe(true);
      expect(queued).toHaveLength(2);
      await stopping;
      await server.start();
      // Another host writes the sessions again once the clear was reported failed.
      await other.connect();
      for (const key of queued) await other.set(key, 'written after the clear');
      appClient.sendCommand = send as never;
      await untilWritable(store);
      for (const key of queued) expect(await other.get(key)).toBe('written after the clear');
    } finally {
      appClient.sendCommand = send as never;
      server.resume();
      if (other.isOpen) other.destroy();
      await store.clear().catch(() => {});
      await store.close();
      appClient.destroy();
    }
  }, 60_000);
});
