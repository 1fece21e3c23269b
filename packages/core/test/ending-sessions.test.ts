import { describe, expect, it, vi } from 'vitest';
import type { MemoryStore, SessionManager } from '../src/index.js';
import { sleep } from '../src/store.js';
import { managerFixture } from './manager-fixture.js';

// The machine is shared with other suites: allow slow runs; no test asserts on time.
vi.setConfig({ testTimeout: 60_000 });

type Counter = { count?: number };

const setup = managerFixture<Counter>();

/** How long the session has left when its request opens, and how long that request then takes. */
const LEFT_MS = 1000;
const REQUEST_MS = 1600;

/**
 * A stored session { count: 1 } whose record has `LEFT_MS` of its idle time left, as after a
 * user idle for all but that long.
 */
async function endingSession(
  manager: SessionManager<Counter>,
  store: MemoryStore,
): Promise<string> {
  const session = await manager.open(undefined);
  session.data.count = 1;
  expect(await session.commit()).toBe('saved');
  expect(await store.touch(session.id, Date.now() + LEFT_MS)).toBe(true);
  return session.id;
}

/** Counts the store's writes from now on, by name. */
function countWrites(store: MemoryStore): Record<'set' | 'touch' | 'delete', number> {
  const counts = { set: 0, touch: 0, delete: 0 };
  for (const name of ['set', 'touch', 'delete'] as const) {
    const write = store[name].bind(store) as (...args: unknown[]) => Promise<boolean>;
    vi.spyOn(store, name).mockImplementation(((...args: unknown[]) => {
      counts[name]++;
      return write(...args);
    }) as never);
  }
  return counts;
}

describe('a request slower than its session has left', () => {
  for (const lock of [true, false]) {
    it(`saves its changes, and the next request sees them (lock: ${lock})`, async () => {
      const { manager, store } = setup({ idleTimeoutMs: 60_000, lock });
      const id = await endingSession(manager, store);
      const session = await manager.open(id);
      expect(session.id).toBe(id);
      await sleep(REQUEST_MS);
      session.data.count = 2;
      expect(await session.commit()).toBe('saved');
      const next = await manager.open(id);
      expect(next.id).toBe(id);
      expect(next.data).toEqual({ count: 2 });
      expect(await next.commit()).toBe('unchanged');
    });
  }

  it('keeps an unmodified session, with one touch in all, as its commit would have made', async () => {
    const { manager, store } = setup({ idleTimeoutMs: 60_000 });
    const id = await endingSession(manager, store);
    const writes = countWrites(store);
    const session = await manager.open(id);
    await sleep(REQUEST_MS);
    expect(await session.commit()).toBe('unchanged');
    expect(writes).toEqual({ set: 0, touch: 1, delete: 0 });
    const next = await manager.open(id);
    expect(next.id).toBe(id);
    expect(next.data).toEqual({ count: 1 });
    await next.commit();
  });

  it('stays gone when it is revoked during the request', async () => {
    const { manager, store } = setup({ idleTimeoutMs: 60_000 });
    const id = await endingSession(manager, store);
    const session = await manager.open(id);
    expect(await manager.revoke(id)).toBe(true);
    await sleep(REQUEST_MS);
    session.data.count = 2;
    expect(await session.commit()).toBe('gone');
    expect(await store.get(id)).toBeUndefined();
    const next = await manager.open(id);
    expect(next.id).not.toBe(id);
    expect(next.data).toEqual({});
    await next.commit();
  });

  it('stays gone when it was revoked before it opened', async () => {
    const { manager, store } = setup({ idleTimeoutMs: 60_000 });
    const id = await endingSession(manager, store);
    expect(await manager.revoke(id)).toBe(true);
    const writes = countWrites(store);
    const session = await manager.open(id);
    expect(session.id).not.toBe(id);
    expect(await session.commit()).toBe('unchanged');
    expect(await store.get(id)).toBeUndefined();
    expect(writes.touch).toBe(0);
  });

  it('is renewed up to its absolute timeout, never past it', async () => {
    const { manager, store } = setup({ idleTimeoutMs: 60_000, absoluteTimeoutMs: 5000 });
    const id = await endingSession(manager, store);
    const session = await manager.open(id);
    expect((await store.get(id))?.expiresAt).toBe(session.createdAt + 5000);
    await sleep(REQUEST_MS);
    session.data.count = 2;
    expect(await session.commit()).toBe('saved');
    expect((await store.get(id))?.expiresAt).toBe(session.createdAt + 5000);
  });

  it('ends at its absolute timeout when the request outlasts it', async () => {
    const { manager, store } = setup({ idleTimeoutMs: 60_000, absoluteTimeoutMs: LEFT_MS + 500 });
    const session = await manager.open(undefined);
    session.data.count = 1;
    expect(await session.commit()).toBe('saved');
    const { id } = session;
    const reopened = await manager.open(id);
    expect(reopened.id).toBe(id);
    expect((await store.get(id))?.expiresAt).toBe(session.createdAt + LEFT_MS + 500);
    await sleep(REQUEST_MS);
    reopened.data.count = 2;
    expect(await reopened.commit()).toBe('gone');
    expect(await store.get(id)).toBeUndefined();
  });
});

