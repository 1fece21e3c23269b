import { EventEmitter } from 'node:events';
import { describe, expect, it, vi } from 'vitest';
import { isSessionError, MemoryStore, SessionError, SessionManager } from '../src/index.js';
import {
  type LeaseBackend,
  type LeaseClaim,
  LeaseLocks,
  MemoryLeases,
  openSessionAdapter,
  sleep,
} from '../src/store.js';
import { codeOf, leaseLock } from './helpers.js';
import { managerFixture } from './manager-fixture.js';

// The machine is shared with other suites: allow slow runs; no test asserts on time.
vi.setConfig({ testTimeout: 60_000 });

const idA = 'aaaaaaaaaaaaaaaaaaaa';

/** `MemoryLeases` as the `LeaseBackend` it is, whose claim a subclass may answer later. */
const AsyncMemoryLeases: new () => LeaseBackend = MemoryLeases;

/** Leases in a `Map` that answer a claim on a later turn, as a backend across a network does. */
class RemoteLeases extends AsyncMemoryLeases {
  override claim(claim: LeaseClaim): Promise<boolean> {
    return sleep(5).then(() => super.claim(claim));
  }
}

/** Leases whose claims answer only when the test says so, as a backend that stopped responding. */
class StalledLeases extends AsyncMemoryLeases {
  readonly stalled: Array<() => void> = [];

  override claim(claim: LeaseClaim): Promise<boolean> {
    return new Promise((resolve) => this.stalled.push(() => resolve(super.claim(claim))));
  }
}

/** Leases whose claims are taken but whose answers are lost, as a reply past a command timeout. */
class LostReplyLeases extends AsyncMemoryLeases {
  lose = true;

  override claim(claim: LeaseClaim): Promise<boolean> {
    const taken = super.claim(claim);
    if (!this.lose) return Promise.resolve(taken);
    return Promise.reject(new Error('no reply within the command timeout'));
  }
}

/** Leases whose releases fail while `failing` is set, as over a connection that was lost. */
class FailingReleaseLeases extends AsyncMemoryLeases {
  failing = false;
  override releasesOnClose = true;

  override release(claim: LeaseClaim): Promise<boolean> {
    if (this.failing) return Promise.reject(new Error('the connection was lost'));
    return Promise.resolve(super.release(claim));
  }
}

function aborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason)));
}

