import { describe, expect, it, vi } from 'vitest';
import {
  aesGcmCodec,
  generateAesKey,
  generateSessionId,
  isSessionError,
  MemoryStore,
  ownerLockId,
  type Session,
  type SessionManager,
  type StoreCapabilities,
} from '../src/index.js';
import { managerFixture } from './manager-fixture.js';

vi.setConfig({ testTimeout: 60_000 });

type Account = { user?: string; cart?: string[] };

const setup = managerFixture<Account>();

/** A login as an app writes it: regenerate, set the owner, commit. Resolves the new id. */
async function login(
  manager: SessionManager<Account>,
  user: string,
  meta?: Record<string, unknown>,
  from?: string,
): Promise<Session<Account>> {
  const session = await manager.open(from);
  await session.regenerate();
  session.data.user = user;
  await session.setOwner(user, meta);
  await session.commit();
  return session;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    return isSessionError(error) ? error.code : (error as Error).name;
  }
}

/** A MemoryStore that declares no owner index, as a store without one does. */
class UnindexedStore extends MemoryStore {
  override readonly capabilities: StoreCapabilities = {
    ...new MemoryStore().capabilities,
    ownerIndex: false,
  };
}

describe('session.setOwner', () => {
  it('a login discarded after setOwner() leaves no session behind, and an existing one keeps its owner', async () => {
    const { manager, store } = setup();
    const failed = await manager.open(undefined);
    await failed.regenerate();
    await failed.setOwner('ada');
    expect(await manager.sessionsOf('ada')).toHaveLength(1);
    // The request fails (commitOnError: false): nothing of it may stay.
    expect(await failed.discard()).toBe('unchanged');
    expect(await store.get(failed.id)).toBeUndefined();
    expect(await manager.sessionsOf('ada')).toEqual([]);
    // Regenerated again after the login stored it, with a grace window: still nothing left.
    const { manager: graced, store: gracedStore } = setup({ regenerateGraceMs: 5_000 });
    const twice = await graced.open(undefined);
    await twice.setOwner('ada');
    const storedId = twice.id;
    await twice.regenerate();
    await twice.discard();
    expect(await gracedStore.get(storedId)).toBeUndefined();
    expect(await graced.sessionsOf('ada')).toEqual([]);
    // An owner set on a session stored before this request stands, as its own write did.
    const stored = await login(manager, 'bob');
    const again = await manager.open(stored.id);
    await again.setOwner('carol');
    await again.discard();
    expect((await store.get(stored.id))?.owner).toBe('carol');
  });

  it('stores the owner and login meta with the session, visible on the next request and in the store', async () => {
    const { manager, store } = setup();
    const session = await login(manager, 'ada', { userAgent: 'Firefox', ip: '203.0.113.7' });
    expect(session.owner).toBe('ada');
    const next = await manager.open(session.id);
    expect(next.isNew).toBe(false);
    expect(next.owner).toBe('ada');
    expect(next.meta).toEqual({ userAgent: 'Firefox', ip: '203.0.113.7' });
    expect(next.data).toEqual({ user: 'ada' });
    next.data.cart = ['book'];
    expect(await next.commit()).toBe('saved');
    expect((await store.get(session.id))?.owner).toBe('ada');
    expect((await manager.open(session.id)).owner).toBe('ada');
  });

  it('is stored at once, before commit, so the owner list already shows the login', async () => {
    const { manager } = setup();
    const session = await manager.open(undefined);
    await session.regenerate();
    await session.setOwner('ada');
    expect((await manager.sessionsOf('ada')).map((listed) => listed.id)).toEqual([session.id]);
    expect(await session.commit()).toBe('saved');
    expect((await manager.open(session.id)).owner).toBe('ada');
  });

  it("records the adapter's loginMeta when setOwner is given no meta", async () => {
    const { manager } = setup();
    const session = await manager.open(undefined, { loginMeta: () => ({ label: 'laptop' }) });
    await session.setOwner('ada');
    await session.commit();
    expect((await manager.sessionsOf('ada'))[0]?.meta).toEqual({ label: 'laptop' });
    const explicit = await manager.open(undefined, { loginMeta: () => ({ label: 'laptop' }) });
    await explicit.setOwner('bob', { label: 'phone' });
    expect((await manager.sessionsOf('bob'))[0]?.meta).toEqual({ label: 'phone' });
  });

  it('refuses an async loginMeta with a TypeError that says so, and changes nothing', async () => {
    const { manager } = setup();
    const session = await manager.open(undefined, {
      loginMeta: (async () => ({ ip: '::1' })) as never,
    });
    await expect(session.setOwner('ada')).rejects.toThrow(
      /got a promise: loginMeta is called synchronously/,
    );
    expect(session.owner).toBeUndefined();
    await session.setOwner('ada', { ip: '::1' });
    expect(session.meta).toEqual({ ip: '::1' });
  });

  it('records meta {} when neither setOwner nor a loginMeta that returns undefined gives any, as sessionsOf lists it', async () => {
    const { manager } = setup();
    for (const loginMeta of [() => undefined, undefined]) {
      const session = await manager.open(undefined, loginMeta === undefined ? {} : { loginMeta });
      expect(session.meta).toBeUndefined();
      await session.setOwner('ada');
      expect(session.meta).toEqual({});
      await session.commit();
      const next = await manager.open(session.id);
      expect(next.meta).toEqual({});
      await next.commit();
    }
    expect((await manager.sessionsOf('ada')).map((listed) => listed.meta)).toEqual([{}, {}]);
  });

  it('moves the session to a new owner, and regenerate() keeps the owner on the new id', async () => {
    const { manager } = setup();
    const session = await manager.open(undefined);
    await session.setOwner('ada');
    await session.commit();
    const again = await manager.open(session.id);
    await again.setOwner('bob');
    await again.regenerate();
    await again.commit();
    expect(await manager.sessionsOf('ada')).toEqual([]);
    expect((await manager.sessionsOf('bob')).map((listed) => listed.id)).toEqual([again.id]);
  });

  it('rejects a malformed owner with ERR_INVALID_OWNER, a non-object meta with TypeError, and changes nothing', async () => {
    const { manager, store } = setup();
    const session = await manager.open(undefined);
    for (const owner of ['', 'x'.repeat(257), 'a\ud800', 42, null]) {
      expect(await codeOf(session.setOwner(owner as string))).toBe('ERR_INVALID_OWNER');
    }
    expect(await codeOf(session.setOwner('ada', ['laptop'] as never))).toBe('TypeError');
    // Plain objects that JSON cannot hold: refused before the owner or meta change.
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const throwing = {
      toJSON: () => {
        throw new RangeError('no');
      },
    };
    for (const meta of [{ n: 1n }, cyclic, { label: throwing }]) {
      expect(await codeOf(session.setOwner('ada', meta as never))).not.toBe('resolved');
    }
    expect(session.owner).toBeUndefined();
    expect(session.meta).toBeUndefined();
    expect(session.status).toBe('unchanged');
    expect(await store.count()).toBe(0);
    await session.commit();
    expect(await codeOf(session.setOwner('ada'))).toBe('TypeError');
  });

  it('works on a store without an owner index, which cannot list or cap owners', async () => {
    const { manager } = setup({}, new UnindexedStore());
    const session = await login(manager, 'ada');
    expect((await manager.open(session.id)).owner).toBe('ada');
    expect(await codeOf(manager.sessionsOf('ada'))).toBe('ERR_UNSUPPORTED');
    expect(await codeOf(manager.sessionsOf(session))).toBe('ERR_UNSUPPORTED');
    expect(await codeOf(manager.revokeOwner('ada'))).toBe('ERR_UNSUPPORTED');
    expect(await manager.revoke(session.id)).toBe(true);
    expect(() => setup({ maxSessionsPerOwner: 1 }, new UnindexedStore())).toThrow(
      expect.objectContaining({ code: 'ERR_UNSUPPORTED' }),
    );
  });

  it('carries the owner and meta through the AES-GCM codec', async () => {
    const { manager, store } = setup({ codec: aesGcmCodec({ keys: [generateAesKey()] }) });
    const session = await login(manager, 'ada', { label: 'laptop' });
    const stored = await store.get(session.id);
    expect(Buffer.from(stored?.data ?? []).includes('laptop')).toBe(false);
    const [listed] = await manager.sessionsOf('ada');
    expect(listed?.meta).toEqual({ label: 'laptop' });
    expect((await manager.open(session.id)).owner).toBe('ada');
  });
});

