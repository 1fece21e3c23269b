import type { SessionRecord, SessionStore } from '@sessile/core';
import { describe, expect, it } from 'vitest';
import { decodeValue, HOUR_MS, newId, record, withStore } from '../helpers.js';
import type { ConformanceOptions } from '../options.js';

/** The first write of each case: a create or a plain set, with an owner or without one. */
interface FirstWrite {
  readonly name: string;
  readonly only: 'absent' | undefined;
  readonly owner: string | undefined;
}

const FIRST_WRITES: FirstWrite[] = [
  { name: "only: 'absent'", only: 'absent', owner: undefined },
  { name: "only: 'absent' with an owner", only: 'absent', owner: 'order-owner' },
  { name: 'plain', only: undefined, owner: undefined },
  { name: 'plain with an owner', only: undefined, owner: 'order-owner' },
];

/**
 * A case: makes its calls on `id`, the first being `first()`, and calls `between()` between
 * each two (nothing, or a microtask's wait: neither lets a call settle). Answers what it saw
 * differ from the calls applied in the order they were made, or undefined.
 */
type Case = (
  store: SessionStore,
  id: string,
  first: () => Promise<boolean>,
  between: () => Promise<void> | undefined,
  written: SessionRecord,
) => Promise<string | undefined>;

/**
 * What `got` lacks of `written`, or undefined. The owner is compared where the store indexes
 * owners; the owners group checks that it is kept.
 */
function differs(
  store: SessionStore,
  got: SessionRecord | undefined,
  written: SessionRecord,
): string | undefined {
  if (got === undefined) return 'get returned undefined';
  const owners = store.capabilities.ownerIndex;
  const shown = (each: SessionRecord) => ({
    data: decodeValue(each.data),
    expiresAt: each.expiresAt,
    ...(owners ? { owner: each.owner } : {}),
  });
  const [seen, wanted] = [JSON.stringify(shown(got)), JSON.stringify(shown(written))];
  return seen === wanted ? undefined : `get returned ${seen}, not ${wanted}`;
}

/**
 * Runs `body` for every first write, with the calls made in one turn and with a microtask
 * between each two, each on an id of its own. Returns what went wrong per variant.
 */
async function inEveryVariant(store: SessionStore, body: Case): Promise<Record<string, string>> {
  const wrong: Record<string, string> = {};
  for (const write of FIRST_WRITES) {
    for (const [spacing, between] of [
      ['in one turn', () => undefined],
      ['a microtask apart', async () => {}],
    ] as const) {
      const id = newId();
      const written: SessionRecord = {
        ...record({ first: write.name }),
        ...(write.owner === undefined ? {} : { owner: write.owner }),
      };
      const options = write.only === undefined ? undefined : { only: write.only };
      const first = () => store.set(id, written, options);
      let problem: string | undefined;
      try {
        problem = await body(store, id, first, between, written);
      } catch (error) {
        problem = `rejected: ${String(error)}`;
      }
      if (problem !== undefined) wrong[`set ${write.name}, ${spacing}`] = problem;
    }
  }
  return wrong;
}

/**
 * Calls on one id made without awaiting each other apply in the order they were made, as if
 * each had been awaited: a store that holds one write back (to batch it, or while it writes a
 * second key first) must not let a later call on that id go before it. Switching stores
 * changes one line of an app, so every store keeps this order.
 */
export function orderTests(options: ConformanceOptions): void {
  const test = (name: string, body: Case) =>
    it(
      name,
      () =>
        withStore(options, async (store) => {
          expect(await inEveryVariant(store, body)).toEqual({});
        }),
      120_000,
    );

  describe('calls on one id apply in the order they were made', () => {
    test('a set, then a delete: the delete removes what the set wrote', async (store, id, first, between) => {
      const set = first();
      await between();
      const deleted = store.delete(id);
      const [wrote, removed] = await Promise.all([set, deleted]);
      const after = await store.get(id);
      if (wrote !== true || removed !== true || after !== undefined) {
        return `set ${wrote}, delete ${removed}, then get ${after === undefined ? 'undefined' : 'a record'} (expected true, true, undefined)`;
      }
      return undefined;
    });

    test('a set, then a get: the get returns what the set wrote', async (store, id, first, between, written) => {
      const set = first();
      await between();
      const got = store.get(id);
      const [wrote, read] = await Promise.all([set, got]);
      if (wrote !== true) return `set ${wrote} (expected true)`;
      return differs(store, read, written);
    });

    test("a set, then an only: 'present' set: the update finds the record", async (store, id, first, between, written) => {
      const set = first();
      await between();
      const update: SessionRecord = { ...written, data: record({ second: true }).data };
      const updated = store.set(id, update, { only: 'present' });
      const [wrote, wroteUpdate] = await Promise.all([set, updated]);
      if (wrote !== true || wroteUpdate !== true) {
        return `set ${wrote}, set only: 'present' ${wroteUpdate} (expected true, true)`;
      }
      return differs(store, await store.get(id), update);
    });

    test('a set, then a touch: the touch extends the record', async (store, id, first, between, written) => {
      const set = first();
      await between();
      const expiresAt = written.expiresAt + HOUR_MS;
      const touch = store.touch(id, expiresAt);
      const [wrote, touched] = await Promise.all([set, touch]);
      if (wrote !== true || touched !== true) {
        return `set ${wrote}, touch ${touched} (expected true, true)`;
      }
      return differs(store, await store.get(id), { ...written, expiresAt });
    });

    test("a set, a delete, then an only: 'absent' set: the last create writes", async (store, id, first, between, written) => {
      const set = first();
      await between();
      const deleted = store.delete(id);
      await between();
      const again: SessionRecord = { ...written, data: record({ third: true }).data };
      const created = store.set(id, again, { only: 'absent' });
      const answers = await Promise.all([set, deleted, created]);
      if (answers.some((answer) => answer !== true)) {
        return `set, delete, set only: 'absent' answered ${answers.join(', ')} (expected true, true, true)`;
      }
      return differs(store, await store.get(id), again);
    });

    test('a set, then acquireAndGet (where offered): the lock reads what the set wrote', async (store, id, first, between, written) => {
      const acquireAndGet = store.locks.acquireAndGet?.bind(store.locks);
      if (acquireAndGet === undefined) return undefined;
      const set = first();
      await between();
      const locking = acquireAndGet(id, { waitMs: 5_000 });
      const [wrote, locked] = await Promise.all([set, locking]);
      try {
        if (wrote !== true) return `set ${wrote} (expected true)`;
        return differs(store, locked.record, written);
      } finally {
        await locked.lock.release();
      }
    });
  });
}
