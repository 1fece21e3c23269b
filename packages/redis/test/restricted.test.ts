import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';
import { isSessionError } from '@sessile/core';
import { RedisStore } from '@sessile/redis';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OwnRedis } from './redis-server.js';

const HOUR_MS = 3_600_000;
const newId = () => Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString('base64url');
const bytes = (text: string) => new TextEncoder().encode(text);

/** What a failure shows wherever it is logged: its message, stack and cause, every property. */
const logged = (error: unknown) => inspect(error, { depth: 8, showHidden: true });

/** A server of the describe's own, started before its tests, and a client of it (`admin`). */
function ownServerWithAdmin(port: number, args: string[] = []) {
  const own = new OwnRedis(port, args);
  const admin = createClient({ url: own.url });
  admin.on('error', () => {});
  beforeAll(async () => {
    await own.start();
    await admin.connect();
  });
  afterAll(async () => {
    admin.destroy();
    await own.remove();
  });
  return { own, admin };
}

describe('RedisStore on a server with commands renamed away', () => {
  const own = new OwnRedis(7181);
  /** A hardened server: GET and SET renamed, the script commands disabled. */
  const hardened = (): Promise<void> =>
    own.startWith([
      ...['--port', String(own.port), '--bind', '127.0.0.1', '--dir', own.dir, '--save', ''],
      ...['--rename-command', 'GET', 'GET_RENAMED', '--rename-command', 'SET', 'SET_RENAMED'],
      ...['--rename-command', 'EVALSHA', '', '--rename-command', 'EVAL', ''],
    ]);
  afterAll(() => own.remove());

  it('open refuses it with ERR_UNSUPPORTED naming what it refused', async () => {
    await hardened();
    try {
      const refused = await RedisStore.open({ url: own.url, prefix: 'renamed:' }).catch((e) => e);
      expect(isSessionError(refused, 'ERR_UNSUPPORTED'), String(refused)).toBe(true);
      expect(refused.message).toContain(`Redis at 127.0.0.1:${own.port} refuses commands`);
      expect(refused.message).toContain("unknown command 'EVALSHA'");
      expect(refused.message).toContain('A restricted server');
    } finally {
      await own.stop();
    }
  });

  it("a server restarted so fails each operation with ERR_STORE_IO naming the command, never the session's id or data Redis repeats", async () => {
    await own.start();
    const store = await RedisStore.open({ url: own.url, prefix: 'renamed:' });
    try {
      await own.stop();
      await hardened();
      const id = newId();
      // The store reconnects by itself; until then, it refuses.
      let first: Error;
      for (;;) {
        first = await store.get(id).catch((e) => e);
        if (!first.message.endsWith('is not connected')) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const secret = 'csrf-7f3a9c2e41d8b6f0';
      const failures = [
        first,
        await store
          .set(id, { data: bytes(`{"csrf":"${secret}"}`), expiresAt: Date.now() + HOUR_MS })
          .catch((e) => e),
        await store.touch(id, Date.now() + HOUR_MS).catch((e) => e),
        await store.locks.acquire(id, { waitMs: 0 }).catch((e) => e),
      ];
      const names = ["'GET'", "'SET'", "'EVALSHA'", "'EVALSHA'"];
      for (const [i, failure] of failures.entries()) {
        expect(isSessionError(failure, 'ERR_STORE_IO'), String(failure)).toBe(true);
        expect(failure.message).toContain(`unknown command ${names[i]}`);
        expect(logged(failure)).not.toContain(id);
        expect(logged(failure)).not.toContain(secret);
      }
    } finally {
      await store.close();
      await own.stop();
    }
  });
});

describe('RedisStore as an ACL user', () => {
  const { own, admin } = ownServerWithAdmin(7184);
  // The README's rules, which test/acl.test.ts runs the conformance suite with.
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const rules = (/^ACL SETUSER myapp (.+)$/m.exec(readme)?.[1] ?? '').split(' ');

  /** What `open` answers a user with the README's rules but `leftOut`, plus `added`. */
  const openWithout = async (leftOut: string[], added: string[] = []): Promise<Error | string> => {
    const given = [...rules.filter((rule) => !leftOut.includes(rule)), ...added];
    await admin.sendCommand(['ACL', 'SETUSER', 'myapp', 'reset', ...given]);
    const url = `redis://myapp:secret@127.0.0.1:${own.port}`;
    return RedisStore.open({ url, prefix: 'myapp:' }).then(
      async (store) => {
        await store.close();
        return 'opened';
      },
      (error: Error) => error,
    );
  };

  it('open refuses a user without a command, key or channel the store needs, with ERR_UNSUPPORTED naming each', async () => {
    expect(rules).toContain('+append');
    expect(await openWithout([])).toBe('opened');

    // Needed only by the scripts of some operations: a write with an owner, a waited-for lock.
    const commands = await openWithout(['+append', '+pexpiretime']);
    expect(isSessionError(commands, 'ERR_UNSUPPORTED'), String(commands)).toBe(true);
    expect((commands as Error).message).toMatch(
      /APPEND \(.*can't run this command.*\); PEXPIRETIME \(/,
    );
    expect((commands as Error).message).toContain('A restricted server');

    // Redis 7 gives a new user no channel.
    const channel = await openWithout(['&myapp:*']);
    expect(isSessionError(channel, 'ERR_UNSUPPORTED'), String(channel)).toBe(true);
    expect((channel as Error).message).toContain(
      "PUBLISH (ERR The user executing the script can't publish",
    );

    const keys = await openWithout(['~myapp:*'], ['~myapp:s:*']);
    expect(isSessionError(keys, 'ERR_UNSUPPORTED'), String(keys)).toBe(true);
    // Redis checks a script's keys before it runs it.
    expect((keys as Error).message).toContain('no permissions to access one of the keys');

    const subscribe = await openWithout(['+subscribe']);
    expect(isSessionError(subscribe, 'ERR_UNSUPPORTED'), String(subscribe)).toBe(true);
    expect((subscribe as Error).message).toContain("'subscribe'");
  });
});

describe('RedisStore on a server at its maxmemory, with noeviction', () => {
  const { own, admin } = ownServerWithAdmin(7183, ['--maxmemory-policy', 'noeviction']);

  it('refuses what needs memory with ERR_STORE_IO naming OOM, writes none of it, and serves the rest', async () => {
    const store = await RedisStore.open({ url: own.url, prefix: 'full:' });
    try {
      const [plain, owned, other] = [newId(), newId(), newId()];
      const expiresAt = Date.now() + HOUR_MS;
      await store.set(plain, { data: bytes('plain'), expiresAt });
      await store.set(owned, { data: bytes('owned'), expiresAt, owner: 'u' }, { only: 'absent' });
      await store.set(other, { data: bytes('other'), expiresAt });
      const lock = await store.locks.acquire(plain, { leaseMs: 60_000 });
      // Every byte Redis holds is now over the limit.
      await admin.configSet('maxmemory', '1');

      const refused = [
        store.set(newId(), { data: bytes('new'), expiresAt }),
        store.set(newId(), { data: bytes('new'), expiresAt, owner: 'u' }, { only: 'absent' }),
        store.set(other, { data: bytes('changed'), expiresAt }),
        store.set(plain, { data: bytes('changed'), expiresAt }, { lock }),
        // Past the owner's entry: the entry must grow first.
        store.touch(owned, expiresAt + 10 * HOUR_MS),
        store.locks.acquire(other, { waitMs: 0 }),
        store.locks.acquireAndGet?.(owned, { waitMs: 0 }) ??
          Promise.reject(new Error('RedisStore has acquireAndGet')),
      ];
      for (const failure of await Promise.all(refused.map((step) => step.catch((e) => e)))) {
        expect(isSessionError(failure, 'ERR_STORE_IO'), String(failure)).toBe(true);
        expect(failure.message).toContain('OOM command not allowed');
      }
      const text = async (id: string) => {
        const record = await store.get(id);
        return record && new TextDecoder().decode(record.data);
      };
      expect(await text(plain)).toBe('plain');
      expect(await text(other)).toBe('other');
      expect((await store.get(owned))?.expiresAt).toBe(expiresAt);
      expect(await store.count()).toBe(3);

      // What frees memory or keeps its size goes on.
      expect((await store.ownedBy('u')).map((session) => session.id)).toEqual([owned]);
      expect(await store.touch(other, expiresAt + 1000)).toBe(true);
      expect(await store.touch(plain, expiresAt + 1000, { lock })).toBe(true);
      await lock.extend(60_000);
      await lock.release();
      expect(await store.delete(other)).toBe(true);

      // Once Redis has room again, the store writes without being reopened.
      await admin.configSet('maxmemory', '0');
      expect(await store.set(newId(), { data: bytes('new'), expiresAt }, { only: 'absent' })).toBe(
        true,
      );
      const again = await store.locks.acquire(plain, { waitMs: 0 });
      await again.release();
    } finally {
      await admin.configSet('maxmemory', '0');
      await store.close();
    }
  });
});
