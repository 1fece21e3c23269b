import { manual, SessionManager } from '@sessile/core';
import { RedisStore } from '@sessile/redis';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OwnRedis } from './redis-server.js';

// A server of the test's own, so what MONITOR shows is this test's alone.
const own = new OwnRedis(7114);
beforeAll(() => own.start());
afterAll(() => own.remove());

describe('a locked request', () => {
  it('is two commands: the claim that reads the session, then the write that frees the lock and announces it', async () => {
    const store = await RedisStore.open({ url: own.url, prefix: 'req:' });
    const manager = new SessionManager({ store, cleanup: manual() });
    const raw = createClient({ url: own.url });
    await raw.connect();
    const monitor = createClient({ url: own.url });
    await monitor.connect();
    const listener = createClient({ url: own.url });
    await listener.connect();
    let onRelease: (key: string) => void = () => {};
    await listener.subscribe('req:released', (message) => onRelease(message));
    const nextRelease = (id: string) =>
      new Promise<void>((resolve) => {
        onRelease = (key) => key === id && resolve();
      });
    const sent: string[] = [];
    let marks = 0;
    let markSeen: () => void = () => {};
    // MONITOR reports commands in the order the server ran them: once a marker shows, all before it are in.
    const commandsSince = async (body: () => Promise<void>) => {
      sent.length = 0;
      await body();
      const seen = new Promise<void>((resolve) => (markSeen = resolve));
      await raw.get(`req:mark:${++marks}`);
      await seen;
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

      const announced = nextRelease(first.id);
      const changed = await commandsSince(async () => {
        const session = await manager.open(first.id);
        expect(session.data).toEqual({ n: 2 });
        session.data.n = 3;
        expect(await session.commit()).toBe('saved');
      });
      expect(changed).toEqual(['EVALSHA', 'EVALSHA']);
      // Waiters on other hosts learn of the release from the write itself.
      await announced;
      expect(await raw.exists(`req:l:{${first.id}}`)).toBe(0);

      const unchanged = await commandsSince(async () => {
        const session = await manager.open(first.id);
        expect(session.data).toEqual({ n: 3 });
        expect(await session.commit()).toBe('unchanged');
      });
      expect(unchanged).toEqual(['EVALSHA', 'EVALSHA']);
      expect(await raw.exists(`req:l:{${first.id}}`)).toBe(0);

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

  it('a commit that frees the lock hands it to a waiter in another store, which reads that commit', async () => {
    const holder = await RedisStore.open({ url: own.url, prefix: 'wake:' });
    const waiter = await RedisStore.open({ url: own.url, prefix: 'wake:' });
    try {
      const manager = new SessionManager({ store: holder, cleanup: manual() });
      const created = await manager.open();
      created.data.n = 1;
      await created.commit();
      const held = await manager.open(created.id);
      const waiting = waiter.locks.acquireAndGet?.(created.id, { waitMs: 60_000 });
      if (waiting === undefined) throw new Error('RedisStore offers acquireAndGet');
      await new Promise((resolve) => setTimeout(resolve, 300));
      held.data.n = 2;
      expect(await held.commit()).toBe('saved');
      const { lock, record } = await waiting;
      expect(JSON.parse(new TextDecoder().decode(record?.data)).data).toEqual({ n: 2 });
      await lock.release();
    } finally {
      await holder.close();
      await waiter.close();
    }
  });
});
