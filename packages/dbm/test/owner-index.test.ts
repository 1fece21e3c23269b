import { readFileSync, writeFileSync } from 'node:fs';
import { generateSessionId } from '@sessile/core';
import { describe, expect, it } from 'vitest';
import { DATA_START, OWNER_LIST_HEADER_BYTES, OWNER_LIST_MAGIC } from '../src/format.js';
import { DbmStore, type DbmSweepMode } from '../src/index.js';
import { useTestPaths } from './helpers.js';

const HOUR_MS = 3_600_000;
const { newPath } = useTestPaths('owner');

const data = new Uint8Array([1, 2, 3]);

async function ownedIds(store: DbmStore, owner: string): Promise<string[]> {
  return (await store.ownedBy(owner)).map((session) => session.id).sort();
}

/** Where in an owner list a byte is flipped: its magic, its owner's first byte, its first id's. */
type ListDamage = 'magic' | 'owner' | 'id';

/** Flips one byte of `owner`'s list in the closed file at `path`, in every copy of it there. */
function damageOwnerList(path: string, owner: string, where: ListDamage): void {
  const file = readFileSync(path);
  const name = Buffer.from(owner, 'utf8');
  let copies = 0;
  for (let at = DATA_START; at + OWNER_LIST_HEADER_BYTES + name.length <= file.length; at++) {
    if (file.readUInt16LE(at) !== OWNER_LIST_MAGIC || file.readUInt16LE(at + 2) !== name.length) {
      continue;
    }
    const named = at + OWNER_LIST_HEADER_BYTES;
    if (!file.subarray(named, named + name.length).equals(name)) continue;
    const flip = where === 'magic' ? at : where === 'owner' ? named : named + name.length + 1;
    file[flip] = (file[flip] as number) ^ 0x01;
    copies++;
  }
  expect(copies).toBeGreaterThan(0);
  writeFileSync(path, file);
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

  it('two stores on one file keep every owner list whole, each writing after the other', async () => {
    const path = newPath();
    const first = await DbmStore.open({ path });
    const second = await DbmStore.open({ path });
    try {
      const expiresAt = Date.now() + HOUR_MS;
      const stores = [first, second];
      const listed: string[] = [];
      // 40 sessions of one owner, added by the two stores in turn: its list grows in place,
      // and moves to larger extents three times, written by either store.
      for (let k = 0; k < 40; k++) {
        const id = generateSessionId();
        await (stores[k % 2] as DbmStore).set(id, { data, expiresAt, owner: 'alice' });
        listed.push(id);
        if (k % 7 === 6) {
          expect(await ownedIds(first, 'alice')).toEqual([...listed].sort());
          expect(await ownedIds(second, 'alice')).toEqual([...listed].sort());
        }
      }
      // Each takes off a session the other listed last.
      const [a, b, c] = listed.splice(0, 3) as [string, string, string];
      expect(await second.delete(a)).toBe(true);
      expect(await first.set(b, { data, expiresAt, owner: 'bob' })).toBe(true);
      expect(await second.set(c, { data, expiresAt })).toBe(true);
      const d = generateSessionId();
      await first.set(d, { data, expiresAt, owner: 'alice' });
      listed.push(d);
      for (const store of stores) {
        expect(await ownedIds(store, 'alice')).toEqual([...listed].sort());
        expect(await ownedIds(store, 'bob')).toEqual([b]);
      }
      // Signing alice out everywhere from one store leaves nothing for the other to list.
      for (const { id } of await second.ownedBy('alice')) await second.delete(id);
      await first.set(b, { data, expiresAt });
      expect(await first.ownedBy('alice')).toEqual([]);
      expect(await second.ownedBy('bob')).toEqual([]);
      expect((await second.info()).entries).toBe(2);
    } finally {
      await first.close();
      await second.close();
    }
    const reopened = await DbmStore.open({ path });
    expect(await reopened.ownedBy('alice')).toEqual([]);
    expect(await reopened.count()).toBe(2);
    await reopened.close();
  });

  it('a session given an owner after clear() is the only one listed for it', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path });
    const expiresAt = Date.now() + HOUR_MS;
    for (let k = 0; k < 5; k++) {
      await store.set(generateSessionId(), { data, expiresAt, owner: 'alice' });
    }
    await store.clear();
    // Unowned sessions fill the space the old list had, so that nothing may be written there.
    const unowned = Array.from({ length: 10 }, () => generateSessionId());
    for (const id of unowned) await store.set(id, { data, expiresAt });
    const id = generateSessionId();
    await store.set(id, { data, expiresAt, owner: 'alice' });
    expect(await ownedIds(store, 'alice')).toEqual([id]);
    for (const other of unowned) expect(await store.get(other)).toEqual({ data, expiresAt });
    await store.close();
    const reopened = await DbmStore.open({ path });
    expect(await ownedIds(reopened, 'alice')).toEqual([id]);
    expect((await reopened.info()).entries).toBe(12);
    await reopened.close();
  });

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

  describe('a damaged owner list', () => {
    /** alice's, bob's and unowned sessions, live and expired, in a closed file. */
    async function sessionsOnDisk(path: string) {
      const store = await DbmStore.open({ path });
      const live = Date.now() + HOUR_MS;
      const expired = Date.now() - 1000;
      const ids = {
        aliceKept: generateSessionId(),
        aliceDeleted: generateSessionId(),
        aliceDisowned: generateSessionId(),
        aliceExpired: generateSessionId(),
        bobKept: generateSessionId(),
        bobExpired: generateSessionId(),
        unownedExpired: generateSessionId(),
      };
      await store.set(ids.aliceKept, { data, expiresAt: live, owner: 'alice' });
      await store.set(ids.aliceDeleted, { data, expiresAt: live, owner: 'alice' });
      await store.set(ids.aliceDisowned, { data, expiresAt: live, owner: 'alice' });
      await store.set(ids.aliceExpired, { data, expiresAt: expired, owner: 'alice' });
      await store.set(ids.bobKept, { data, expiresAt: live, owner: 'bob' });
      await store.set(ids.bobExpired, { data, expiresAt: expired, owner: 'bob' });
      await store.set(ids.unownedExpired, { data, expiresAt: expired });
      await store.close();
      return { ids, live };
    }

    for (const where of ['magic', 'owner', 'id'] as ListDamage[]) {
      it(`(its ${where} damaged) blocks neither a sweep nor delete or set of its sessions, and is written anew by ownedBy`, async () => {
        const path = newPath();
        const { ids, live } = await sessionsOnDisk(path);
        damageOwnerList(path, 'alice', where);

        const store = await DbmStore.open({ path });
        // Other owners' and unowned expired records are removed, and alice's too.
        expect(await store.sweep()).toMatchObject({ removed: 3, done: true });
        for (const id of [ids.aliceExpired, ids.bobExpired, ids.unownedExpired]) {
          expect(await store.get(id)).toBeUndefined();
        }
        // The damaged owner's sessions can be logged out and rewritten.
        expect(await store.delete(ids.aliceDeleted)).toBe(true);
        expect(await store.get(ids.aliceDeleted)).toBeUndefined();
        expect(await store.set(ids.aliceDisowned, { data, expiresAt: live })).toBe(true);
        const aliceAdded = generateSessionId();
        await store.set(aliceAdded, { data, expiresAt: live, owner: 'alice' });
        expect(await ownedIds(store, 'bob')).toEqual([ids.bobKept]);
        // A scan finds every session of alice's again, the one listed since the damage too.
        expect(await ownedIds(store, 'alice')).toEqual([ids.aliceKept, aliceAdded].sort());
        expect(await store.count()).toBe(4);
        // Two lists again, and no other entry: the damaged one was replaced, not added to.
        expect((await store.info()).entries).toBe(6);
        await store.close();

        const reopened = await DbmStore.open({ path });
        expect(await ownedIds(reopened, 'alice')).toEqual([ids.aliceKept, aliceAdded].sort());
        expect(await ownedIds(reopened, 'bob')).toEqual([ids.bobKept]);
        // Signing alice out everywhere empties her list, which then goes away.
        for (const { id } of await reopened.ownedBy('alice')) await reopened.delete(id);
        expect(await reopened.ownedBy('alice')).toEqual([]);
        expect((await reopened.info()).entries).toBe(3);
        await reopened.close();
      });
    }

    it('with no session left is dropped by ownedBy', async () => {
      const path = newPath();
      const { ids } = await sessionsOnDisk(path);
      damageOwnerList(path, 'bob', 'id');
      const store = await DbmStore.open({ path });
      expect(await store.delete(ids.bobKept)).toBe(true);
      expect(await store.sweep()).toMatchObject({ removed: 3 });
      expect(await store.ownedBy('bob')).toEqual([]);
      expect(await ownedIds(store, 'alice')).toEqual(
        [ids.aliceKept, ids.aliceDeleted, ids.aliceDisowned].sort(),
      );
      // Alice's records and list, and nothing of bob's.
      expect((await store.info()).entries).toBe(4);
      await store.close();
    });
  });
});
