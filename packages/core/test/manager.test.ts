import { describe, expect, it, vi } from 'vitest';
import {
  aesGcmCodec,
  generateAesKey,
  generateSessionId,
  isSessionError,
  MemoryStore,
  manual,
  SessionError,
  SessionManager,
  type SessionManagerOptions,
  SWEEP_LOCK_ID,
} from '../src/index.js';
import { MAX_SESSION_TIMEOUT_MS } from '../src/manager-options.js';
import { sleep } from '../src/store.js';
import { managerFixture } from './manager-fixture.js';

// The machine is shared with other suites: allow slow runs; no test asserts on time.
vi.setConfig({ testTimeout: 60_000 });

type Counter = { count?: number; user?: string };

const setup = managerFixture<Counter>();

async function createSession(manager: SessionManager<Counter>, data: Counter): Promise<string> {
  const session = await manager.open(undefined);
  Object.assign(session.data, data);
  expect(await session.commit()).toBe('saved');
  return session.id;
}

describe('SessionManager.open (strict ids)', () => {
  it('issues a fresh 43-character id when the client sends none, an invalid one, or an unknown one', async () => {
    const { manager, store } = setup();
    const unknown = generateSessionId();
    for (const candidate of [
      undefined,
      null,
      '',
      '../../etc/passwd',
      'short',
      unknown,
      SWEEP_LOCK_ID,
    ]) {
      const session = await manager.open(candidate);
      expect(session.isNew).toBe(true);
      expect(session.id).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(session.id).not.toBe(candidate);
      expect(await session.commit()).toBe('unchanged');
    }
    // An untouched fresh session is never stored.
    expect(await store.count()).toBe(0);
  });

  it('loads a session it issued, with its data and timestamps', async () => {
    const { manager } = setup();
    const id = await createSession(manager, { count: 1 });
    const session = await manager.open(id);
    expect(session.isNew).toBe(false);
    expect(session.id).toBe(id);
    expect(session.data).toEqual({ count: 1 });
    expect(session.status).toBe('unchanged');
    expect(session.createdAt).toBeLessThanOrEqual(session.lastAccessedAt);
    await session.commit();
  });

  it('gives a fresh session for an undecodable record and reports ERR_CORRUPT_RECORD', async () => {
    const { manager, store, errors } = setup();
    const id = await createSession(manager, { count: 1 });
    await store.set(id, {
      data: new TextEncoder().encode('not json'),
      expiresAt: Date.now() + 60_000,
    });
    const session = await manager.open(id);
    expect(session.id).not.toBe(id);
    expect(session.data).toEqual({});
    expect(errors.some((error) => isSessionError(error, 'ERR_CORRUPT_RECORD'))).toBe(true);
    await session.commit();
  });

  it('gives a fresh session for data nested too deeply to be saved again, and reports ERR_CORRUPT_RECORD', async () => {
    const { manager, store, errors } = setup();
    const id = await createSession(manager, { count: 1 });
    const now = Date.now();
    // JSON.parse reads it; JSON.stringify, which every commit runs, overflows the stack.
    const deep = `${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}`;
    await store.set(id, {
      data: new TextEncoder().encode(
        `{"createdAt":${now},"lastAccessedAt":${now},"data":{"x":${deep}}}`,
      ),
      expiresAt: now + 60_000,
    });
    const session = await manager.open(id);
    expect(session.id).not.toBe(id);
    expect(session.data).toEqual({});
    expect(errors.some((error) => isSessionError(error, 'ERR_CORRUPT_RECORD'))).toBe(true);
    // The lock on the damaged id was freed.
    const lock = await store.locks.acquire(id, { waitMs: 0 });
    await lock.release();
    await session.commit();
  });

  it('rejects with ERR_STORE_CLOSED after close()', async () => {
    const { manager } = setup();
    await manager.close();
    await expect(manager.open(undefined)).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
  });
});

