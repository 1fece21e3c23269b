import { SWEEP_LOCK_ID } from '@sessile/core';
import { describe, expect, it } from 'vitest';
import { collect, delay, fill, HOUR_MS, record, sweepToDone, withStore } from '../helpers.js';
import type { ConformanceOptions } from '../options.js';

type Test = (name: string, body: Parameters<typeof withStore>[1]) => void;

/**
 * What `sweep` owes depends on `expiry`: a `'sweep'` store removes expired records as of `now`,
 * in bounded, resumable calls; a `'native'` store's backend removes them itself, so its sweep
 * only reports `done` and never removes a live record.
 */
export function sweepTests(
  options: ConformanceOptions,
  expiryIndex: boolean,
  expiry: 'sweep' | 'native' = 'sweep',
): void {
  const test: Test = (name, body) => it(name, () => withStore(options, body), 120_000);

  describe('sweep', () => {
    if (expiry === 'native') nativeSweepTests(test, options.timeScale ?? 1);
    else {
      removalTests(test, expiryIndex);
      closeDuringSweepTest(test, options.reopen);
    }

    test('an aborted signal stops the sweep before it removes anything', async (store) => {
      const start = Date.now();
      await fill(store, 5, start + HOUR_MS);
      const controller = new AbortController();
      controller.abort();
      const result = await store.sweep({ now: start + 2 * HOUR_MS, signal: controller.signal });
      expect(result, 'an already aborted signal does no work and reports done: false').toEqual({
        removed: 0,
        scanned: 0,
        done: false,
      });
      expect(await store.count(), 'an aborted sweep removes nothing').toBe(5);
    });

    test('reports done with nothing to remove on a store of live records', async (store) => {
      await fill(store, 5, Date.now() + HOUR_MS);
      const result = await store.sweep();
      expect(result.removed, 'a sweep never removes a live record').toBe(0);
      expect(result.done, 'with nothing expired, one call reports done').toBe(true);
      expect(await store.count(), 'a sweep never removes a live record').toBe(5);
    });
  });
}

function nativeSweepTests(test: Test, scale: number): void {
  test('native expiry: expired records are gone without a sweep, and one call reports done', async (store) => {
    const live = await fill(store, 5, Date.now() + HOUR_MS);
    await fill(store, 5, Date.now() + 200 * scale);
    await delay(400 * scale);
    expect(await store.count(), 'native expiry: count() never includes an expired record').toBe(5);
    expect(
      (await collect(store.ids())).sort(),
      'native expiry: ids() lists live records only',
    ).toEqual([...live].sort());
    expect(await store.sweep(), "expiry: 'native': sweep() resolves done at once").toMatchObject({
      removed: 0,
      done: true,
    });
    expect(await store.count()).toBe(5);
  });

  test('native expiry: sweeps while the caller holds SWEEP_LOCK_ID, as cleanup policies do', async (store) => {
    await fill(store, 5, Date.now() + HOUR_MS);
    const policyLock = await store.locks.acquire(SWEEP_LOCK_ID, {
      waitMs: 10_000,
      leaseMs: 60_000,
    });
    try {
      expect((await store.sweep()).done).toBe(true);
      expect(await store.count()).toBe(5);
    } finally {
      await policyLock.release();
    }
  });
}

/**
 * A cron job's sweep, with no limit or budget, and a shutdown that closes the store under it:
 * close() waits for the sweep, so the sweep must stop at its next batch, resolve rather than
 * fail, and report as removed exactly what is gone, since the next process sweeps only the rest.
 */
