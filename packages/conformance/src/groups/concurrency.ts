import type { SessionStore } from '@sessile/core';
import { describe, expect, it } from 'vitest';
import {
  collect,
  decodeValue,
  HOUR_MS,
  newId,
  record,
  seededRandom,
  withStore,
} from '../helpers.js';
import type { ConformanceOptions } from '../options.js';

async function mixedOperations(store: SessionStore, seed: number): Promise<void> {
  const random = seededRandom(seed);
  const ids = Array.from({ length: 25 }, () => newId());
  const written = new Map<string, Set<string>>(ids.map((id) => [id, new Set()]));
  const operations: Array<Promise<unknown>> = [];
  for (let i = 0; i < 1000; i++) {
    const id = ids[Math.floor(random() * ids.length)] as string;
    const roll = random();
    if (roll < 0.4) {
      const tag = `op-${i}`;
      written.get(id)?.add(tag);
      const only = random() < 0.5 ? undefined : random() < 0.5 ? 'absent' : 'present';
      operations.push(store.set(id, record({ tag }), only === undefined ? undefined : { only }));
    } else if (roll < 0.7) {
      operations.push(store.get(id));
    } else if (roll < 0.85) {
      operations.push(store.touch(id, Date.now() + 2 * HOUR_MS));
    } else {
      operations.push(store.delete(id));
    }
  }
  const settled = await Promise.allSettled(operations);
  const failures = settled.filter((outcome) => outcome.status === 'rejected');
  expect(failures.map((failure) => String((failure as PromiseRejectedResult).reason))).toEqual([]);

  let visible = 0;
  for (const id of ids) {
    const current = await store.get(id);
    if (current === undefined) continue;
    visible++;
    const { tag } = decodeValue(current.data) as { tag: string };
    expect(written.get(id)?.has(tag), `${tag} was written to this id`).toBe(true);
  }
  expect(await store.count()).toBe(visible);
  const listed = await collect(store.ids());
  expect(listed.length).toBe(visible);
  expect(new Set(listed).size).toBe(visible);
}

export function concurrencyTests(options: ConformanceOptions): void {
  const test = (name: string, body: Parameters<typeof withStore>[1]) =>
    it(name, () => withStore(options, body), 120_000);

  describe('concurrency', () => {
    test('1,000 mixed operations in flight on overlapping ids end consistent', (store) =>
      mixedOperations(store, 20261126));

    test("50 concurrent only: 'absent' sets on one id: exactly one wins", async (store) => {
      const id = newId();
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, n) => store.set(id, record({ n }), { only: 'absent' })),
      );
      const winners = results.flatMap((won, n) => (won ? [n] : []));
      expect(
        winners,
        "the racing only: 'absent' sets that answered true (the check and the write must be one atomic step)",
      ).toHaveLength(1);
      expect(
        decodeValue((await store.get(id))?.data ?? new Uint8Array()),
        "the record is the one the only: 'absent' set that answered true wrote",
      ).toEqual({
        n: winners[0],
      });
    });

    test('50 concurrent deletes of one record: exactly one reports it', async (store) => {
      const id = newId();
      await store.set(id, record({ v: 1 }));
      const results = await Promise.all(Array.from({ length: 50 }, () => store.delete(id)));
      expect(results.filter(Boolean)).toHaveLength(1);
      expect(await store.get(id)).toBeUndefined();
    });

    test("concurrent only: 'present' updates racing a delete never resurrect it", async (store) => {
      const id = newId();
      await store.set(id, record({ v: 0 }));
      const deleted = store.delete(id);
      const updates = Array.from({ length: 30 }, (_, n) =>
        store.set(id, record({ v: n + 1 }), { only: 'present' }),
      );
      await Promise.all([deleted, ...updates]);
      const after = await Promise.all(
        Array.from({ length: 5 }, (_, n) =>
          store.set(id, record({ late: n }), { only: 'present' }),
        ),
      );
      expect(after.every((wrote) => wrote === false)).toBe(true);
      expect(await store.get(id)).toBeUndefined();
    });

    test('touches racing a delete never bring it back, nor undo an update they race', async (store) => {
      const later = Date.now() + 2 * HOUR_MS;
      const deleted = newId();
      await store.set(deleted, record({ v: 0 }));
      const touches = () => Array.from({ length: 10 }, () => store.touch(deleted, later));
      await Promise.all([...touches(), store.delete(deleted), ...touches()]);
      expect(
        await store.get(deleted),
        'a touch changes expiresAt of the record as it is then: it never writes back a record it read before a delete',
      ).toBeUndefined();
      expect(await store.count()).toBe(0);

      const updated = newId();
      await store.set(updated, record({ v: 0 }));
      await Promise.all([
        store.touch(updated, later),
        store.set(updated, record({ v: 1 }, later + 1)),
        store.touch(updated, later),
      ]);
      expect(
        decodeValue((await store.get(updated))?.data ?? new Uint8Array()),
        'a touch changes expiresAt only: it never writes back data it read before an update',
      ).toEqual({ v: 1 });
    });
  });
}