describe('Session status and commit', () => {
  it('tracks unchanged, modified and destroyed', async () => {
    const { manager } = setup();
    const id = await createSession(manager, { count: 1 });
    const session = await manager.open(id);
    expect(session.status).toBe('unchanged');
    session.data.count = 2;
    expect(session.status).toBe('modified');
    session.data.count = 1;
    expect(session.status).toBe('unchanged');
    await session.invalidate();
    expect(session.status).toBe('destroyed');
    expect(await session.commit()).toBe('destroyed');
  });

  it('saves a modified session and leaves an unmodified one alone until touchAfterMs', async () => {
    const { manager, store } = setup({ touchAfterMs: 60_000 });
    const id = await createSession(manager, { count: 1 });
    const before = await store.get(id);
    const unchanged = await manager.open(id);
    expect(await unchanged.commit()).toBe('unchanged');
    expect(await store.get(id)).toEqual(before);

    const modified = await manager.open(id);
    modified.data.count = 2;
    expect(await modified.commit()).toBe('saved');
    const reopened = await manager.open(id);
    expect(reopened.data.count).toBe(2);
    await reopened.commit();
  });

  it('touches an unmodified session once touchAfterMs has passed, pushing its expiry back', async () => {
    const { manager, store } = setup({ touchAfterMs: 20, idleTimeoutMs: 60_000 });
    const id = await createSession(manager, { count: 1 });
    const before = await store.get(id);
    await sleep(50);
    const session = await manager.open(id);
    expect(await session.commit()).toBe('touched');
    const after = await store.get(id);
    expect(after?.expiresAt).toBeGreaterThan(before?.expiresAt ?? Number.POSITIVE_INFINITY);
    expect(after?.data).toEqual(before?.data);
  });

  it('refuses to save data whose toJSON gives no object, which every later load would find corrupt', async () => {
    const { manager, errors } = setup();
    const id = await createSession(manager, { user: 'alice' });
    for (const data of [new Date(), { toJSON: () => 'text' }, { toJSON: () => undefined }]) {
      const session = await manager.open(id);
      session.data = data as Counter;
      await expect(session.commit()).rejects.toThrow(
        /^session data must be saved as a JSON object, got (JSON .+|nothing) from its toJSON\(\)$/,
      );
    }
    // Still the stored session, readable: the user stays signed in.
    const reopened = await manager.open(id);
    expect(reopened.id).toBe(id);
    expect(reopened.data).toEqual({ user: 'alice' });
    await reopened.commit();
    expect(errors).toEqual([]);
  });

  it("refuses express-session's req.session.userId = 42, a field outside data that nothing would save", async () => {
    const { manager } = setup();
    const session = await manager.open(undefined);
    expect(() => {
      (session as unknown as { userId: number }).userId = 42;
    }).toThrow(TypeError);
    expect((session as unknown as { userId?: number }).userId).toBeUndefined();
    session.data.user = 'alice';
    expect(await session.commit()).toBe('saved');
  });

  it('keeps a session whose invalidate() failed in the store going, so a retry logs it out', async () => {
    const { manager, store } = setup();
    const id = await createSession(manager, { user: 'alice' });
    const session = await manager.open(id);
    const failure = new SessionError('ERR_STORE_IO', 'disk gone');
    const spy = vi.spyOn(store, 'delete').mockRejectedValueOnce(failure);
    await expect(session.invalidate()).rejects.toBe(failure);
    expect(session.status).toBe('unchanged');
    expect(await store.get(id)).toBeDefined();
    await session.invalidate();
    spy.mockRestore();
    expect(session.status).toBe('destroyed');
    expect(await store.get(id)).toBeUndefined();
    expect(await session.commit()).toBe('destroyed');
  });

  it('never brings back a session invalidated while a late request still had it open', async () => {
    const { manager, store } = setup({ lock: false });
    const id = await createSession(manager, { count: 1, user: 'alice' });
    const late = await manager.open(id);
    const logout = await manager.open(id);
    await logout.invalidate();
    expect(await logout.commit()).toBe('destroyed');
    late.data.count = 2;
    expect(await late.commit()).toBe('gone');
    expect(await store.get(id)).toBeUndefined();
    const next = await manager.open(id);
    expect(next.id).not.toBe(id);
    expect(next.data).toEqual({});
    await next.commit();
  });

  it('is finished after commit: a second commit returns the first outcome and later changes are not saved', async () => {
    const { manager } = setup();
    const session = await manager.open(undefined);
    session.data.count = 1;
    expect(await session.commit()).toBe('saved');
    session.data.count = 99;
    expect(await session.commit()).toBe('saved');
    const reopened = await manager.open(session.id);
    expect(reopened.data.count).toBe(1);
    await reopened.commit();
    await expect(session.regenerate()).rejects.toThrow(TypeError);
  });

  it('encrypts at rest with aesGcmCodec and treats tampered storage as a corrupt record', async () => {
    const { manager, store, errors } = setup({ codec: aesGcmCodec({ keys: [generateAesKey()] }) });
    const id = await createSession(manager, { user: 'alice' });
    const record = await store.get(id);
    if (record === undefined) throw new Error('expected a stored record');
    expect(Buffer.from(record.data).includes('alice')).toBe(false);
    const tampered = Uint8Array.from(record.data);
    tampered[tampered.length - 20] = (tampered[tampered.length - 20] as number) ^ 0x40;
    await store.set(id, { data: tampered, expiresAt: record.expiresAt });
    const session = await manager.open(id);
    expect(session.id).not.toBe(id);
    expect(session.data.user).toBeUndefined();
    expect(errors.some((error) => isSessionError(error, 'ERR_CORRUPT_RECORD'))).toBe(true);
    await session.commit();
  });
});

