import { execFile, fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
import { generateSessionId, manual, SessionManager } from '@sessile/core';
import { FileStore, type FileStoreOptions } from '@sessile/file';
import { describe, expect, it } from 'vitest';
import { testDirectories, textOf } from './helpers.js';

const HOUR_MS = 3_600_000;
const run = promisify(execFile);
const { root, stores, children, freshPath } = testDirectories('sessile-file-owners-');

async function openStore(options: Partial<FileStoreOptions> = {}): Promise<FileStore> {
  const store = await FileStore.open({ path: freshPath(), ...options });
  stores.push(store);
  return store;
}

const data = Buffer.from([7, 8, 9]);

async function ownedIds(store: FileStore, owner: string): Promise<string[]> {
  return (await store.ownedBy(owner)).map((session) => session.id).sort();
}

/** The names in an owner's directory that are entries: all but its anchor file. */
function entryNames(directory: string): string[] {
  return readdirSync(directory).filter((name) => name !== '.anchor');
}

/** The entry files of the owner index, as `<owner directory>/<id>` paths. */
function entriesOf(store: FileStore): string[] {
  const base = join(store.path, '.owners');
  if (!existsSync(base)) return [];
  const found: string[] = [];
  // `.complete` (and a rebuild's own file) sit beside the 2-character directories.
  for (const shard of readdirSync(base).filter((name) => !name.startsWith('.'))) {
    for (const hash of readdirSync(join(base, shard))) {
      for (const id of entryNames(join(base, shard, hash))) found.push(`${hash}/${id}`);
    }
  }
  return found.sort();
}

function hashOf(owner: string): string {
  return createHash('sha256').update(owner, 'utf8').digest('base64url');
}

describe('owner index', () => {
  for (const io of ['sync', 'async'] as const) {
    it(`follows set, touch, overwrite and delete, one entry per owned record (io: '${io}')`, async () => {
      const store = await openStore({ io });
      const expiresAt = Date.now() + HOUR_MS;
      const [a, b, c] = [generateSessionId(), generateSessionId(), generateSessionId()];
      await store.set(a, { data, expiresAt, owner: 'alice' });
      await store.set(b, { data, expiresAt, owner: 'alice' }, { only: 'absent' });
      await store.set(c, { data, expiresAt, owner: 'bob' });
      expect(await ownedIds(store, 'alice')).toEqual([a, b].sort());
      expect(await store.get(a)).toEqual({ data, expiresAt, owner: 'alice' });

      // An extending touch moves only the mtime, a shortening one rewrites the header.
      expect(await store.touch(a, expiresAt + 5000)).toBe(true);
      expect(await store.touch(b, expiresAt - 5000)).toBe(true);
      expect((await store.get(a))?.owner).toBe('alice');
      expect((await store.get(b))?.owner).toBe('alice');

      await store.set(b, { data, expiresAt, owner: 'bob' });
      await store.set(c, { data, expiresAt });
      expect(await ownedIds(store, 'alice')).toEqual([a]);
      expect(await ownedIds(store, 'bob')).toEqual([b]);
      expect(await store.get(c)).toEqual({ data, expiresAt });
      expect(entriesOf(store)).toEqual([`${hashOf('alice')}/${a}`, `${hashOf('bob')}/${b}`].sort());

      expect(await store.delete(a)).toBe(true);
      expect(await store.ownedBy('alice')).toEqual([]);
      expect(entriesOf(store)).toEqual([`${hashOf('bob')}/${b}`]);
      await store.clear();
      expect(entriesOf(store)).toEqual([]);
    });
  }

  it("a record too large for the reopened store is left out of its owner's list, and the others are listed", async () => {
    const path = freshPath();
    const [big, small] = [generateSessionId(), generateSessionId()];
    const expiresAt = Date.now() + HOUR_MS;
    const first = await FileStore.open({ path, maxRecordBytes: 200_000 });
    await first.set(big, { data: Buffer.alloc(100_000, 1), expiresAt, owner: 'alice' });
    await first.set(small, { data, expiresAt, owner: 'alice' });
    await first.close();

    const store = await openStore({ path, maxRecordBytes: 1000 });
    expect(await ownedIds(store, 'alice')).toEqual([small]);
    await expect(store.get(big)).rejects.toMatchObject({ code: 'ERR_RECORD_TOO_LARGE' });
  });

  it("an entry is a hard link to its owner directory's anchor file, never a record's file (an empty file where it cannot be a link)", async () => {
    const store = await openStore();
    const expiresAt = Date.now() + HOUR_MS;
    const directoryOf = (owner: string) =>
      join(store.path, '.owners', hashOf(owner).slice(0, 2), hashOf(owner));
    const recordOf = (id: string) => join(store.path, id.slice(0, 1), id);
    const ids = [generateSessionId(), generateSessionId(), generateSessionId()];
    for (const id of ids) await store.set(id, { data, expiresAt, owner: 'alice' });
    const anchor = statSync(join(directoryOf('alice'), '.anchor'));
    expect(anchor.nlink).toBe(1 + ids.length);
    for (const id of ids) {
      expect(statSync(join(directoryOf('alice'), id)).ino).toBe(anchor.ino);
      expect(statSync(recordOf(id)).nlink).toBe(1);
    }
    const [updated, deleted, kept] = ids as [string, string, string];
    await store.set(updated, { data: Buffer.from([1]), expiresAt, owner: 'alice' });
    await store.set(updated, { data, expiresAt, owner: 'alice' }, { only: 'present' });
    expect(statSync(join(directoryOf('alice'), updated)).ino).toBe(anchor.ino);
    await store.delete(deleted);
    expect(statSync(join(directoryOf('alice'), '.anchor')).nlink).toBe(ids.length);
    expect(await ownedIds(store, 'alice')).toEqual([updated, kept].sort());
    // A create that finds the record there writes nothing, and leaves no entry or file behind.
    expect(await store.set(kept, { data, expiresAt, owner: 'carol' }, { only: 'absent' })).toBe(
      false,
    );
    expect(await ownedIds(store, 'carol')).toEqual([]);
    expect(existsSync(join(directoryOf('carol'), kept))).toBe(false);
    expect(
      readdirSync(join(store.path, kept.slice(0, 1))).filter((name) => name.startsWith(kept)),
    ).toEqual([kept]);
    expect((await store.get(updated))?.data).toEqual(data);

    // A directory in the anchor's place cannot be linked to: such entries are files of their own.
    const bob = generateSessionId();
    mkdirSync(join(directoryOf('bob'), '.anchor'), { recursive: true });
    await store.set(bob, { data, expiresAt, owner: 'bob' });
    await store.set(bob, { data, expiresAt, owner: 'bob' });
    const entry = statSync(join(directoryOf('bob'), bob));
    expect(entry.isFile() && entry.nlink === 1 && entry.size === 0).toBe(true);
    expect(await ownedIds(store, 'bob')).toEqual([bob]);
    expect(entriesOf(store)).toEqual(
      [
        ...[updated, kept].map((id) => `${hashOf('alice')}/${id}`),
        `${hashOf('bob')}/${bob}`,
      ].sort(),
    );
  });

  for (const io of ['sync', 'async'] as const) {
    it(`puts back, before set resolves, an entry a remover took while the record was being written (io: '${io}')`, async () => {
      const path = freshPath();
      const id = generateSessionId();
      const entry = join(path, '.owners', hashOf('alice').slice(0, 2), hashOf('alice'), id);
      let removed = 0;
      const store = await openStore({
        path,
        io,
        // A remover in another process (an ownedBy that found no record yet) unlinks the entry
        // after the writer added it and before the record is in place.
        renameFile: async (from, to) => {
          if (existsSync(entry)) {
            rmSync(entry);
            removed++;
          }
          await rename(from, to);
        },
      });
      const expiresAt = Date.now() + HOUR_MS;
      await store.set(id, { data, expiresAt, owner: 'alice' });
      expect(removed).toBe(0);
      const update = { data: Buffer.from([1]), expiresAt, owner: 'alice' };
      expect(await store.set(id, update, { only: 'present' })).toBe(true);
      expect(removed).toBe(1);
      expect(existsSync(entry)).toBe(true);
      expect(await store.ownedBy('alice')).toEqual([{ id, record: update }]);
    });
  }

  it('names owner directories by a hash: any owner is stored, and none reaches a path', async () => {
    const store = await openStore();
    const owners = ['../../etc/passwd', 'a/b\\c', 'nul\u0000byte', '😀'.repeat(128), '.'];
    const expiresAt = Date.now() + HOUR_MS;
    const ids = owners.map(() => generateSessionId());
    for (const [k, owner] of owners.entries()) {
      await store.set(ids[k] as string, { data, expiresAt, owner });
    }
    for (const [k, owner] of owners.entries()) {
      expect(await store.ownedBy(owner)).toEqual([
        { id: ids[k], record: { data, expiresAt, owner } },
      ]);
    }
    for (const entry of entriesOf(store)) expect(entry).toMatch(/^[A-Za-z0-9_-]{43}\/[\w-]+$/);
    // Nothing but shards and the index; `.guards` is made by open, while there is room.
    expect(readdirSync(store.path).sort()).toEqual(
      [...new Set(ids.map((id) => id[0] as string))]
        .concat(['.guards', '.owners', '.owners-used'])
        .sort(),
    );
  });

  it('an entry left by a crash (no record, or a record of another owner) is never listed, and is removed', async () => {
    const store = await openStore();
    const expiresAt = Date.now() + HOUR_MS;
    const [kept, gone, moved] = [generateSessionId(), generateSessionId(), generateSessionId()];
    await store.set(kept, { data, expiresAt, owner: 'alice' });
    await store.set(moved, { data, expiresAt, owner: 'bob' });
    // What a writer killed between adding the entry and writing the record leaves behind.
    const directory = join(store.path, '.owners', hashOf('alice').slice(0, 2), hashOf('alice'));
    writeFileSync(join(directory, gone), '');
    writeFileSync(join(directory, moved), '');
    expect(await ownedIds(store, 'alice')).toEqual([kept]);
    expect(entryNames(directory)).toEqual([kept]);
    expect(await ownedIds(store, 'bob')).toEqual([moved]);
  });

  it('reads records of format 1, which have no owner', async () => {
    const store = await openStore();
    const id = generateSessionId();
    const expiresAt = Date.now() + HOUR_MS;
    const payload = Buffer.from('written by format 1');
    const body = Buffer.concat([Buffer.from(id, 'latin1'), payload]);
    const header = Buffer.alloc(24);
    header.writeUInt32LE(0x46534553, 0);
    header.writeUInt8(1, 4);
    header.writeUInt8(id.length, 5);
    header.writeDoubleLE(expiresAt, 8);
    header.writeUInt32LE(payload.length, 16);
    header.writeUInt32LE(crc32(body), 20);
    mkdirSync(join(store.path, id.slice(0, 1)), { recursive: true });
    const file = join(store.path, id.slice(0, 1), id);
    writeFileSync(file, Buffer.concat([header, body]));
    utimesSync(file, expiresAt / 1000, expiresAt / 1000);
    expect(await store.get(id)).toEqual({ data: payload, expiresAt });
    await store.set(id, { data, expiresAt, owner: 'alice' });
    expect(await ownedIds(store, 'alice')).toEqual([id]);
  });

  for (const io of ['sync', 'async'] as const) {
    it(`a sweep removes the entries of the expired records it removes (io: '${io}')`, async () => {
      const store = await openStore({ io, graceMs: 100 });
      const live: string[] = [];
      for (let k = 0; k < 60; k++) {
        const id = generateSessionId();
        const expired = k % 3 !== 0;
        await store.set(id, {
          data,
          expiresAt: Date.now() + (expired ? 100 : HOUR_MS),
          owner: `user ${k % 4}`,
        });
        if (!expired) live.push(id);
      }
      await new Promise((resolve) => setTimeout(resolve, 150));
      let done = false;
      while (!done) done = (await store.sweep()).done;
      const listed = entriesOf(store).map((entry) => entry.split('/')[1]);
      expect(listed.sort()).toEqual(live.sort());
    }, 30_000);
  }
});

/** A forked fixture, and the next message of a type from it (failing on an `error` message). */
function forkFixture(script: string, args: string[]) {
  const child = fork(fileURLToPath(new URL(`./fixtures/${script}`, import.meta.url)), args, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.push(child);
  const messages: Array<{ type: string; count?: number; message?: string; ids?: string[] }> = [];
  let wake = () => {};
  child.on('message', (message: (typeof messages)[number]) => {
    messages.push(message);
    wake();
  });
  child.on('exit', () => wake());
  return {
    child,
    async next(type: string) {
      for (;;) {
        const index = messages.findIndex((message) => message.type === type);
        if (index >= 0) return messages.splice(index, 1)[0] as (typeof messages)[number];
        const error = messages.find((message) => message.type === 'error');
        if (error !== undefined) throw new Error(`child failed: ${error.message}`);
        if (child.exitCode !== null) throw new Error(`child exited before sending ${type}`);
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    },
  };
}

describe('owner index across processes', () => {
  it('two processes saving the same sessions with one owner at once each leave a whole record, listed for that owner', async () => {
    const store = await openStore();
    const expiresAt = Date.now() + HOUR_MS;
    const ids = Array.from({ length: 1500 }, () => generateSessionId());
    // Anonymous sessions, about to be saved with their user by two requests at once.
    for (const id of ids) await store.set(id, { data, expiresAt });
    const savers = (['sync', 'async'] as const).map((io) =>
      forkFixture('owner-saver.mjs', [store.path, ids.join(','), io]),
    );
    for (const saver of savers) await saver.next('ready');
    const BATCH = 25;
    for (let from = 0; from < ids.length; from += BATCH) {
      for (const saver of savers) saver.child.send({ type: 'save', from, to: from + BATCH });
      for (const saver of savers) expect((await saver.next('saved')).count).toBe(BATCH);
    }
    for (const saver of savers) saver.child.send({ type: 'close' });

    const damaged: string[] = [];
    for (const id of ids) {
      const record = await store.get(id).catch(() => undefined);
      if (record?.owner !== 'alice' || !textOf(record)?.startsWith(`${id} saved by `)) {
        damaged.push(id);
      }
    }
    expect(damaged).toEqual([]);
    expect(await ownedIds(store, 'alice')).toEqual([...ids].sort());
  }, 120_000);

  it('after a writer in another process is killed at random points, every owner lists exactly the records that carry it', async () => {
    const store = await openStore();
    const ids = Array.from({ length: 40 }, () => generateSessionId());
    for (let round = 0; round < 6; round++) {
      const child = fork(
        fileURLToPath(new URL('./fixtures/owner-writer.mjs', import.meta.url)),
        [store.path, ids.join(',')],
        { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
      );
      children.push(child);
      let done = -1;
      child.on('message', (message: { type: string; op?: number; message?: string }) => {
        if (message.type === 'error') throw new Error(message.message);
        if (message.type === 'done') done = message.op as number;
      });
      while (done < 100) {
        expect(child.exitCode, 'the writer is still running').toBeNull();
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      await new Promise((resolve) => setTimeout(resolve, 3 + round * 7));
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));

      const carried = new Map<string, string[]>();
      for (const id of ids) {
        const owner = (await store.get(id))?.owner;
        if (owner !== undefined) carried.set(owner, [...(carried.get(owner) ?? []), id]);
      }
      for (const owner of ['alice', 'bob', 'chloé/../x']) {
        expect(await ownedIds(store, owner)).toEqual((carried.get(owner) ?? []).sort());
      }
    }
  }, 120_000);
});

describe('FileStore: an owner listing beside a record it may not read', () => {
  it.runIf(process.platform === 'linux')(
    "leaves out a record, or a shard's records, this process may not open (EACCES) and lists the owner's others (run as nobody when this process is root)",
    async () => {
      const isRoot = process.getuid?.() === 0;
      // Traversable by nobody, who owns the store's parent.
      const parent = mkdtempSync(join(tmpdir(), 'sessile-file-modes-'));
      try {
        chmodSync(parent, 0o755);
        if (isRoot) chownSync(parent, 65_534, 65_534);
        const script = fileURLToPath(new URL('./fixtures/unreadable-owned.mjs', import.meta.url));
        const { stdout } = await run(process.execPath, [script, join(parent, 'store')], {
          timeout: 30_000,
          killSignal: 'SIGKILL',
          ...(isRoot ? { uid: 65_534, gid: 65_534 } : {}),
        });
        const idOf = (shard: string, n: number) => `${shard}${String(n).padStart(20, '0')}`;
        expect(JSON.parse(stdout)).toEqual({
          oneRecord: [idOf('A', 0), idOf('A', 1), idOf('B', 1), idOf('C', 0), idOf('C', 1)],
          oneShard: [idOf('A', 0), idOf('A', 1), idOf('B', 1)],
        });
      } finally {
        rmSync(parent, { recursive: true, force: true });
      }
    },
    60_000,
  );
});

describe("FileStore: an owner's index directory this process may not write", () => {
  it.runIf(process.platform === 'linux')(
    "a delete and the sweep remove that owner's records and resolve; the entries left over are never listed (run as nobody when this process is root)",
    async () => {
      const isRoot = process.getuid?.() === 0;
      // Traversable by nobody, who owns the store's parent.
      const parent = mkdtempSync(join(tmpdir(), 'sessile-file-owner-mode-'));
      try {
        chmodSync(parent, 0o755);
        if (isRoot) chownSync(parent, 65_534, 65_534);
        const script = fileURLToPath(new URL('./fixtures/locked-owner-dir.mjs', import.meta.url));
        const { stdout } = await run(process.execPath, [script, join(parent, 'store')], {
          timeout: 30_000,
          killSignal: 'SIGKILL',
          ...(isRoot ? { uid: 65_534, gid: 65_534 } : {}),
        });
        expect(JSON.parse(stdout)).toEqual({
          deleted: true,
          afterDelete: null,
          swept: expect.objectContaining({ removed: 2, done: true }),
          listed: [`C${'1'.padStart(20, '0')}`],
        });
      } finally {
        rmSync(parent, { recursive: true, force: true });
      }
    },
    60_000,
  );
});

describe('a lost owner index is rebuilt from the records', () => {
  /** Owned sessions: `alice` owns the even ones, `bob` the odd ones. */
  async function ownedSessions(store: FileStore, count: number) {
    const expiresAt = Date.now() + HOUR_MS;
    const ids = Array.from({ length: count }, () => generateSessionId());
    await Promise.all(
      ids.map((id, index) =>
        store.set(id, { data, expiresAt, owner: index % 2 === 0 ? 'alice' : 'bob' }),
      ),
    );
    return {
      alice: ids.filter((_, index) => index % 2 === 0).sort(),
      bob: ids.filter((_, index) => index % 2 === 1).sort(),
    };
  }

  for (const io of ['sync', 'async'] as const) {
    it(`removed by hand while the store is open, it lists every session again at the next ownedBy (io: '${io}')`, async () => {
      const store = await openStore({ io });
      const owned = await ownedSessions(store, 60);
      rmSync(join(store.path, '.owners'), { recursive: true });
      // A session saved meanwhile makes the index's directory again: still not complete.
      const later = generateSessionId();
      await store.set(later, { data, expiresAt: Date.now() + HOUR_MS, owner: 'alice' });
      expect(await ownedIds(store, 'alice')).toEqual([...owned.alice, later].sort());
      expect(await ownedIds(store, 'bob')).toEqual(owned.bob);
      expect(existsSync(join(store.path, '.owners', '.complete'))).toBe(true);
    });
  }

  it('removed while no store is open, the next open rebuilds it; revokeOwner and the cap see every session', async () => {
    const path = freshPath();
    const first = await FileStore.open({ path });
    const logins = new SessionManager({ store: first, lock: false, cleanup: manual() });
    const owned: Record<string, string[]> = { alice: [], bob: [] };
    for (let login = 0; login < 12; login++) {
      const owner = login % 2 === 0 ? 'alice' : 'bob';
      const session = await logins.open(undefined);
      await session.setOwner(owner);
      await session.commit();
      owned[owner]?.push(session.id);
    }
    await logins.close();
    await first.close();
    rmSync(join(path, '.owners'), { recursive: true });

    const store = await openStore({ path });
    const manager = new SessionManager({
      store,
      lock: false,
      cleanup: manual(),
      maxSessionsPerOwner: 6,
    });
    expect(await manager.revokeOwner('bob')).toBe(6);
    for (const id of owned.bob ?? []) expect(await store.get(id)).toBeUndefined();
    // alice has 6 of 6: one more login ends her oldest session.
    const session = await manager.open(undefined);
    await session.setOwner('alice');
    await session.commit();
    expect(await ownedIds(store, 'alice')).toEqual(
      [...(owned.alice ?? []).slice(1), session.id].sort(),
    );
    await manager.close();
  });

  it("an index made without .complete (an older version's) is completed in the background: an entry removed by hand is listed again", async () => {
    const path = freshPath();
    const first = await FileStore.open({ path });
    const owned = await ownedSessions(first, 10);
    await first.close();
    const directory = join(path, '.owners', hashOf('alice').slice(0, 2), hashOf('alice'));
    rmSync(join(directory, owned.alice[0] as string));
    rmSync(join(path, '.owners', '.complete'));
    rmSync(join(path, '.owners-used'));

    const store = await openStore({ path });
    for (let looks = 0; !existsSync(join(path, '.owners', '.complete')); looks++) {
      expect(looks, 'the open rebuilt the index').toBeLessThan(10_000);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    expect(existsSync(join(path, '.owners-used'))).toBe(true);
    expect(await ownedIds(store, 'alice')).toEqual(owned.alice);
  });

  it('a store whose sessions have no owner makes no index, and ownedBy lists none without making one', async () => {
    const store = await openStore();
    await store.set(generateSessionId(), { data, expiresAt: Date.now() + HOUR_MS });
    expect(await store.ownedBy('alice')).toEqual([]);
    expect(readdirSync(store.path).filter((name) => name.startsWith('.owners'))).toEqual([]);
  });

  it('several processes that find it lost at once, and one killed in the middle of its rebuild, each list every session', async () => {
    const store = await openStore();
    const owned = await ownedSessions(store, 6000);
    await store.close();
    stores.splice(stores.indexOf(store), 1);
    rmSync(join(store.path, '.owners'), { recursive: true });

    // Its open starts the rebuild: killed once it is under way.
    const killed = forkFixture('owner-lister.mjs', [store.path, 'sync']);
    const owners = join(store.path, '.owners');
    const started = () =>
      existsSync(owners) && readdirSync(owners).some((name) => name.startsWith('.rebuild.'));
    for (let looks = 0; !started(); looks++) {
      expect(looks, 'the open started a rebuild').toBeLessThan(10_000);
      expect(killed.child.exitCode).toBeNull();
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    killed.child.kill('SIGKILL');
    await new Promise((resolve) => killed.child.once('exit', resolve));
    expect(existsSync(join(owners, '.complete')), 'killed before its rebuild finished').toBe(false);

    const listers = (['sync', 'async'] as const).map((io) =>
      forkFixture('owner-lister.mjs', [store.path, io]),
    );
    for (const lister of listers) await lister.next('ready');
    for (const lister of listers) lister.child.send({ type: 'list', owner: 'alice' });
    const reopened = await openStore({ path: store.path });
    expect(await ownedIds(reopened, 'bob')).toEqual(owned.bob);
    for (const lister of listers) {
      expect((await lister.next('listed')).ids?.sort()).toEqual(owned.alice);
      lister.child.send({ type: 'close' });
    }
    // The killed rebuild's own file went with the one that finished.
    expect(readdirSync(owners).filter((name) => name.startsWith('.'))).toEqual(['.complete']);
  }, 120_000);
});

/** A closed store of 6000 sessions of 'alice' whose owner index was removed by hand. */
async function aliceStoreWithoutIndex(): Promise<{ path: string; ids: string[] }> {
  const path = freshPath();
  const first = await FileStore.open({ path });
  const expiresAt = Date.now() + HOUR_MS;
  const ids = Array.from({ length: 6000 }, () => generateSessionId());
  await Promise.all(ids.map((id) => first.set(id, { data, expiresAt, owner: 'alice' })));
  await first.close();
  rmSync(join(path, '.owners'), { recursive: true });
  return { path, ids };
}

/** Resolves once a rebuild has made its file in the index directory `owners`. */
async function rebuildStarted(owners: string): Promise<void> {
  for (let looks = 0; ; looks++) {
    expect(looks, 'the open started a rebuild').toBeLessThan(10_000);
    if (existsSync(owners) && readdirSync(owners).some((name) => name.startsWith('.rebuild.'))) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

describe('FileStore: close() while ownedBy waits for a rebuild of the owner index', () => {
  it('ends the wait: that ownedBy rejects with ERR_STORE_CLOSED and close resolves; the rebuild then finishes', async () => {
    const { path, ids } = await aliceStoreWithoutIndex();

    // Its open starts the rebuild, under the lease: stopped (alive) once it is under way.
    const rebuilder = forkFixture('owner-lister.mjs', [path, 'sync']);
    const owners = join(path, '.owners');
    await rebuildStarted(owners);
    rebuilder.child.kill('SIGSTOP');
    try {
      expect(existsSync(join(owners, '.complete')), 'stopped before its rebuild finished').toBe(
        false,
      );
      const store = await FileStore.open({ path });
      const listing = store.ownedBy('alice').then(
        () => 'listed',
        (error: { code?: string }) => error.code,
      );
      await store.close();
      expect(await listing).toBe('ERR_STORE_CLOSED');
    } finally {
      rebuilder.child.kill('SIGCONT');
    }
    await rebuilder.next('ready');
    rebuilder.child.send({ type: 'list', owner: 'alice' });
    expect((await rebuilder.next('listed')).ids?.sort()).toEqual([...ids].sort());
    rebuilder.child.send({ type: 'close' });
    expect(readdirSync(owners).filter((name) => name.startsWith('.'))).toEqual(['.complete']);
  }, 120_000);
});

describe('FileStore: an owner index that is a symlink', () => {
  it('a rebuild refuses it with ERR_STORE_IO and makes nothing where it leads', async () => {
    const store = await openStore();
    await store.set(generateSessionId(), { data, expiresAt: Date.now() + HOUR_MS });
    const elsewhere = mkdtempSync(join(root, 'elsewhere-'));
    symlinkSync(elsewhere, join(store.path, '.owners'));
    await expect(store.ownedBy('alice')).rejects.toMatchObject({ code: 'ERR_STORE_IO' });
    expect(readdirSync(elsewhere)).toEqual([]);
  });
});

describe('FileStore: close() during its own rebuild of the owner index', () => {
  it('stops it and leaves no file of it behind; the next open rebuilds the index whole', async () => {
    const { path, ids } = await aliceStoreWithoutIndex();

    const store = await FileStore.open({ path });
    const owners = join(path, '.owners');
    await rebuildStarted(owners);
    await store.close();
    expect(readdirSync(owners).filter((name) => name.startsWith('.'))).toEqual([]);

    const reopened = await openStore({ path });
    expect(await ownedIds(reopened, 'alice')).toEqual([...ids].sort());
  }, 120_000);
});