function closeDuringSweepTest(test: Test, reopen: ConformanceOptions['reopen']): void {
  test('close() during a sweep with no limit or budget: the sweep stops at its next batch and resolves, honest about what it removed, and a reopened store sweeps the rest', async (store) => {
    const expiresAt = Date.now() + HOUR_MS;
    const ids = await fill(store, 3000, expiresAt);
    const sweeping = store.sweep({
      now: expiresAt + 1,
      limit: Number.POSITIVE_INFINITY,
      budgetMs: 600_000,
    });
    await store.close();
    const stopped = await sweeping;
    expect(
      stopped.removed,
      'close() stops the sweep at its next batch: a shutdown does not wait for the rest',
    ).toBeLessThan(ids.length);
    expect(
      stopped.done,
      'a sweep cut short by close() reports done: false, since expired records are left',
    ).toBe(false);
    if (reopen === undefined) return;
    const again = await reopen();
    try {
      const rest = await sweepToDone(again, expiresAt + 1);
      expect(
        rest.removed,
        'what the stopped sweep reported removed is gone after reopen, and the rest is left to sweep',
      ).toBe(ids.length - stopped.removed);
      expect(await again.count()).toBe(0);
    } finally {
      await again.close();
    }
  });
}

function removalTests(test: Test, expiryIndex: boolean): void {
  // Records "expire" at T+1h and the suite sweeps as of T+2h, so nothing depends on sleeps.
  test('removes exactly the expired records and never a live one', async (store) => {
    const start = Date.now();
    const live = await fill(store, 30, start + 10 * HOUR_MS);
    await fill(store, 20, start + HOUR_MS);
    const { removed } = await sweepToDone(store, start + 2 * HOUR_MS);
    expect(
      removed,
      "expiry: 'sweep': sweeps as of now remove every record with expiresAt <= now",
    ).toBe(20);
    expect(await store.count(), 'a sweep never removes a live record').toBe(30);
    expect((await collect(store.ids())).sort(), 'the live records are the ones left').toEqual(
      [...live].sort(),
    );
  });

  test('respects touches and overwrites made after the first write', async (store) => {
    const start = Date.now();
    const ids = await fill(store, 10, start + HOUR_MS);
    for (const id of ids.slice(0, 5)) await store.touch(id, start + 10 * HOUR_MS);
    for (const id of ids.slice(5, 8))
      await store.set(id, record({ again: id }, start + 10 * HOUR_MS));
    const { removed } = await sweepToDone(store, start + 2 * HOUR_MS);
    expect(
      removed,
      'a touch or overwrite after the first write moves the expiry the sweep sees',
    ).toBe(2);
    for (const id of ids.slice(0, 8)) expect(await store.get(id)).toBeDefined();
    for (const id of ids.slice(8)) expect(await store.get(id)).toBeUndefined();
  });

  test('honours limit, reports done honestly, and repeated calls finish the job', async (store) => {
    const start = Date.now();
    await fill(store, 10, start + 10 * HOUR_MS);
    await fill(store, 25, start + HOUR_MS);
    let total = 0;
    let calls = 0;
    for (;;) {
      const result = await store.sweep({ now: start + 2 * HOUR_MS, limit: 7 });
      calls++;
      expect(result.removed, 'one call removes at most `limit` records').toBeLessThanOrEqual(7);
      expect(result.scanned, 'one call examines at most `limit` records').toBeLessThanOrEqual(7);
      total += result.removed;
      if (result.done) break;
      expect(calls, 'repeated calls finish the job').toBeLessThan(1000);
    }
    expect(total, 'repeated calls remove every expired record').toBe(25);
    expect(calls, 'done: true only once nothing expired is left').toBeGreaterThanOrEqual(4);
    expect(await store.count()).toBe(10);
    const again = await store.sweep({ now: start + 2 * HOUR_MS });
    expect(again).toMatchObject({ removed: 0, done: true });
  });

  test('a later sweep removes what expired since an earlier one finished, also after a pass resumed at a later now', async (store) => {
    const start = Date.now();
    // Written first, so a store that walks its records in write order passes them as live at T+2h.
    await fill(store, 10, start + 3 * HOUR_MS);
    await fill(store, 10, start + HOUR_MS);
    const live = await fill(store, 5, start + 10 * HOUR_MS);
    const first = await store.sweep({ now: start + 2 * HOUR_MS, limit: 5 });
    expect(first.done, 'a sweep cut short by limit with work left reports done: false').toBe(false);
    // Resumed as of T+4h, the pass may not report done while a record it kept as live at T+2h
    // has expired by T+4h: done means nothing expired as of that call's now is left.
    const resumed = await sweepToDone(store, start + 4 * HOUR_MS);
    expect(
      first.removed + resumed.removed,
      'done as of T+4h only once every record expired by T+4h is removed',
    ).toBe(20);
    expect(
      await store.sweep({ now: start + 4 * HOUR_MS }),
      'a sweep as of the same now after one reported done finds nothing expired left',
    ).toMatchObject({ removed: 0, done: true });
    expect((await collect(store.ids())).sort(), 'only the live records are left').toEqual(
      [...live].sort(),
    );
    // Once done, records that expire later are found by the next sweep: it starts a new pass.
    const later = await fill(store, 4, start + 5 * HOUR_MS);
    expect(
      (await sweepToDone(store, start + 6 * HOUR_MS)).removed,
      'a sweep after one reported done removes what expired since',
    ).toBe(4);
    for (const id of later) expect(await store.get(id)).toBeUndefined();
    expect(await store.count()).toBe(5);
  });

  test('a record whose expiresAt equals now is expired and swept', async (store) => {
    const at = Date.now() + HOUR_MS;
    const [id] = await fill(store, 1, at);
    const kept = await fill(store, 1, at + 1);
    const { removed } = await sweepToDone(store, at);
    expect(removed, 'expiresAt <= now is expired: a sweep as of expiresAt removes it').toBe(1);
    expect(await store.get(id as string)).toBeUndefined();
    expect(await collect(store.ids())).toEqual(kept);
  });

  test('budgetMs 0 does one bounded batch and leaves the rest for later calls', async (store) => {
    const start = Date.now();
    await fill(store, 2500, start + HOUR_MS);
    const first = await store.sweep({ now: start + 2 * HOUR_MS, budgetMs: 0, limit: 100_000 });
    expect(first.done, 'budgetMs: 0 does one batch and reports done: false with work left').toBe(
      false,
    );
    expect(first.removed, 'budgetMs: 0 does at most one bounded batch').toBeLessThan(2500);
    const rest = await sweepToDone(store, start + 2 * HOUR_MS, { budgetMs: 0, limit: 100_000 });
    expect(first.removed + rest.removed).toBe(2500);
    expect(await store.count()).toBe(0);
  });

  test('sweeps while the caller holds SWEEP_LOCK_ID, as cleanup policies do', async (store) => {
    const start = Date.now();
    await fill(store, 5, start + HOUR_MS);
    const policyLock = await store.locks.acquire(SWEEP_LOCK_ID, {
      waitMs: 10_000,
      leaseMs: 60_000,
    });
    try {
      const { removed } = await sweepToDone(store, start + 2 * HOUR_MS, {}, 50);
      expect(
        removed,
        'sweep() must not wait for SWEEP_LOCK_ID, which the cleanup policy holds',
      ).toBe(5);
    } finally {
      await policyLock.release();
    }
  });

  if (expiryIndex) {
    test('with an expiry index, cost follows expired records: 10 of 10,000 scans about 10', async (store) => {
      const start = Date.now();
      await fill(store, 10_000, start + 10 * HOUR_MS, 500);
      const expired = await fill(store, 10, start + HOUR_MS);
      const result = await store.sweep({ now: start + 2 * HOUR_MS });
      expect(result.removed).toBe(10);
      expect(result.done).toBe(true);
      expect(result.scanned).toBeLessThanOrEqual(20);
      for (const id of expired) expect(await store.get(id)).toBeUndefined();
      expect(await store.count()).toBe(10_000);
    });
  }
}