describe('Session.discard', () => {
  it('writes nothing, releases the lock, and finishes the session', async () => {
    const { manager, store } = setup({ touchAfterMs: 0, lock: { waitMs: 50 } });
    const id = await createSession(manager, { count: 1 });
    const before = await store.get(id);
    const session = await manager.open(id);
    session.data.count = 2;
    expect(await session.discard()).toBe('unchanged');
    expect(session.committed).toBe(true);
    expect(session.locked).toBe(false);
    // Neither the change nor the touch that touchAfterMs: 0 would have made reached the store.
    expect(await store.get(id)).toEqual(before);
    expect(await session.commit()).toBe('unchanged');
    expect(await store.get(id)).toEqual(before);
    const next = await manager.open(id);
    expect(next.data.count).toBe(1);
    await next.commit();
  });

  it('stores nothing for a new or regenerated session, and reports an invalidated one as destroyed', async () => {
    const { manager, store } = setup();
    const fresh = await manager.open(undefined);
    fresh.data.count = 1;
    expect(await fresh.discard()).toBe('unchanged');
    expect(await store.count()).toBe(0);

    const id = await createSession(manager, { count: 1 });
    const regenerated = await manager.open(id);
    await regenerated.regenerate();
    expect(await regenerated.discard()).toBe('unchanged');
    expect(await store.get(regenerated.id)).toBeUndefined();

    const other = await createSession(manager, { count: 1 });
    const invalidated = await manager.open(other);
    await invalidated.invalidate();
    expect(await invalidated.discard()).toBe('destroyed');
    expect(await store.get(other)).toBeUndefined();
  });

  it('after commit() it changes nothing and returns what commit() did', async () => {
    const { manager, store } = setup();
    const session = await manager.open(undefined);
    session.data.count = 1;
    expect(await session.commit()).toBe('saved');
    expect(await session.discard()).toBe('saved');
    expect(await store.get(session.id)).toBeDefined();
  });
});

