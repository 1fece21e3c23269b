import { generateSessionId } from '@sessile/core';
import { describe, expect, it } from 'vitest';
import { DbmStore, type DbmSweepMode } from '../src/index.js';
import { useTestPaths } from './helpers.js';

const HOUR_MS = 3_600_000;
const { newPath } = useTestPaths('owner');

const data = new Uint8Array([1, 2, 3]);

async function ownedIds(store: DbmStore, owner: string): Promise<string[]> {
  return (await store.ownedBy(owner)).map((session) => session.id).sort();
}

describe('DbmStore owner index', () => {
  it('keeps each owner list in step with set, touch, delete and reopening', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path });
    const expiresAt = Date.now() + HOUR_MS;
    const [a, b, c] = [generateSessionId(), generateSessionId(), generateSessionId()];
    await store.set(a, { data, expiresAt, owner: 'alice' });
    await store.set(b, { data, expiresAt, owner: 'alice' });
    await store.set(c, { data, expiresAt, owner: 'bob' });
    expect(await ownedIds(store, 'alice')).toEqual([a, b].sort());
    expect((await store.get(a))?.owner).toBe('alice');

    expect(await store.touch(a, expiresAt + 1000)).toBe(true);
    expect(await store.get(a)).toMatchObject({ owner: 'alice', expiresAt: expiresAt + 1000 });
    // Overwriting with another owner moves the id; without one, it leaves every list.
    await store.set(b, { data, expiresAt, owner: 'bob' });
    await store.set(c, { data, expiresAt });
    expect(await ownedIds(store, 'alice')).toEqual([a]);
    expect(await ownedIds(store, 'bob')).toEqual([b]);
    expect((await store.get(c))?.owner).toBeUndefined();
    expect(await store.delete(a)).toBe(true);
    expect(await store.ownedBy('alice')).toEqual([]);
    await store.close();

    const reopened = await DbmStore.open({ path });
    expect(await reopened.ownedBy('bob')).toEqual([
      { id: b, record: { data, expiresAt, owner: 'bob' } },
    ]);
    // Owner lists are entries of the table, but neither records nor ids.
    expect(await reopened.count()).toBe(2);
    expect((await reopened.info()).entries).toBe(3);
    await reopened.close();
  });

  for (const sweepMode of ['incremental', 'full-scan'] as DbmSweepMode[]) {
    it(`'${sweepMode}' sweeps take expired records off their owner's list, and empty lists away`, async () => {
      const store = await DbmStore.open({ path: newPath(), sweepMode });
      const now = Date.now();
      const live: string[] = [];
      for (let k = 0; k < 600; k++) {
        const id = generateSessionId();
        const expired = k % 20 >= 7;
        await store.set(id, {
          data,
          expiresAt: expired ? now + 150 : now + HOUR_MS,
          owner: `user ${k % 20}`,
        });
        if (!expired) live.push(id);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
      // Expired but not yet swept: never listed.
      const before = await Promise.all(
        Array.from({ length: 20 }, (_, k) => ownedIds(store, `user ${k}`)),
      );
      expect(before.flat().sort()).toEqual(live.sort());
      let done = false;
      while (!done) done = (await store.sweep({ limit: 50 })).done;
      const after = await Promise.all(
        Array.from({ length: 20 }, (_, k) => ownedIds(store, `user ${k}`)),
      );
      expect(after.flat().sort()).toEqual(live.sort());
      // Owners 7 to 19 had only expired records: their lists are gone with them.
      expect((await store.info()).entries).toBe(live.length + 7);
      expect(store.stats().undecodableRecords).toBe(0);
      await store.close();
    }, 60_000);
  }

  it('an owner of 256 characters beyond the BMP is stored and listed intact', async () => {
    const store = await DbmStore.open({ path: newPath() });
    const owner = '😀'.repeat(128);
    const id = generateSessionId();
    const expiresAt = Date.now() + HOUR_MS;
    await store.set(id, { data, expiresAt, owner });
    expect(await store.ownedBy(owner)).toEqual([{ id, record: { data, expiresAt, owner } }]);
    expect(await store.ownedBy('😀'.repeat(127))).toEqual([]);
    await store.close();
  });
});
