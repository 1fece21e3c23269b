import { describe, expect, it } from 'vitest';
import { generateSessionId, MemoryStore } from '../src/index.js';

const HOUR_MS = 3_600_000;
const record = (expiresAt: number) => ({ data: new Uint8Array([1]), expiresAt });

describe('MemoryStore', () => {
  it('keeps its expiry index bounded when the same sessions are touched over and over', async () => {
    const store = await MemoryStore.open();
    const start = Date.now();
    const ids = Array.from({ length: 100 }, () => generateSessionId());
    for (const id of ids) await store.set(id, record(start + HOUR_MS));
    for (let round = 1; round <= 200; round++) {
      for (const id of ids) await store.touch(id, start + HOUR_MS + round);
    }
    // Stale heap entries from 20,000 touches are compacted away; a sweep scans only live ones.
    const result = await store.sweep({ now: start + 2 * HOUR_MS, limit: 100_000 });
    expect(result.removed).toBe(100);
    expect(result.scanned).toBeLessThan(1300);
    await store.close();
  });

  it('rejects records above maxRecordBytes and accepts records at it', async () => {
    const store = await MemoryStore.open({ maxRecordBytes: 8 });
    const id = generateSessionId();
    await expect(
      store.set(id, { data: new Uint8Array(9), expiresAt: Date.now() + HOUR_MS }),
    ).rejects.toMatchObject({
      code: 'ERR_RECORD_TOO_LARGE',
    });
    expect(await store.set(id, { data: new Uint8Array(8), expiresAt: Date.now() + HOUR_MS })).toBe(
      true,
    );
    await store.close();
  });

  it('close waits for operations already in flight', async () => {
    const store = await MemoryStore.open();
    const id = generateSessionId();
    const write = store.set(id, record(Date.now() + HOUR_MS));
    const closing = store.close();
    await expect(write).resolves.toBe(true);
    await closing;
    await expect(store.get(id)).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
  });
});

describe('MemoryStore options', () => {
  it('refuses a misspelt option by name, and open() rejects instead of throwing', async () => {
    expect(() => new MemoryStore({ maxRecordByte: 5 } as never)).toThrow(
      /unknown option 'maxRecordByte'; did you mean 'maxRecordBytes'/,
    );
    await expect(MemoryStore.open({ maxRecordByte: 5 } as never)).rejects.toThrow(TypeError);
  });
});