describe('regenerate', () => {
  it('moves the data to a new id and deletes the old one', async () => {
    const { manager, store } = setup();
    const oldId = await createSession(manager, { count: 3 });
    const session = await manager.open(oldId);
    const createdAt = session.createdAt;
    await session.regenerate();
    session.data.user = 'alice';
    expect(session.id).not.toBe(oldId);
    expect(await store.get(oldId)).toBeUndefined();
    expect(await session.commit()).toBe('saved');
    const reopened = await manager.open(session.id);
    expect(reopened.data).toEqual({ count: 3, user: 'alice' });
    expect(reopened.createdAt).toBe(createdAt);
    await reopened.commit();
  });

  it('keeps the old id readable for regenerateGraceMs, then it expires', async () => {
    const { manager, store } = setup({ regenerateGraceMs: 150 });
    const oldId = await createSession(manager, { count: 3 });
    const session = await manager.open(oldId);
    await session.regenerate();
    await session.commit();
    const inGrace = await manager.open(oldId);
    expect(inGrace.id).toBe(oldId);
    expect(inGrace.data.count).toBe(3);
    await inGrace.commit();
    await sleep(300);
    expect(await store.get(oldId)).toBeUndefined();
    const after = await manager.open(oldId);
    expect(after.id).not.toBe(oldId);
    await after.commit();
  });

  it('keeps the old id no longer than regenerateGraceMs, whatever requests in flight with it save or touch', async () => {
    const { manager, store } = setup({ regenerateGraceMs: 200, touchAfterMs: 0 });
    const oldId = await createSession(manager, { count: 3 });
    const login = await manager.open(oldId);
    login.data.user = 'ada';
    const regeneratedAt = Date.now();
    await login.regenerate();
    expect(await login.commit()).toBe('saved');
    // In flight with the old cookie: it sees the data as stored, never the login's changes.
    const saving = await manager.open(oldId);
    expect(saving.data).toEqual({ count: 3 });
    saving.data.count = 4;
    expect(await saving.commit()).toBe('saved');
    const touching = await manager.open(oldId);
    await touching.commit();
    const record = await store.get(oldId);
    expect(record?.expiresAt).toBeLessThanOrEqual(Date.now() + 200);
    expect(record?.expiresAt).toBeGreaterThanOrEqual(regeneratedAt);
    await sleep(300);
    expect(await store.get(oldId)).toBeUndefined();
    const after = await manager.open(oldId);
    expect(after.isNew).toBe(true);
    expect(after.data).toEqual({});
    await after.commit();
    // The new id is not bound by the old one's grace.
    const renewed = await manager.open(login.id);
    expect(renewed.data).toEqual({ count: 3, user: 'ada' });
    expect(await renewed.commit()).toBe('touched');
  });

  it('stores a regenerated fresh session even with no data', async () => {
    const { manager, store } = setup();
    const session = await manager.open(undefined);
    await session.regenerate();
    expect(await session.commit()).toBe('saved');
    expect(await store.get(session.id)).toBeDefined();
  });
});

describe('timeouts', () => {
  it('ends a session after the idle timeout', async () => {
    const { manager } = setup({ idleTimeoutMs: 100, absoluteTimeoutMs: 60_000 });
    const id = await createSession(manager, { count: 1 });
    await sleep(250);
    const session = await manager.open(id);
    expect(session.id).not.toBe(id);
    expect(session.data).toEqual({});
    await session.commit();
  });

  it('ends an active session after the absolute timeout', async () => {
    const { manager } = setup({ idleTimeoutMs: 60_000, absoluteTimeoutMs: 300, touchAfterMs: 0 });
    const id = await createSession(manager, { count: 0 });
    let current = id;
    // Keep the session busy: activity never extends it past createdAt + absoluteTimeoutMs.
    for (let step = 0; step < 20 && current === id; step++) {
      const session = await manager.open(id);
      current = session.id;
      if (current === id) {
        session.data.count = (session.data.count ?? 0) + 1;
        await session.commit();
        await sleep(50);
      } else {
        await session.commit();
      }
    }
    expect(current).not.toBe(id);
  });

  it('writes expiresAt as the earlier of the idle and absolute limits', async () => {
    const { manager, store } = setup({ idleTimeoutMs: 60_000, absoluteTimeoutMs: 10_000 });
    const session = await manager.open(undefined);
    session.data.count = 1;
    await session.commit();
    const record = await store.get(session.id);
    expect(record?.expiresAt).toBe(session.createdAt + 10_000);
  });

  it('does not touch a session whose expiry is already capped by the absolute timeout', async () => {
    const { manager } = setup({
      idleTimeoutMs: 60_000,
      absoluteTimeoutMs: 10_000,
      touchAfterMs: 0,
    });
    const id = await createSession(manager, { count: 1 });
    const session = await manager.open(id);
    expect(await session.commit()).toBe('unchanged');
  });

  it('enforces timeouts shorter than those a session was stored under', async () => {
    const { manager: long, store } = setup({ idleTimeoutMs: 60_000 });
    // close() is idempotent, so both fixtures may close the shared store.
    const { manager: short } = setup({ absoluteTimeoutMs: 50 }, store);
    const id = await createSession(long, { count: 1 });
    await sleep(120);
    const session = await short.open(id);
    expect(session.id).not.toBe(id);
    await session.commit();
    expect(await store.get(id)).toBeUndefined();
  });
});

