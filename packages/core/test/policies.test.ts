import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  generateSessionId,
  MemoryStore,
  manual,
  type SessionStore,
  SWEEP_LOCK_ID,
  type SweepRun,
  sweepByChance,
  sweepEvery,
} from '../src/index.js';
import { sleep } from '../src/store.js';

// The machine is shared with other suites: allow slow runs; no test asserts on time.
vi.setConfig({ testTimeout: 60_000 });

const stores: SessionStore[] = [];
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
});

async function storeWithExpired(expired: number, live: number): Promise<MemoryStore> {
  const store = new MemoryStore();
  stores.push(store);
  const data = new TextEncoder().encode('{}');
  for (let i = 0; i < expired; i++) {
    await store.set(generateSessionId(), { data, expiresAt: Date.now() + 30 });
  }
  for (let i = 0; i < live; i++) {
    await store.set(generateSessionId(), { data, expiresAt: Date.now() + 60_000 });
  }
  await sleep(60);
  return store;
}

function waitFor(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = () => {
      if (check()) resolve();
      else if (Date.now() - started > timeoutMs) reject(new Error('condition not reached'));
      else setTimeout(poll, 5);
    };
    poll();
  });
}

describe('manual()', () => {
  it('removes expired records only when run, and keeps live ones', async () => {
    const store = await storeWithExpired(50, 10);
    const sweeper = manual().start(store);
    const run = await sweeper.run();
    expect(run).toMatchObject({ outcome: 'swept', removed: 50, done: true });
    expect(await store.count()).toBe(10);
    await sweeper.close();
  });

  it('finishes a backlog larger than one sweep call within one run', async () => {
    const store = await storeWithExpired(2500, 0);
    const sweeper = manual({ limit: 1000, budgetMs: 30_000 }).start(store);
    expect(await sweeper.run()).toMatchObject({ removed: 2500, done: true });
    await sweeper.close();
  });
});

describe('single flight and single runner', () => {
  it('joins a run requested while one is in flight', async () => {
    const store = await storeWithExpired(200, 0);
    const sweeper = manual().start(store);
    const [first, second] = await Promise.all([sweeper.run(), sweeper.run()]);
    expect(first).toBe(second);
    expect(first.removed).toBe(200);
    await sweeper.close();
  });

  it('skips as busy while another runner holds the sweep lock, then runs once it is free', async () => {
    const store = await storeWithExpired(20, 0);
    const other = await store.locks.acquire(SWEEP_LOCK_ID, { leaseMs: 60_000 });
    const sweeper = manual().start(store);
    expect(await sweeper.run()).toMatchObject({ outcome: 'busy', removed: 0 });
    expect(await store.sweep({ limit: 1, budgetMs: 0, now: Date.now() - 10_000 })).toMatchObject({
      removed: 0,
    });
    await other.release();
    expect(await sweeper.run()).toMatchObject({ outcome: 'swept', removed: 20 });
    await sweeper.close();
  });
});

describe('sweepByChance', () => {
  it('runs after a response with probability 1 and never with probability 0', async () => {
    const store = await storeWithExpired(30, 0);
    const runs: SweepRun[] = [];
    const never = sweepByChance(0).start(store, { onSweep: (run) => runs.push(run) });
    for (let i = 0; i < 100; i++) never.afterResponse();
    await sleep(20);
    expect(runs).toHaveLength(0);
    await never.close();

    const always = sweepByChance(1).start(store, { onSweep: (run) => runs.push(run) });
    always.afterResponse();
    // Never on the caller's path: the run starts on a later turn of the event loop.
    expect(always.running).toBe(false);
    await waitFor(() => runs.length > 0);
    expect(runs[0]).toMatchObject({ outcome: 'swept', removed: 30 });
    await always.close();
  });

  it('rejects a probability outside 0..1', () => {
    expect(() => sweepByChance(2)).toThrow(TypeError);
    expect(() => sweepByChance(Number.NaN)).toThrow(TypeError);
  });

  it('refuses a bad limit, budgetMs or leaseMs when the policy is made, before any store starts it', () => {
    expect(() => sweepByChance(0.5, { limit: 0 })).toThrow(/limit/);
    expect(() => sweepEvery(60_000, { budgetMs: -1 })).toThrow(/budgetMs/);
    expect(() => manual({ limit: 1.5 })).toThrow(TypeError);
    // The sweep lock's lease must outlast a run, or the run is cut off with ERR_LOCK_LOST.
    for (const budgetMs of [60_000, Number.POSITIVE_INFINITY]) {
      expect(() => sweepEvery(120_000, { budgetMs })).toThrow(
        /^budgetMs must be less than leaseMs \(60000\)/,
      );
    }
    expect(() => manual({ budgetMs: 5000, leaseMs: 5000 })).toThrow(/budgetMs must be less/);
    expect(() => manual({ budgetMs: 4999, leaseMs: 5000 })).not.toThrow();
  });

  it('refuses misspelt options with a TypeError naming them, in every policy', () => {
    expect(() => sweepByChance(0.5, { limt: 10 } as never)).toThrow(/'limt'.*'limit'/);
    expect(() => sweepEvery(60_000, { jiter: 0.2 } as never)).toThrow(/'jiter'.*'jitter'/);
    expect(() => manual({ budget: 100 } as never)).toThrow(/'budget'.*'budgetMs'/);
    expect(() => manual({ jitter: 0.2 } as never)).toThrow(/'jitter'/);
  });

  it('start() refuses a misspelt handler, a handler that is not a function and a signal that is not one, before it runs', async () => {
    const store = new MemoryStore();
    stores.push(store);
    const onError = () => {};
    for (const policy of [manual(), sweepByChance(1), sweepEvery(60_000)]) {
      expect(() => policy.start(store, { onErorr: onError } as never)).toThrow(
        /'onErorr'.*'onError'/,
      );
      expect(() => policy.start(store, { onError: 'log' } as never)).toThrow(
        /onError must be a function/,
      );
      expect(() => policy.start(store, { onSweep: {} } as never)).toThrow(
        /onSweep must be a function/,
      );
      expect(() => policy.start(store, { signal: 'stop' } as never)).toThrow(/signal/);
      expect(() => policy.start(store, null as never)).toThrow(TypeError);
      await policy.start(store, { onError }).close();
    }
  });

  it('start() refuses what is not a store, naming a store whose open() was not awaited, before any run', () => {
    const opening = MemoryStore.open();
    for (const policy of [manual(), sweepByChance(1), sweepEvery(60_000)]) {
      expect(() => policy.start(opening as never)).toThrow(
        /policy.start needs a SessionStore.*await the store's open\(\) first/,
      );
      for (const notAStore of [undefined, {}, { sweep() {} }]) {
        expect(() => policy.start(notAStore as never)).toThrow(TypeError);
      }
    }
    return opening.then((store) => store.close());
  });
});

