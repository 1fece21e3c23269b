import { fork } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { generateSessionId, SessionManager } from '@sessile/core';
import { describe, expect, it } from 'vitest';
import { DATA_START, OWNER_LIST_HEADER_BYTES, OWNER_LIST_MAGIC } from '../src/format.js';
import { DbmStore, type DbmSweepMode } from '../src/index.js';
import { useTestPaths } from './helpers.js';

const HOUR_MS = 3_600_000;
const { newPath, children } = useTestPaths('owner');

function fixture(name: string): string {
  return fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
}

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
      // 70 sessions of one owner, added by the two stores in turn: its list grows in place,
      // and moves to larger extents three times, written by either store.
      for (let k = 0; k < 70; k++) {
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

/** Bytes this thread has passed to write system calls so far (Linux). */
function bytesWritten(): number {
  const io = readFileSync('/proc/thread-self/io', 'utf8');
  return Number(/^wchar: (\d+)$/m.exec(io)?.[1]);
}

/** Every id whose record carries `owner`, found by reading each record, not from the index. */
async function carrying(store: DbmStore, owner: string): Promise<string[]> {
  const found: string[] = [];
  for await (const id of store.ids()) if ((await store.get(id))?.owner === owner) found.push(id);
  return found.sort();
}

describe('DbmStore owner index, many sessions of one owner', () => {
  it('signing out an owner of 2,000 sessions writes per session what one of 100 does, and keeps the index whole', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path });
    const expiresAt = Date.now() + HOUR_MS;
    const sizes = { small: 100, large: 2000 };
    const kept: Record<string, string> = {};
    for (const [owner, count] of Object.entries(sizes)) {
      for (let k = 0; k < count; k++) {
        await store.set(generateSessionId(), { data, expiresAt, owner });
      }
    }
    const bob = [generateSessionId(), generateSessionId()];
    for (const id of bob) await store.set(id, { data, expiresAt, owner: 'bob' });
    const manager = new SessionManager({ store });
    const perSession: Record<string, number> = {};
    for (const [owner, count] of Object.entries(sizes)) {
      kept[owner] = (await store.ownedBy(owner))[7]?.id as string;
      const before = bytesWritten();
      expect(await manager.revokeOwner(owner, { except: kept[owner] })).toBe(count - 1);
      perSession[owner] = (bytesWritten() - before) / count;
    }
    // Each delete rewrote the whole list before: 2,000 sessions wrote 4 times what 100 did.
    expect(perSession.large).toBeLessThan(1.5 * (perSession.small as number));

    for (const reopen of [false, true]) {
      const current = reopen ? await DbmStore.open({ path }) : store;
      for (const owner of Object.keys(sizes)) {
        expect(await ownedIds(current, owner)).toEqual([kept[owner]]);
        expect(await carrying(current, owner)).toEqual([kept[owner]]);
      }
      expect(await ownedIds(current, 'bob')).toEqual([...bob].sort());
      expect(await current.count()).toBe(4);
      // Four records and three lists: nothing is left of the sessions taken off.
      expect((await current.info()).entries).toBe(7);
      await current.close();
    }
  }, 120_000);

  it('lists what its records say after any mix of additions and removals, before and after reopening', async () => {
    const path = newPath();
    let store = await DbmStore.open({ path });
    const expiresAt = Date.now() + HOUR_MS;
    const model = new Set<string>();
    let seed = 12345;
    const random = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    for (let step = 0; step < 3000; step++) {
      const roll = random();
      const listed = [...model];
      if (roll < 0.45 || listed.length === 0) {
        const id = generateSessionId();
        await store.set(id, { data, expiresAt, owner: 'alice' });
        model.add(id);
      } else {
        const id = listed[Math.floor(random() * listed.length)] as string;
        if (roll < 0.85) await store.delete(id);
        // Given another owner, or none: it leaves alice's list too.
        else await store.set(id, { data, expiresAt, ...(roll < 0.92 ? { owner: 'bob' } : {}) });
        model.delete(id);
      }
      if (step % 500 === 499) {
        expect(await ownedIds(store, 'alice')).toEqual([...model].sort());
        await store.close();
        store = await DbmStore.open({ path });
        expect(await ownedIds(store, 'alice')).toEqual([...model].sort());
      }
    }
    expect(await carrying(store, 'alice')).toEqual([...model].sort());
    for (const id of model) await store.delete(id);
    expect(await store.ownedBy('alice')).toEqual([]);
    await store.close();
  }, 120_000);

  it('kill -9 while an owner is being signed out leaves her list what her records say', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path });
    const expiresAt = Date.now() + HOUR_MS;
    const bob = [generateSessionId(), generateSessionId(), generateSessionId()];
    for (const id of bob) await store.set(id, { data, expiresAt, owner: 'bob' });
    await store.close();
    for (let round = 0; round < 4; round++) {
      const child = fork(fixture('revoke-writer.mjs'), [path, String(round)], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      children.push(child);
      let batches = 0;
      child.on('message', (message: { type: string }) => {
        if (message.type === 'batch') batches++;
      });
      // A kill at a varying point of the sign-out, however loaded the machine.
      while (batches < 3 + round * 7) {
        expect(child.exitCode, 'the writer is still running').toBeNull();
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('close', resolve));

      const reopened = await DbmStore.open({ path });
      const listed = (await reopened.ownedBy('alice')).map((session) => session.id);
      expect(listed.length, 'no id listed twice').toBe(new Set(listed).size);
      expect(listed.sort()).toEqual(await carrying(reopened, 'alice'));
      expect(listed.length).toBeGreaterThan(0);
      expect(await ownedIds(reopened, 'bob')).toEqual([...bob].sort());
      await reopened.close();
    }
    const final = await DbmStore.open({ path });
    const manager = new SessionManager({ store: final });
    await manager.revokeOwner('alice');
    expect(await final.ownedBy('alice')).toEqual([]);
    expect(await final.count()).toBe(3);
    expect((await final.info()).entries).toBe(4);
    await final.close();
  }, 120_000);
});