describe('locking', () => {
  it('serializes sessions on one id so 200 concurrent increments lose none', async () => {
    const { manager } = setup({ lock: { waitMs: 60_000 } });
    const id = await createSession(manager, { count: 0 });
    await Promise.all(
      Array.from({ length: 200 }, async () => {
        const session = await manager.open(id);
        const count = session.data.count ?? 0;
        await sleep(0);
        session.data.count = count + 1;
        await session.commit();
      }),
    );
    const session = await manager.open(id);
    expect(session.data.count).toBe(200);
    await session.commit();
  });

  it('rejects with ERR_LOCK_TIMEOUT while another request holds the session', async () => {
    const { manager } = setup({ lock: { waitMs: 50 } });
    const id = await createSession(manager, { count: 0 });
    const holder = await manager.open(id);
    await expect(manager.open(id)).rejects.toMatchObject({ code: 'ERR_LOCK_TIMEOUT' });
    await holder.commit();
    const next = await manager.open(id);
    expect(next.id).toBe(id);
    await next.commit();
  });

  it('extends the lease while a session is open longer than leaseMs', async () => {
    const { manager } = setup({ lock: { waitMs: 10, leaseMs: 150, extendEveryMs: 30 } });
    const id = await createSession(manager, { count: 0 });
    const slow = await manager.open(id);
    await sleep(500);
    expect(slow.locked).toBe(true);
    await expect(manager.open(id)).rejects.toMatchObject({ code: 'ERR_LOCK_TIMEOUT' });
    slow.data.count = 1;
    expect(await slow.commit()).toBe('saved');
  });
});

describe('durations', () => {
  it('honours idle and absolute timeouts longer than a timer can run (30 days and more)', async () => {
    const day = 24 * 60 * 60_000;
    const { manager, store } = setup({ idleTimeoutMs: 40 * day, absoluteTimeoutMs: 60 * day });
    const before = Date.now();
    const id = await createSession(manager, { count: 1 });
    const record = await store.get(id);
    expect(record?.expiresAt).toBeGreaterThanOrEqual(before + 40 * day);
    expect(record?.expiresAt).toBeLessThanOrEqual(Date.now() + 40 * day);
  });

  it('refuses lock durations past the timer limit, and strings that look like numbers', () => {
    const store = new MemoryStore();
    const make = (options: Partial<SessionManagerOptions>) => () =>
      new SessionManager({ store, cleanup: manual(), ...options });
    expect(make({ lock: { leaseMs: 2 ** 31 } })).toThrow(/lock\.leaseMs.*2147483647/);
    expect(make({ lock: { waitMs: 2 ** 31 } })).toThrow(/lock\.waitMs/);
    expect(make({ idleTimeoutMs: Number.POSITIVE_INFINITY })).toThrow(/idleTimeoutMs/);
    expect(make({ idleTimeoutMs: '1000' as unknown as number })).toThrow(/'1000' \(a string\)/);
  });

  it('refuses a touchAfterMs no shorter than idleTimeoutMs: an active user would expire between touches', () => {
    const store = new MemoryStore();
    const make = (options: Partial<SessionManagerOptions>) => () =>
      new SessionManager({ store, cleanup: manual(), ...options });
    expect(make({ idleTimeoutMs: 1000, touchAfterMs: 5000 })).toThrow(
      new TypeError(
        "touchAfterMs must be less than idleTimeoutMs (1000), got 5000: a session read but not saved is touched only once touchAfterMs has passed, so an active user's session would expire between touches",
      ),
    );
    expect(make({ idleTimeoutMs: 1000, touchAfterMs: 1000 })).toThrow(/touchAfterMs must be less/);
    expect(make({ idleTimeoutMs: 1000, touchAfterMs: 999 })).not.toThrow();
    // The default, a tenth of idleTimeoutMs, always fits.
    expect(make({ idleTimeoutMs: 1 })).not.toThrow();
  });

  it('refuses idle and absolute timeouts whose expiry a Date could not hold, and the longest allowed still gives one', async () => {
    const store = new MemoryStore();
    const make = (options: Partial<SessionManagerOptions>) => () =>
      new SessionManager({ store, cleanup: manual(), ...options });
    expect(make({ idleTimeoutMs: Number.MAX_SAFE_INTEGER })).toThrow(
      new TypeError(
        `idleTimeoutMs must be a number of milliseconds greater than 0 and up to ${MAX_SESSION_TIMEOUT_MS}, got ${Number.MAX_SAFE_INTEGER}`,
      ),
    );
    expect(make({ absoluteTimeoutMs: MAX_SESSION_TIMEOUT_MS + 1 })).toThrow(/^absoluteTimeoutMs/);

    const { manager, store: kept } = setup({
      idleTimeoutMs: MAX_SESSION_TIMEOUT_MS,
      absoluteTimeoutMs: MAX_SESSION_TIMEOUT_MS,
    });
    const before = Date.now();
    const record = await kept.get(await createSession(manager, { count: 1 }));
    const expiresAt = record?.expiresAt ?? Number.NaN;
    expect(expiresAt).toBeGreaterThanOrEqual(before + MAX_SESSION_TIMEOUT_MS);
    // toISOString throws a RangeError for a time past the last Date.
    expect(new Date(expiresAt).toISOString()).toMatch(/^\+\d{6}-/);
  });
});

