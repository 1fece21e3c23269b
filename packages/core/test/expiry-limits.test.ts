import { describe, expect, it } from 'vitest';
import { generateSessionId, MemoryStore } from '../src/index.js';
import { MAX_SESSION_TIMEOUT_MS } from '../src/manager-options.js';
import { openStoreAdapter } from '../src/store.js';

/** The last time a `Date` can hold. */
const LAST_DATE_MS = 8.64e15;
const data = new Uint8Array([1]);

describe('expiries a Date can hold', () => {
  it('BaseStore refuses a record expiresAt or a touch past the last valid Date, as it refuses a non-finite one', async () => {
    const store = new MemoryStore();
    try {
      const id = generateSessionId();
      for (const expiresAt of [LAST_DATE_MS + 1, 1e300, Number.POSITIVE_INFINITY]) {
        await expect(store.set(id, { data, expiresAt })).rejects.toThrow(
          new TypeError(
            'record.expiresAt must be a finite number of ms since the epoch, at most 8640000000000000 (the last time a Date can hold)',
          ),
        );
      }
      expect(await store.count()).toBe(0);
      expect(await store.set(id, { data, expiresAt: LAST_DATE_MS })).toBe(true);
      expect(new Date((await store.get(id))?.expiresAt as number).getTime()).toBe(LAST_DATE_MS);
      await expect(store.touch(id, 1e300)).rejects.toThrow(TypeError);
      expect((await store.get(id))?.expiresAt).toBe(LAST_DATE_MS);
    } finally {
      await store.close();
    }
  });

  it("the store adapters' defaultTtlMs is capped at MAX_SESSION_TIMEOUT_MS, so now + defaultTtlMs is a Date", async () => {
    const store = new MemoryStore();
    try {
      expect(() =>
        openStoreAdapter(store, { defaultTtlMs: Number.MAX_SAFE_INTEGER }, 'toKoaSessionStore()'),
      ).toThrow(
        new TypeError(
          `toKoaSessionStore(): defaultTtlMs must be a number of milliseconds greater than 0 and up to ${MAX_SESSION_TIMEOUT_MS}, got ${Number.MAX_SAFE_INTEGER}`,
        ),
      );
      const adapter = openStoreAdapter(store, { defaultTtlMs: MAX_SESSION_TIMEOUT_MS }, 'test');
      const id = generateSessionId();
      const now = Date.now();
      const expiresAt = now + adapter.defaultTtlMs;
      expect(Number.isNaN(new Date(expiresAt).getTime())).toBe(false);
      expect(await store.set(id, adapter.record(id, { user: 'ada' }, now, expiresAt))).toBe(true);
      expect(await adapter.read(id)).toEqual({ user: 'ada' });
    } finally {
      await store.close();
    }
  });
});