describe('a request that outlasts the idle timeout', () => {
  // Renewed while the request runs once less than leaseMs (2 s) is left: the record would
  // otherwise expire 4 s after the request began, and the request takes 5. The last renewal
  // comes 4 to 4.5 s in, so a commit at 5 s is well within touchAfterMs of it (at 1 s it
  // touched or not by where the extension timer fell).
  const options = {
    idleTimeoutMs: 4000,
    touchAfterMs: 2000,
    lock: { leaseMs: 2000, extendEveryMs: 250 },
  };
  const LONG_REQUEST_MS = 5000;

  async function storedSession(manager: SessionManager<Counter>): Promise<string> {
    const session = await manager.open(undefined);
    session.data.count = 1;
    expect(await session.commit()).toBe('saved');
    return session.id;
  }

  it('keeps its session alive while it runs, and saves its changes', async () => {
    const { manager, store } = setup(options);
    const id = await storedSession(manager);
    const session = await manager.open(id);
    await sleep(LONG_REQUEST_MS);
    // Another request can still find it: it never expired in the store.
    expect(await store.get(id)).toBeDefined();
    session.data.count = 2;
    expect(await session.commit()).toBe('saved');
    const next = await manager.open(id);
    expect(next.id).toBe(id);
    expect(next.data).toEqual({ count: 2 });
    await next.commit();
  });

  it('keeps an unmodified session, and its commit adds no write of its own', async () => {
    const { manager, store } = setup(options);
    const id = await storedSession(manager);
    const session = await manager.open(id);
    await sleep(LONG_REQUEST_MS);
    const writes = countWrites(store);
    expect(await session.commit()).toBe('unchanged');
    expect(writes).toEqual({ set: 0, touch: 0, delete: 0 });
    const next = await manager.open(id);
    expect(next.id).toBe(id);
    expect(next.data).toEqual({ count: 1 });
    await next.commit();
  });

  it('stays gone when it is revoked while it runs', async () => {
    const { manager, store } = setup(options);
    const id = await storedSession(manager);
    const session = await manager.open(id);
    await sleep(500);
    expect(await manager.revoke(id)).toBe(true);
    await sleep(LONG_REQUEST_MS);
    session.data.count = 2;
    expect(await session.commit()).toBe('gone');
    expect(await store.get(id)).toBeUndefined();
  });

  it('is renewed no further than its absolute timeout', async () => {
    const { manager, store } = setup({ ...options, absoluteTimeoutMs: 4500 });
    const id = await storedSession(manager);
    const session = await manager.open(id);
    await sleep(LONG_REQUEST_MS);
    session.data.count = 2;
    expect(await session.commit()).toBe('gone');
    expect(await store.get(id)).toBeUndefined();
  });

  it('moves a regenerated id on, and lets the old id end with its grace', async () => {
    const { manager, store } = setup({ ...options, regenerateGraceMs: 1000 });
    const id = await storedSession(manager);
    const session = await manager.open(id);
    await session.regenerate();
    session.data.count = 2;
    await sleep(LONG_REQUEST_MS);
    expect(await session.commit()).toBe('saved');
    expect(session.id).not.toBe(id);
    expect(await store.get(id)).toBeUndefined();
    expect(await store.get(session.id)).toBeDefined();
  });
});

describe('a request with time to spare', () => {
  it('writes nothing at open: only its commit writes', async () => {
    const { manager, store } = setup({ idleTimeoutMs: 60_000, touchAfterMs: 0 });
    const session = await manager.open(undefined);
    session.data.count = 1;
    await session.commit();
    const writes = countWrites(store);
    const reopened = await manager.open(session.id);
    expect(writes).toEqual({ set: 0, touch: 0, delete: 0 });
    reopened.data.count = 2;
    expect(await reopened.commit()).toBe('saved');
    expect(writes).toEqual({ set: 1, touch: 0, delete: 0 });
  });

  it('renews only within lock.leaseMs of the end, and no earlier than touchAfterMs allows', () => {
    const { manager } = setup({ idleTimeoutMs: 60_000, lock: { leaseMs: 5000 } });
    expect(manager.renewWithinMs).toBe(5000);
    const { manager: unlocked } = setup({ idleTimeoutMs: 60_000, lock: false });
    expect(unlocked.renewWithinMs).toBe(30_000);
    const { manager: short } = setup({ idleTimeoutMs: 10_000, touchAfterMs: 9000 });
    expect(short.renewWithinMs).toBe(1000);
  });
});