describe('options of the wrong kind', () => {
  it('are refused with a TypeError naming them, where they would fail every request or drop every report', () => {
    const store = new MemoryStore();
    const make = (options: object) => () =>
      new SessionManager({ store, cleanup: manual(), ...options } as SessionManagerOptions);
    // The factory, not a codec: every changed session would fail to save.
    expect(make({ codec: aesGcmCodec })).toThrow(
      /codec must be a SessionCodec.*must be called: codec: aesGcmCodec\(\{ keys \}\)/,
    );
    expect(make({ codec: { name: 'half' } })).toThrow(/codec must be a SessionCodec/);
    expect(make({ onError: 'log' })).toThrow(/onError must be a function, got 'log'/);
    expect(make({ onSweep: 42 })).toThrow(/onSweep must be a function, got 42/);
    expect(make({ cleanup: 'hourly' })).toThrow(/cleanup must be a cleanup policy/);
    expect(make({ store: null })).toThrow(
      /SessionManager needs \{ store \}: a SessionStore, got null/,
    );
    expect(make({ store: {} })).toThrow(TypeError);
  });
});

describe('misspelt options', () => {
  it('are refused with a TypeError naming them, where a typo would silently drop a setting', async () => {
    const store = new MemoryStore();
    const make = (options: object) => () =>
      new SessionManager({ store, cleanup: manual(), ...options } as SessionManagerOptions);
    // Without the check each of these runs with the setting off: no cap, the default timeout.
    expect(make({ maxSessionPerOwner: 1 })).toThrow(/'maxSessionPerOwner'.*'maxSessionsPerOwner'/);
    expect(make({ idleTimeout: 60_000 })).toThrow(/'idleTimeout'.*'idleTimeoutMs'/);
    expect(make({ lock: { waitMS: 10 } })).toThrow(/lock: unknown option 'waitMS'/);

    const { manager } = setup();
    const session = await manager.open(undefined);
    session.data.user = 'ada';
    await session.setOwner('ada');
    await session.commit();
    // "Sign out other devices" with `expect` for `except` would sign out this device too.
    await expect(manager.revokeOwner('ada', { expect: session.id } as never)).rejects.toThrow(
      /'expect'.*'except'/,
    );
    expect((await manager.sessionsOf('ada')).map((listed) => listed.id)).toEqual([session.id]);
    await expect(manager.open(undefined, { sginal: AbortSignal.abort() } as never)).rejects.toThrow(
      /'sginal'.*'signal'/,
    );
    await expect(manager.open(undefined, 'fast' as never)).rejects.toThrow(TypeError);
    // Refused when given, not later where they are used (a lock wait, a login).
    await expect(manager.open(undefined, { signal: 'x' } as never)).rejects.toThrow(/signal/);
    await expect(manager.open(undefined, { loginMeta: 5 } as never)).rejects.toThrow(
      /loginMeta must be a function/,
    );
  });
});