describe('an acquire refused by another process', () => {
  it('waits, then takes the lock once the other holder releases it', async () => {
    const shared = new MemoryLeases();
    const other = await new LeaseLocks(shared).acquire(idA);
    const locks = new LeaseLocks(shared);
    const waiting = locks.acquire(idA, { waitMs: 60_000 });
    await sleep(20);
    await other.release();
    const lock = leaseLock(await waiting);
    expect(lock.held).toBe(true);
    await lock.release();
    expect(locks.size).toBe(0);
  });

  it('times out with ERR_LOCK_TIMEOUT, once (waitMs 0) or after waiting', async () => {
    const shared = new MemoryLeases();
    const other = await new LeaseLocks(shared).acquire(idA);
    const locks = new LeaseLocks(shared);
    expect(await codeOf(locks.acquire(idA, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
    expect(await codeOf(locks.acquire(idA, { waitMs: 20 }))).toBe('ERR_LOCK_TIMEOUT');
    expect(locks.size).toBe(0);
    await other.release();
  });

  it('stops waiting when its signal aborts', async () => {
    const shared = new MemoryLeases();
    const other = await new LeaseLocks(shared).acquire(idA);
    const locks = new LeaseLocks(shared);
    const controller = new AbortController();
    const waiting = locks.acquire(idA, { signal: controller.signal });
    await sleep(10);
    controller.abort(new Error('client went away'));
    await expect(waiting).rejects.toThrow('client went away');
    expect(locks.size).toBe(0);
    await other.release();
  });

  it('stays ahead of the acquires that arrived while its claim was in flight', async () => {
    const shared = new RemoteLeases();
    const other = await new LeaseLocks(shared).acquire(idA);
    const locks = new LeaseLocks(shared);
    const order: number[] = [];
    const waiters = [1, 2, 3].map((n) =>
      locks.acquire(idA).then(async (lock) => {
        order.push(n);
        await lock.release();
      }),
    );
    await sleep(30);
    await other.release();
    await Promise.all(waiters);
    expect(order).toEqual([1, 2, 3]);
  });

  it('hands the key back when aborted while a claim that wins is in flight', async () => {
    const locks = new LeaseLocks(new RemoteLeases());
    const controller = new AbortController();
    const acquiring = locks.acquire(idA, { signal: controller.signal });
    controller.abort(new Error('client went away'));
    await expect(acquiring).rejects.toThrow('client went away');
    // Held by the abandoned claim, the key would stay taken for its whole 30 s lease.
    const next = await locks.acquire(idA, { waitMs: 5000 });
    await next.release();
  });
});

describe('an acquire whose backend does not answer', () => {
  it('times out after waitMs, and a claim that wins later is handed back', async () => {
    const backend = new StalledLeases();
    const locks = new LeaseLocks(backend);
    expect(await codeOf(locks.acquire(idA, { waitMs: 20 }))).toBe('ERR_LOCK_TIMEOUT');
    const next = locks.acquire(idA, { waitMs: 60_000 });
    expect(backend.stalled).toHaveLength(1);
    backend.stalled[0]?.();
    await sleep(10);
    // The late claim took the key and gave it back; then the queued acquire claims it.
    expect(backend.stalled).toHaveLength(2);
    backend.stalled[1]?.();
    const lock = leaseLock(await next);
    expect(lock.held).toBe(true);
    await lock.release();
    expect(locks.size).toBe(0);
  });

  it('stops when its signal aborts', async () => {
    const backend = new StalledLeases();
    const locks = new LeaseLocks(backend);
    const controller = new AbortController();
    const acquiring = locks.acquire(idA, { signal: controller.signal });
    controller.abort(new Error('client went away'));
    await expect(acquiring).rejects.toThrow('client went away');
    backend.stalled[0]?.();
    await sleep(10);
    expect(locks.size).toBe(0);
    // The claim that won after the abort was released: the key is free in the backend.
    const probe = {
      key: idA,
      id: idA,
      token: 'probe-token-000000000',
      expiresAt: Date.now() + 1000,
    };
    expect(MemoryLeases.prototype.claim.call(backend, { ...probe, waited: false })).toBe(true);
  });
});

describe('an acquire whose claim fails though the backend took it', () => {
  it('hands the claim back, so the key is not held for the whole lease by nobody', async () => {
    const backend = new LostReplyLeases();
    const locks = new LeaseLocks(backend);
    expect(await codeOf(locks.acquire(idA, { waitMs: 0, leaseMs: 60_000 }))).toBe('ERR_STORE_IO');
    backend.lose = false;
    await sleep(10);
    const lock = await new LeaseLocks(backend).acquire(idA, { waitMs: 0 });
    await lock.release();
  });

  it('does so for a waiter too, whose claim is made once the holder releases', async () => {
    const backend = new LostReplyLeases();
    backend.lose = false;
    const holder = await new LeaseLocks(backend).acquire(idA);
    const locks = new LeaseLocks(backend);
    const waiting = codeOf(locks.acquire(idA, { waitMs: 60_000, leaseMs: 60_000 }));
    await sleep(20);
    backend.lose = true;
    await holder.release();
    expect(await waiting).toBe('ERR_STORE_IO');
    backend.lose = false;
    await sleep(10);
    const lock = await new LeaseLocks(backend).acquire(idA, { waitMs: 0 });
    await lock.release();
  });
});

describe('a release the backend fails', () => {
  it('is tried again by the next release(), which frees the key for other holders', async () => {
    const backend = new FailingReleaseLeases();
    const lock = await new LeaseLocks(backend).acquire(idA, { leaseMs: 60_000 });
    backend.failing = true;
    expect(await codeOf(lock.release())).toBe('ERR_STORE_IO');
    const other = new LeaseLocks(backend);
    // The backend still holds the lease.
    expect(await codeOf(other.acquire(idA, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
    backend.failing = false;
    await lock.release();
    const next = await other.acquire(idA, { waitMs: 0 });
    await next.release();
  });

  it('is tried again by close() over a backend that frees its locks on close', async () => {
    const backend = new FailingReleaseLeases();
    const locks = new LeaseLocks(backend);
    const lock = await locks.acquire(idA, { leaseMs: 60_000 });
    backend.failing = true;
    expect(await codeOf(lock.release())).toBe('ERR_STORE_IO');
    backend.failing = false;
    await locks.close();
    const next = await new LeaseLocks(backend).acquire(idA, { waitMs: 0 });
    await next.release();
  });
});

describe('lease ends', () => {
  it('a short lease taken after a long one still runs out on its own time', async () => {
    const locks = new LeaseLocks(new MemoryLeases());
    const long = leaseLock(await locks.acquire('long-held-session-id', { leaseMs: 60_000 }));
    const short = await locks.acquire(idA, { leaseMs: 20 });
    const reason = await aborted(short.signal);
    expect(isSessionError(reason, 'ERR_LOCK_LOST')).toBe(true);
    expect(long.held).toBe(true);
    await long.release();
  });

  it('a lock whose signal was never read reports the loss when it is read later', async () => {
    const locks = new LeaseLocks(new MemoryLeases());
    const old = leaseLock(await locks.acquire(idA, { leaseMs: 20 }));
    const next = await locks.acquire(idA, { waitMs: 60_000 });
    expect(old.held).toBe(false);
    expect(old.signal.aborted).toBe(true);
    expect(isSessionError(old.signal.reason, 'ERR_LOCK_LOST')).toBe(true);
    expect(await codeOf(old.release())).toBe('ERR_LOCK_LOST');
    await next.release();
  });

  it('a fenced write that finds the lease gone from the backend loses the lock and frees it here', async () => {
    const shared = new MemoryLeases();
    const locks = new LeaseLocks(shared);
    const lock = leaseLock(await locks.acquire(idA, { leaseMs: 60_000 }));
    const write = locks.fence(lock, async (lease) => {
      // The backend lost the lease (a restart without persistence, a failover, an eviction), and
      // the store's fenced write finds it gone.
      shared.release({ key: lease.key, id: idA, token: lease.token, expiresAt: 0, waited: false });
      throw new SessionError('ERR_LOCK_LOST', 'the lease is no longer held');
    });
    expect(await codeOf(write)).toBe('ERR_LOCK_LOST');
    expect(lock.held).toBe(false);
    expect(isSessionError(lock.signal.reason, 'ERR_LOCK_LOST')).toBe(true);
    // The next request of that session gets the lock at once, not after the 60 s lease.
    const next = await locks.acquire(idA, { waitMs: 1000 });
    await next.release();
    expect(await codeOf(lock.release())).toBe('ERR_LOCK_LOST');
  });
});

describe('SessionManager lock keep-alive', () => {
  const setup = managerFixture<{ count?: number }>();

  it('extends a short lease opened after a session with a long one', async () => {
    const store = new MemoryStore();
    const { manager: slowExtender } = setup({ lock: { leaseMs: 60_000 } }, store);
    const quickExtender = new SessionManager<{ count?: number }>({
      store,
      lock: { waitMs: 10, leaseMs: 400, extendEveryMs: 40 },
    });
    const first = await slowExtender.open();
    first.data.count = 0;
    await first.commit();
    const other = await slowExtender.open();
    other.data.count = 0;
    await other.commit();
    const long = await slowExtender.open(other.id);
    const short = await quickExtender.open(first.id);
    await sleep(1200);
    expect(short.locked).toBe(true);
    short.data.count = 1;
    expect(await short.commit()).toBe('saved');
    await long.commit();
    await quickExtender.close();
  });
});

describe('SessionManager.openForConnection', () => {
  const setup = managerFixture<{ count?: number }>();

  async function stored(manager: SessionManager<{ count?: number }>): Promise<string> {
    const session = await manager.open();
    session.data.count = 0;
    await session.commit();
    return session.id;
  }

  it('leaves no listener on the connection, whether the lock was free or had to be waited for', async () => {
    const { manager } = setup({ lock: { waitMs: 60_000 } });
    const id = await stored(manager);
    const free = new EventEmitter();
    await (await manager.openForConnection(id, free)).commit();
    expect(free.listenerCount('close')).toBe(0);
    const holder = await manager.open(id);
    const waitingConnection = new EventEmitter();
    const waiting = manager.openForConnection(id, waitingConnection);
    expect(waitingConnection.listenerCount('close')).toBe(1);
    await holder.commit();
    await (await waiting).commit();
    expect(waitingConnection.listenerCount('close')).toBe(0);
  });

  it('stops waiting for the lock when the client hangs up', async () => {
    const { manager } = setup({ lock: { waitMs: 60_000 } });
    const id = await stored(manager);
    const holder = await manager.open(id);
    const connection = new EventEmitter();
    const waiting = manager.openForConnection(id, connection);
    await sleep(5);
    connection.emit('close');
    await expect(waiting).rejects.toMatchObject({
      name: 'AbortError',
      message: 'The client closed the connection',
    });
    expect(connection.listenerCount('close')).toBe(0);
    await holder.commit();
  });

  it('refuses options it does not take and a response that cannot tell a hang-up, with a TypeError', async () => {
    const { manager } = setup();
    const connection = new EventEmitter();
    // A signal here would be ignored: the connection's close is what stops the wait.
    await expect(
      manager.openForConnection(undefined, connection, { signal: AbortSignal.abort() } as never),
    ).rejects.toThrow(new TypeError("manager.openForConnection: unknown option 'signal'"));
    await expect(
      manager.openForConnection(undefined, connection, { loginMeta: 'a phone' } as never),
    ).rejects.toThrow(
      new TypeError(
        "manager.openForConnection: loginMeta must be a function, got 'a phone' (a string)",
      ),
    );
    await expect(manager.openForConnection(undefined, {} as never)).rejects.toThrow(
      /^manager\.openForConnection: response must be an HTTP response/,
    );
  });

  it('tells an HTTP/2 response that closed already by its stream: it neither waits for it nor leaves its session open', async () => {
    const { manager } = setup({ lock: { waitMs: 1000 } });
    const id = await stored(manager);
    const holder = await manager.open(id);
    // An Http2ServerResponse has no `closed`; its stream says so, and 'close' will not come again.
    const closedStream = () => Object.assign(new EventEmitter(), { stream: { destroyed: true } });
    await expect(manager.openForConnection(id, closedStream())).rejects.toMatchObject({
      name: 'AbortError',
    });
    await holder.commit();
    // One opened once its client had gone is finished by the adapter at once, freeing its lock.
    const adapter = openSessionAdapter<{ count?: number }>(
      { manager, secret: 'a secret of 32 characters or more for these tests' },
      'test',
    );
    const late = await manager.openForConnection(id, new EventEmitter());
    adapter.track(
      late,
      closedStream(),
      () => 200,
      () => {},
    );
    await new Promise((resolve) => setImmediate(resolve));
    expect(late.committed).toBe(true);
  });

  it('does not wait for a connection that has already closed', async () => {
    const { manager } = setup({ lock: { waitMs: 60_000 } });
    const id = await stored(manager);
    const holder = await manager.open(id);
    const connection = Object.assign(new EventEmitter(), { closed: true });
    await expect(manager.openForConnection(id, connection)).rejects.toMatchObject({
      name: 'AbortError',
      message: 'The client closed the connection',
    });
    await holder.commit();
  });
});