describe('maxSessionsPerOwner', () => {
  it("with 'evict-oldest', a new login ends the owner's session that began first", async () => {
    const { manager } = setup({ maxSessionsPerOwner: 2 });
    const first = await login(manager, 'ada');
    const second = await login(manager, 'ada');
    const third = await login(manager, 'ada');
    const listed = (await manager.sessionsOf('ada')).map((session) => session.id).sort();
    expect(listed).toEqual([second.id, third.id].sort());
    expect((await manager.open(first.id)).isNew).toBe(true);
    expect((await login(manager, 'bob')).owner).toBe('bob');
  });

  it("with 'refuse', an extra login rejects with ERR_OWNER_LIMIT and stores nothing", async () => {
    const { manager, store } = setup({ maxSessionsPerOwner: 1, onLimit: 'refuse' });
    const first = await login(manager, 'ada');
    const second = await manager.open(undefined);
    await second.regenerate();
    second.data.user = 'ada';
    expect(await codeOf(second.setOwner('ada'))).toBe('ERR_OWNER_LIMIT');
    expect(second.owner).toBeUndefined();
    expect(await store.count()).toBe(1);
    expect((await manager.sessionsOf('ada')).map((session) => session.id)).toEqual([first.id]);
    // Logging in again from the session that holds the place is no extra session.
    const again = await manager.open(first.id);
    await again.setOwner('ada');
    await again.commit();
    expect(await manager.revoke(first.id)).toBe(true);
    expect((await login(manager, 'ada')).owner).toBe('ada');
  });

  it("with 'refuse', a session that has ended under this manager's timeouts takes no place, as sessionsOf does not list it", async () => {
    const store = new MemoryStore();
    const { manager: longer } = setup({ absoluteTimeoutMs: 60_000 }, store);
    await login(longer, 'ada');
    // The app shortened its absolute timeout: the stored session has ended, its record stays.
    const { manager } = setup(
      { idleTimeoutMs: 1000, absoluteTimeoutMs: 1000, maxSessionsPerOwner: 1, onLimit: 'refuse' },
      store,
    );
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect(await manager.sessionsOf('ada')).toEqual([]);
    const session = await login(manager, 'ada');
    expect((await manager.sessionsOf('ada')).map(({ id }) => id)).toEqual([session.id]);
  });

  it("with 'evict-oldest', a login that fails signs no other session out", async () => {
    const { manager } = setup(
      { maxSessionsPerOwner: 1 },
      new MemoryStore({ maxRecordBytes: 4096 }),
    );
    const laptop = await login(manager, 'ada');
    const phone = await manager.open(undefined);
    await phone.regenerate();
    (phone.data as Record<string, unknown>).blob = 'x'.repeat(10_000);
    expect(await codeOf(phone.setOwner('ada'))).toBe('ERR_RECORD_TOO_LARGE');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    phone.data = cyclic as Account;
    expect(await codeOf(phone.setOwner('ada'))).toBe('TypeError');
    expect((await manager.sessionsOf('ada')).map((session) => session.id)).toEqual([laptop.id]);
  });

  it('20 concurrent logins of one owner with a cap of 1 end with exactly one live session', async () => {
    for (const onLimit of ['evict-oldest', 'refuse'] as const) {
      const { manager, store } = setup({ maxSessionsPerOwner: 1, onLimit });
      const outcomes = await Promise.allSettled(
        Array.from({ length: 20 }, () => login(manager, 'ada')),
      );
      const listed = await manager.sessionsOf('ada');
      expect(listed.length, onLimit).toBe(1);
      expect(await store.count(), onLimit).toBe(1);
      const refused = outcomes.filter((outcome) => outcome.status === 'rejected');
      expect(refused.length, onLimit).toBe(onLimit === 'refuse' ? 19 : 0);
      for (const outcome of refused) {
        expect((outcome as PromiseRejectedResult).reason).toMatchObject({
          code: 'ERR_OWNER_LIMIT',
        });
      }
    }
  });

  it("a session a newer version's codec wrote (a rolling deploy) counts towards the cap, is never evicted by it, and revokeOwner ends it", async () => {
    const codec = aesGcmCodec({ keys: [generateAesKey()] });
    for (const onLimit of ['evict-oldest', 'refuse'] as const) {
      const { manager, store, errors } = setup({ codec, maxSessionsPerOwner: 1, onLimit });
      // What a newer release's aesGcmCodec writes: a later format version byte.
      const newer = generateSessionId();
      const bytes = Uint8Array.of(
        2,
        ...codec.encode({ createdAt: 1, lastAccessedAt: 1, data: {} }, newer).subarray(1),
      );
      const expiresAt = Date.now() + 60_000;
      await store.set(newer, { data: bytes, expiresAt, owner: 'ada' });
      expect(await codeOf(manager.open(newer)), onLimit).toBe('ERR_UNSUPPORTED');
      const outcome = await codeOf(login(manager, 'ada'));
      expect(outcome, onLimit).toBe(onLimit === 'refuse' ? 'ERR_OWNER_LIMIT' : 'resolved');
      expect(Buffer.from((await store.get(newer))?.data ?? []).equals(bytes), onLimit).toBe(true);
      expect(errors, onLimit).toEqual([]);
      expect(await manager.revokeOwner('ada'), onLimit).toBe(onLimit === 'refuse' ? 1 : 2);
      expect(await store.get(newer), onLimit).toBeUndefined();
    }
  });

  it('refuses bad settings with a TypeError naming them', () => {
    expect(() => setup({ maxSessionsPerOwner: 0 })).toThrow(/maxSessionsPerOwner/);
    expect(() => setup({ maxSessionsPerOwner: 1.5 })).toThrow(/maxSessionsPerOwner/);
    expect(() => setup({ maxSessionsPerOwner: 2, onLimit: 'oldest' as never })).toThrow(/onLimit/);
    expect(() => setup({ onLimit: 'refuse' })).toThrow(/onLimit needs maxSessionsPerOwner/);
  });
});

