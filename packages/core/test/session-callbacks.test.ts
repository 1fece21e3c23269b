import { describe, expect, it, vi } from 'vitest';
import { managerFixture } from './manager-fixture.js';

vi.setConfig({ testTimeout: 60_000 });

const setup = managerFixture<{ user?: string }>();

/** Calls `method` express-session's way, with a callback, and what became of it. */
async function callWithCallback(call: (callback: (error?: unknown) => void) => Promise<unknown>) {
  let calledWith: unknown[] | undefined;
  const promise = call((...args) => {
    calledWith = args;
  });
  const rejection = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  return { rejection, calledWith };
}

describe('Session methods given a callback (express-session style)', () => {
  it('regenerate(cb) rejects with a TypeError that says to await it, hands the callback that error, and changes nothing stored', async () => {
    const { manager, store } = setup();
    const first = await manager.open(undefined);
    first.data.user = 'alice';
    await first.commit();
    const session = await manager.open(first.id);
    const { rejection, calledWith } = await callWithCallback((cb) =>
      (session.regenerate as (cb: unknown) => Promise<void>)(cb),
    );
    expect(rejection).toBeInstanceOf(TypeError);
    expect((rejection as Error).message).toMatch(/await session\.regenerate\(\)/);
    expect(calledWith).toEqual([rejection]);
    expect(session.id).toBe(first.id);
    expect(session.regenerated).toBe(false);
    // A login whose regenerate was refused is not saved under the old id, and frees the lock.
    session.data.user = 'mallory';
    await expect(session.commit()).rejects.toBe(rejection);
    expect(session.locked).toBe(false);
    const reopened = await manager.open(first.id);
    expect(reopened.data).toEqual({ user: 'alice' });
    await reopened.commit();
    expect(await store.count()).toBe(1);
  });

  it('invalidate(cb), commit(cb) and discard(cb) reject the same way without ending or writing the session', async () => {
    for (const method of ['invalidate', 'commit', 'discard'] as const) {
      const { manager } = setup();
      const first = await manager.open(undefined);
      first.data.user = 'alice';
      await first.commit();
      const session = await manager.open(first.id);
      const { rejection, calledWith } = await callWithCallback((cb) =>
        (session[method] as (cb: unknown) => Promise<unknown>)(cb),
      );
      expect(rejection, method).toBeInstanceOf(TypeError);
      expect((rejection as Error).message).toContain(`await session.${method}()`);
      expect(calledWith).toEqual([rejection]);
      expect(session.committed, method).toBe(false);
      expect(session.status, method).toBe('unchanged');
      expect(await session.discard()).toBe('unchanged');
      const reopened = await manager.open(first.id);
      expect(reopened.data, method).toEqual({ user: 'alice' });
      await reopened.commit();
    }
  });

  it('does not crash the process when nobody awaits the refused promise', async () => {
    const { manager } = setup();
    const session = await manager.open(undefined);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      void (session.regenerate as (cb: unknown) => Promise<void>)(() => {});
      await new Promise((resolve) => setTimeout(resolve, 20));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
    await session.discard();
  });
});