describe('DbmStore owner lists of a version-4 file', () => {
  /** The ids make-v4-owners.mjs gave its sessions. */
  const fixtureId = (prefix: string, i: number) =>
    `${prefix}${String(i).padStart(6, '0')}`.padEnd(43, 'x');
  const fixtureIds = (prefix: string, count: number) =>
    Array.from({ length: count }, (_, i) => fixtureId(prefix, i)).sort();

  function v4File(): string {
    const path = newPath();
    writeFileSync(path, gunzipSync(readFileSync(fixture('v4-owners.dbm.gz'))));
    return path;
  }

  const versionOf = (path: string) => readFileSync(path).readUInt32LE(8);

  it('are read, and a store that only reads leaves the file as the previous release wrote it', async () => {
    const path = v4File();
    const before = readFileSync(path);
    expect(versionOf(path)).toBe(4);
    const store = await DbmStore.open({ path });
    expect(await ownedIds(store, 'alice')).toEqual(fixtureIds('alice', 1000));
    expect(await ownedIds(store, 'bob')).toEqual(fixtureIds('bob', 3));
    expect(await store.get(fixtureId('anon', 0))).toMatchObject({
      expiresAt: Date.UTC(2100, 0, 1),
    });
    expect(await store.count()).toBe(1008);
    await store.close();
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it('are written anew at their first change, and the file is version 5 from its first commit on', async () => {
    const path = v4File();
    const store = await DbmStore.open({ path });
    const alice = fixtureIds('alice', 1000);
    const taken = alice.splice(0, 600);
    for (const id of taken) expect(await store.delete(id)).toBe(true);
    const added = generateSessionId();
    await store.set(added, { data, expiresAt: Date.now() + HOUR_MS, owner: 'bob' });
    expect(versionOf(path)).toBe(5);
    await store.close();

    const reopened = await DbmStore.open({ path });
    expect(await ownedIds(reopened, 'alice')).toEqual(alice);
    expect(await carrying(reopened, 'alice')).toEqual(alice);
    expect(await ownedIds(reopened, 'bob')).toEqual([...fixtureIds('bob', 3), added].sort());
    expect(await reopened.count()).toBe(1008 - 600 + 1);
    expect((await reopened.info()).entries).toBe(1008 - 600 + 1 + 2);
    await reopened.close();
  });
});
