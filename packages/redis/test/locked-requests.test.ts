import { generateSessionId, manual, type SessionLock, SessionManager } from '@sessile/core';
import { RedisStore } from '@sessile/redis';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { OwnRedis } from './redis-server.js';

// A server of the test's own, so what MONITOR shows is this test's alone.
const own = new OwnRedis(7114);
beforeAll(() => own.start());
afterAll(() => own.remove());

describe('a locked request', () => {
  it('is two commands: the claim that reads the session, then the write that frees the lock, announcing nothing when nobody waited', async () => {
    const store = await RedisStore.open({ url: own.url, prefix: 'req:' });
    const manager = new SessionManager({ store, cleanup: manual() });
    const raw = createClient({ url: own.url });
    await raw.connect();
    const monitor = createClient({ url: own.url });
    await monitor.connect();
    const listener = createClient({ url: own.url });
    await listener.connect();
    const released: string[] = [];
    await listener.subscribe('req:released', (message) => released.push(message));
    // Messages reach a subscriber in the order they were published: once this one arrives, every
    // release announced before it has arrived too.
    const announcedSoFar = async () => {
      const end = `end:${released.length}`;
      await raw.publish('req:released', end);
      while (!released.includes(end)) await new Promise((resolve) => setTimeout(resolve, 5));
      return released.filter((message) => !message.startsWith('end:'));
    };
    const sent: string[] = [];
    let marks = 0;
    let markSeen: () => void = () => {};
    // MONITOR reports commands in the order the server ran them, some time after: once a
    // marker shows, every command run before it has been reported.
    const caughtUp = async () => {
      const seen = new Promise<void>((resolve) => (markSeen = resolve));
      await raw.get(`req:mark:${++marks}`);
      await seen;
    };
    const commandsSince = async (body: () => Promise<void>) => {
      // The test's own commands before the body (its EXISTS checks) are reported first.
      await caughtUp();
      sent.length = 0;
      await body();
      await caughtUp();
      return sent.map((line) => /"(\w+)"/.exec(line)?.[1]?.toUpperCase());
    };
    try {
      // The first request loads the scripts into the server.
      const first = await manager.open();
      first.data.n = 1;
      await first.commit();
      const warm = await manager.open(first.id);
      warm.data.n = 2;
      await warm.commit();
      await (await manager.open(first.id)).commit();
      await monitor.monitor((line) => {
        if (line.includes('req:mark:')) markSeen();
        else if (!line.includes(' lua]') && line.includes('req:')) sent.push(line);
      });

      const changed = await commandsSince(async () => {
        const session = await manager.open(first.id);
        expect(session.data).toEqual({ n: 2 });
        session.data.n = 3;
        expect(await session.commit()).toBe('saved');
      });
      expect(changed).toEqual(['EVALSHA', 'EVALSHA']);
      expect(await raw.exists(`req:l:{${first.id}}`)).toBe(0);

      const unchanged = await commandsSince(async () => {
        const session = await manager.open(first.id);
        expect(session.data).toEqual({ n: 3 });
        expect(await session.commit()).toBe('unchanged');
      });
      expect(unchanged).toEqual(['EVALSHA', 'EVALSHA']);
      expect(await raw.exists(`req:l:{${first.id}}`)).toBe(0);
      // Nobody waited for these locks, so no release was published.
      expect(await announcedSoFar()).toEqual([]);

      // Nothing stays held: another store takes the lock at once.
      const other = await RedisStore.open({ url: own.url, prefix: 'req:' });
      try {
        const lock = await other.locks.acquire(first.id, { waitMs: 0 });
        await lock.release();
      } finally {
        await other.close();
      }
    } finally {
      await monitor.close();
      await listener.close();
      await raw.close();
      await store.close();
    }
  });

  // With setTimeout frozen, the waiter's backstop poll never fires: only the release message,
  // published because its refused claim marked the lock, can wake it.
  const text = (value: string) => new TextEncoder().encode(value);
  const later = () => Date.now() + 3_600_000;
  const releases: [
    string,
    (store: RedisStore, id: string, lock: SessionLock) => Promise<unknown>,
    string | undefined,
  ][] = [
    [
      'a fenced set that frees the lock',
      (store, id, lock) =>
        store.set(id, { data: text('v2'), expiresAt: later() }, { lock, release: true }),
      'v2',
    ],
    [
      'a fenced touch that frees the lock',
      (store, id, lock) => store.touch(id, later(), { lock, release: true }),
      'v1',
    ],
    [
      'a fenced delete that frees the lock',
      (store, id, lock) => store.delete(id, { lock, release: true }),
      undefined,
    ],
    ['a plain release', (_store, _id, lock) => lock.release(), 'v1'],
  ];
  it.each(releases)(
    '%s wakes a waiter in another store at once, which then reads the session',
    async (_name, free, expected) => {
      const holder = await RedisStore.open({ url: own.url, prefix: 'wake:' });
      const waiter = await RedisStore.open({ url: own.url, prefix: 'wake:' });
      const raw = createClient({ url: own.url });
      await raw.connect();
      try {
        const id = generateSessionId();
        await holder.set(id, { data: text('v1'), expiresAt: later() });
        const lockKey = `wake:l:{${id}}`;
        const lock = await holder.locks.acquire(id, { leaseMs: 60_000 });
        vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
        const waiting = waiter.locks.acquireAndGet?.(id, { waitMs: 60_000 });
        if (waiting === undefined) throw new Error('RedisStore offers acquireAndGet');
        // The waiter's refused claim marks the lock as waited for, keeping its token and lease.
        let value: string | null = null;
        while (!value?.endsWith('!')) value = await raw.get(lockKey);
        expect(value).toBe(`${lock.token}!`);
        expect(await raw.pTTL(lockKey)).toBeGreaterThan(50_000);
        await free(holder, id, lock);
        const { lock: next, record } = await waiting;
        expect(record === undefined ? undefined : new TextDecoder().decode(record.data)).toBe(
          expected,
        );
        vi.useRealTimers();
        await next.release();
      } finally {
        vi.useRealTimers();
        await raw.close();
        await holder.close();
        await waiter.close();
      }
    },
  );
});