describe('sessionsOf', () => {
  it('lists id, handle, createdAt, lastSeenAt, expiresAt and meta, most recently seen first, marking the current session', async () => {
    const { manager } = setup({ touchAfterMs: 0 });
    const before = Date.now();
    const laptop = await login(manager, 'ada', { label: 'laptop' });
    const phone = await login(manager, 'ada', { label: 'phone' });
    await login(manager, 'bob');
    await new Promise((resolve) => setTimeout(resolve, 5));
    const active = await manager.open(laptop.id);
    await active.commit();
    const listed = await manager.sessionsOf(active);
    expect(listed.map((session) => session.meta.label)).toEqual(['laptop', 'phone']);
    expect(listed.map((session) => session.current)).toEqual([true, false]);
    const [first, second] = listed;
    expect(first?.id).toBe(laptop.id);
    expect(second?.id).toBe(phone.id);
    expect(first?.handle).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(first?.handle).not.toBe(second?.handle);
    expect(laptop.id.includes(first?.handle ?? '')).toBe(false);
    expect(first?.createdAt).toBeGreaterThanOrEqual(before);
    expect(first?.lastSeenAt).toBeGreaterThan(second?.lastSeenAt ?? Number.POSITIVE_INFINITY);
    expect(first?.expiresAt).toBe((first?.lastSeenAt ?? 0) + manager.idleTimeoutMs);
    expect((await manager.sessionsOf('ada')).every((session) => !session.current)).toBe(true);
    expect(await manager.sessionsOf(await manager.open(undefined))).toEqual([]);
  });

  it('leaves out a session whose stored record cannot be decoded, and reports it', async () => {
    const { manager, store, errors } = setup();
    const good = await login(manager, 'ada');
    const bad = await login(manager, 'ada');
    const record = await store.get(bad.id);
    await store.set(bad.id, {
      ...(record as { data: Uint8Array; expiresAt: number }),
      owner: 'ada',
      data: new Uint8Array([1, 2]),
    });
    expect((await manager.sessionsOf('ada')).map((session) => session.id)).toEqual([good.id]);
    expect(errors).toEqual([expect.objectContaining({ code: 'ERR_CORRUPT_RECORD' })]);
  });
});