describe('sweepEvery', () => {
  it('runs repeatedly on its timer', async () => {
    const store = await storeWithExpired(10, 0);
    const runs: SweepRun[] = [];
    const sweeper = sweepEvery(20).start(store, { onSweep: (run) => runs.push(run) });
    await waitFor(() => runs.length >= 3);
    expect(runs[0]?.removed).toBe(10);
    await sweeper.close();
  });

  it('reports an error and still runs next time', async () => {
    const store = await storeWithExpired(10, 0);
    const errors: unknown[] = [];
    const runs: SweepRun[] = [];
    let failures = 2;
    // The store's own sweep, failing its first two calls the way a broken disk would.
    const failing: SessionStore = {
      capabilities: store.capabilities,
      locks: store.locks,
      maxRecordBytes: store.maxRecordBytes,
      get closed() {
        return store.closed;
      },
      get: (id) => store.get(id),
      set: (id, record, options) => store.set(id, record, options),
      touch: (id, expiresAt) => store.touch(id, expiresAt),
      delete: (id) => store.delete(id),
      sweep: (options) => {
        if (failures > 0) {
          failures--;
          return Promise.reject(new Error('disk on fire'));
        }
        return store.sweep(options);
      },
      count: () => store.count(),
      ids: () => store.ids(),
      clear: () => store.clear(),
      close: () => store.close(),
    };
    const sweeper = sweepEvery(20).start(failing, {
      onError: (error) => errors.push(error),
      onSweep: (run) => runs.push(run),
    });
    await waitFor(() => runs.length >= 1);
    expect(errors).toHaveLength(2);
    expect(runs[0]?.removed).toBe(10);
    // A failed run released the sweep lock: a new run can take it.
    expect((await store.locks.acquire(SWEEP_LOCK_ID, { waitMs: 5_000 })).token).toBeTruthy();
    await sweeper.close();
  });

  it('stops when its AbortSignal aborts', async () => {
    const store = await storeWithExpired(0, 0);
    const controller = new AbortController();
    const runs: SweepRun[] = [];
    const sweeper = sweepEvery(20).start(store, {
      signal: controller.signal,
      onSweep: (run) => runs.push(run),
    });
    await waitFor(() => runs.length >= 1);
    controller.abort();
    await waitFor(() => sweeper.closed);
    const seen = runs.length;
    await sleep(100);
    expect(runs.length).toBe(seen);
  });

  it('stops on close() and ends quietly when its store closes', async () => {
    const store = await storeWithExpired(0, 0);
    const errors: unknown[] = [];
    const sweeper = sweepEvery(20).start(store, { onError: (error) => errors.push(error) });
    await store.close();
    stores.splice(stores.indexOf(store), 1);
    await waitFor(() => sweeper.closed);
    expect(errors).toHaveLength(0);
    await sweeper.close();
    await expect(sweeper.run()).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
  });
});

describe('durations past the timer limit', () => {
  it('sweepEvery refuses an interval whose jittered delay would not fit one timer', () => {
    expect(() => sweepEvery(2 ** 31)).toThrow(/intervalMs.*milliseconds/);
    expect(() => sweepEvery(2 ** 31 - 1, { jitter: 0.5 })).toThrow(/intervalMs/);
    expect(() => sweepEvery(Number.POSITIVE_INFINITY)).toThrow(TypeError);
    expect(() => manual({ leaseMs: 2 ** 31 })).toThrow(/leaseMs.*2147483647/);
  });
});
