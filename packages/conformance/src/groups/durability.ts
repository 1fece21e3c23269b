import { describe, expect, it } from 'vitest';
import { bytesOf, decodeValue, HOUR_MS, newId, record } from '../helpers.js';
import type { ConformanceOptions } from '../options.js';

export function durabilityTests(options: ConformanceOptions): void {
  describe('durability', () => {
    it('records, touches and deletes survive close() and reopen()', async () => {
      const { reopen } = options;
      if (reopen === undefined) {
        throw new Error(
          'the store declares capabilities.durable, so the suite needs options.reopen',
        );
      }
      const kept = newId();
      const touched = newId();
      const deleted = newId();
      const touchedUntil = Date.now() + 7 * HOUR_MS;
      const first = await options.open();
      try {
        await first.set(kept, record({ kept: true }));
        await first.set(touched, record({ touched: true }));
        await first.set(deleted, record({ deleted: true }));
        await first.touch(touched, touchedUntil);
        await first.delete(deleted);
      } finally {
        await first.close();
      }
      const second = await reopen();
      try {
        expect(decodeValue((await second.get(kept))?.data ?? bytesOf(null))).toEqual({
          kept: true,
        });
        expect((await second.get(touched))?.expiresAt).toBe(touchedUntil);
        expect(await second.get(deleted)).toBeUndefined();
        expect(await second.count()).toBe(2);
      } finally {
        await second.close();
      }
    }, 60_000);
  });
}