describe('revocation', () => {
  it('revoke(id) ends a session for a request already in it and for one waiting on its lock', async () => {
    const { manager } = setup();
    const device = await login(manager, 'ada');
    const inFlight = await manager.open(device.id);
    const waiting = manager.open(device.id);
    expect(await manager.revoke(device.id)).toBe(true);
    inFlight.data.cart = ['late write'];
    expect(await inFlight.commit()).toBe('gone');
    const next = await waiting;
    expect(next.isNew).toBe(true);
    expect(next.owner).toBeUndefined();
    expect(next.id).not.toBe(device.id);
    await next.commit();
    expect((await manager.open(device.id)).isNew).toBe(true);
    expect(await manager.sessionsOf('ada')).toEqual([]);
    expect(await manager.revoke(device.id)).toBe(false);
  });

  it('an unmodified request in a revoked session does not touch it back to life', async () => {
    const { manager, store } = setup({ touchAfterMs: 0 });
    const device = await login(manager, 'ada');
    const inFlight = await manager.open(device.id);
    await manager.revoke(device.id);
    // Past the stored expiry's millisecond, so commit() does try to touch.
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(await inFlight.commit()).toBe('gone');
    expect(await store.get(device.id)).toBeUndefined();
  });

  it('setOwner in a session revoked while the request held it writes nothing and ends it', async () => {
    const { manager, store } = setup();
    const device = await login(manager, 'ada');
    const inFlight = await manager.open(device.id);
    await manager.revoke(device.id);
    await inFlight.setOwner('bob');
    expect(inFlight.status).toBe('destroyed');
    expect(await inFlight.commit()).toBe('destroyed');
    expect(await store.get(device.id)).toBeUndefined();
    expect(await manager.sessionsOf('bob')).toEqual([]);
  });

  it('regenerate() in a session revoked while the request held it ends the session instead of moving it to a new id', async () => {
    for (const regenerateGraceMs of [0, 5_000]) {
      const { manager, store } = setup({ regenerateGraceMs });
      const device = await login(manager, 'ada');
      const inFlight = await manager.open(device.id);
      await manager.revokeOwner('ada');
      await inFlight.regenerate();
      inFlight.data.cart = ['kept?'];
      // The login flow's next step is a no-op too: the request could not have known.
      await inFlight.setOwner('ada');
      expect(inFlight.status).toBe('destroyed');
      expect(await inFlight.commit()).toBe('destroyed');
      expect(await manager.sessionsOf('ada')).toEqual([]);
      expect(await store.count()).toBe(0);
    }
  });

  it('an in-flight request of a session evicted by the cap cannot bring it back through regenerate()', async () => {
    const { manager } = setup({ maxSessionsPerOwner: 1 });
    const laptop = await login(manager, 'ada');
    const inFlight = await manager.open(laptop.id);
    const phone = await login(manager, 'ada');
    await inFlight.regenerate();
    inFlight.data.cart = ['x'];
    expect(await inFlight.commit()).toBe('destroyed');
    expect((await manager.sessionsOf('ada')).map((session) => session.id)).toEqual([phone.id]);
  });

  it('a request that regenerated its owned session is signed out by a revokeOwner before its commit, and the cap counts it', async () => {
    for (const regenerateGraceMs of [0, 5_000]) {
      const { manager, store } = setup({ regenerateGraceMs });
      const device = await login(manager, 'ada');
      const inFlight = await manager.open(device.id);
      await inFlight.regenerate();
      // The new id is stored with its owner at once: the owner's list already has it.
      expect((await manager.sessionsOf('ada')).map((session) => session.id)).toEqual([inFlight.id]);
      expect(await manager.revokeOwner('ada')).toBeGreaterThanOrEqual(1);
      inFlight.data.cart = ['after sign-out'];
      expect(await inFlight.commit()).toBe('gone');
      expect(await manager.sessionsOf('ada')).toEqual([]);
      expect(await store.count()).toBe(0);

      const { manager: capped } = setup({ regenerateGraceMs, maxSessionsPerOwner: 1 });
      const laptop = await login(capped, 'bob');
      const slow = await capped.open(laptop.id);
      await slow.regenerate();
      const phone = await login(capped, 'bob');
      expect(await slow.commit()).toBe('gone');
      expect((await capped.sessionsOf('bob')).map((session) => session.id)).toEqual([phone.id]);
    }
  });

  it("with regenerateGraceMs, a re-login's own retired id is neither counted by the cap nor listed", async () => {
    for (const onLimit of ['evict-oldest', 'refuse'] as const) {
      const { manager } = setup({ regenerateGraceMs: 5_000, maxSessionsPerOwner: 2, onLimit });
      const laptop = await login(manager, 'ada');
      const phone = await login(manager, 'ada');
      const again = await login(manager, 'ada', undefined, phone.id);
      const listed = (await manager.sessionsOf('ada')).map((session) => session.id).sort();
      expect(listed).toEqual([laptop.id, again.id].sort());
      expect((await manager.open(laptop.id)).isNew).toBe(false);
    }
  });

  it("regenerate() after the lock was lost rejects with ERR_LOCK_LOST and leaves the new holder's save alone", async () => {
    for (const regenerateGraceMs of [0, 5_000]) {
      const { manager, store } = setup({ regenerateGraceMs, lock: { leaseMs: 50, waitMs: 2_000 } });
      const first = await manager.open(undefined);
      first.data.cart = ['book'];
      await first.commit();
      const stalled = await manager.open(first.id);
      const tookOver = manager.open(first.id).then(async (session) => {
        session.data.cart?.push('pen');
        return session.commit();
      });
      // The holder stalls (a blocked event loop) past its lease; the waiter takes the session over.
      const stallUntil = Date.now() + 150;
      while (Date.now() < stallUntil) {}
      expect(await tookOver).toBe('saved');
      expect(await codeOf(stalled.regenerate())).toBe('ERR_LOCK_LOST');
      expect(await codeOf(stalled.commit())).toBe('ERR_LOCK_LOST');
      const kept = await manager.open(first.id);
      expect(kept.data.cart).toEqual(['book', 'pen']);
      await kept.discard();
      expect(await store.count()).toBe(1);
    }
  });

  it('revoke(id) made right after a commit() takes effect after it, for a new session and a stored one', async () => {
    const { manager, store } = setup();
    const fresh = await manager.open();
    fresh.data.user = 'ada';
    const committed = fresh.commit();
    const revoked = manager.revoke(fresh.id);
    expect([await committed, await revoked]).toEqual(['saved', true]);
    expect(await store.get(fresh.id)).toBeUndefined();

    const stored = await manager.open();
    stored.data.user = 'ada';
    await stored.commit();
    const again = await manager.open(stored.id);
    again.data.user = 'grace';
    const saved = again.commit();
    const ended = manager.revoke(again.id);
    expect([await saved, await ended]).toEqual(['saved', true]);
    expect(await store.get(again.id)).toBeUndefined();
  });

  it('revokeOwner ends every session of the owner, or all but the current one', async () => {
    const { manager } = setup();
    const sessions = [
      await login(manager, 'ada'),
      await login(manager, 'ada'),
      await login(manager, 'ada'),
    ];
    const bob = await login(manager, 'bob');
    const current = sessions[0] as Session<Account>;
    expect(await manager.revokeOwner('ada', { except: current.id })).toBe(2);
    expect((await manager.sessionsOf('ada')).map((session) => session.id)).toEqual([current.id]);
    for (const revoked of sessions.slice(1))
      expect((await manager.open(revoked.id)).isNew).toBe(true);
    expect((await manager.open(current.id)).owner).toBe('ada');
    expect(await manager.revokeOwner('ada')).toBe(1);
    expect(await manager.sessionsOf('ada')).toEqual([]);
    expect((await manager.sessionsOf('bob')).map((session) => session.id)).toEqual([bob.id]);
  });

  it('revokeOwner counts the sessions sessionsOf listed, not the old ids regenerate() keeps for a grace period', async () => {
    const { manager, store } = setup({ regenerateGraceMs: 60_000 });
    const laptop = await login(manager, 'ada');
    const again = await manager.open(laptop.id);
    await again.regenerate();
    await again.commit();
    const phone = await login(manager, 'ada');
    expect(await manager.sessionsOf('ada')).toHaveLength(2);
    expect(await manager.revokeOwner('ada')).toBe(2);
    for (const id of [laptop.id, again.id, phone.id]) expect(await store.get(id)).toBeUndefined();
  });

  it('revokeOwner deletes a few sessions at a time, not one after another, and ends them all', async () => {
    let inFlight = 0;
    let mostInFlight = 0;
    /** Each delete waits a turn of the event loop, as one over a network would. */
    class CountedDeletes extends MemoryStore {
      override async delete(id: string, options?: Parameters<MemoryStore['delete']>[1]) {
        mostInFlight = Math.max(mostInFlight, ++inFlight);
        await new Promise((resolve) => setImmediate(resolve));
        inFlight--;
        return super.delete(id, options);
      }
    }
    const { manager } = setup({}, new CountedDeletes());
    for (let i = 0; i < 40; i++) await login(manager, 'ada');
    expect(await manager.revokeOwner('ada')).toBe(40);
    expect(await manager.sessionsOf('ada')).toEqual([]);
    expect(mostInFlight).toBeGreaterThan(1);
    expect(mostInFlight).toBeLessThanOrEqual(16);
  });

  it('revokeOwner checks its arguments', async () => {
    const { manager } = setup();
    expect(await codeOf(manager.revokeOwner(''))).toBe('ERR_INVALID_OWNER');
    expect(await codeOf(manager.revokeOwner('ada', { except: 5 as never }))).toBe('TypeError');
    // A cookie's value instead of the id would sign out the very session to keep.
    const kept = await manager.open();
    await kept.setOwner('ada');
    await kept.commit();
    for (const except of [`${kept.id}.signature`, 'bad']) {
      expect(await codeOf(manager.revokeOwner('ada', { except }))).toBe('TypeError');
    }
    expect(await manager.sessionsOf('ada')).toHaveLength(1);
    expect(await codeOf(manager.sessionsOf('x'.repeat(257)))).toBe('ERR_INVALID_OWNER');
    // An object that is not a session is no owner either: it does not list nobody's sessions.
    for (const notASession of [{}, { id: 'short' }, { owner: 'ada' }]) {
      expect(await codeOf(manager.sessionsOf(notASession as never))).toBe('ERR_INVALID_OWNER');
    }
  });
});

describe('the owner lock', () => {
  it('open() never lets a client hold an owner lock, and a login waits for that lock', async () => {
    const { manager, store } = setup({ maxSessionsPerOwner: 3, lock: { waitMs: 100 } });
    const lockId = ownerLockId('ada');
    const opened = await manager.open(lockId);
    expect(opened.isNew).toBe(true);
    expect(opened.id).not.toBe(lockId);
    const held = await store.locks.acquire(lockId, { leaseMs: 60_000 });
    const session = await manager.open(undefined);
    expect(await codeOf(session.setOwner('ada'))).toBe('ERR_LOCK_TIMEOUT');
    await held.release();
    await session.setOwner('ada');
    expect(session.owner).toBe('ada');
  });

  it('is held for as long as a revokeOwner takes, past its lease: a login racing it waits for it', async () => {
    /** Each delete takes 100 ms, as over a slow network: 6 of them outlast a 300 ms lease. */
    class SlowDeletes extends MemoryStore {
      override async delete(id: string, options?: Parameters<MemoryStore['delete']>[1]) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        return super.delete(id, options);
      }
    }
    const { manager, errors } = setup({ lock: { leaseMs: 300 } }, new SlowDeletes());
    for (let i = 0; i < 6; i++) await login(manager, 'ada');
    const ended: string[] = [];
    const revoked = manager.revokeOwner('ada').then((count) => {
      ended.push('revokeOwner');
      return count;
    });
    await new Promise((resolve) => setTimeout(resolve, 400));
    const racing = login(manager, 'ada').then((session) => {
      ended.push('login');
      return session;
    });
    expect(await revoked).toBe(6);
    const session = await racing;
    expect(ended).toEqual(['revokeOwner', 'login']);
    expect((await manager.sessionsOf('ada')).map(({ id }) => id)).toEqual([session.id]);
    expect(errors).toEqual([]);
  });
});
