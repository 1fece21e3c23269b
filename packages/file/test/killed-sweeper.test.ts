import { fork } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mountSmallFilesystem, unmountSmallFilesystem } from '@sessile/conformance';
import { generateSessionId } from '@sessile/core';
import { FileStore, type FileStoreOptions } from '@sessile/file';
import { afterEach, describe, expect, it } from 'vitest';
import { HOUR_MS, recordOf, testDirectories, textOf } from './helpers.js';

const { root, stores, children, freshPath } = testDirectories('sessile-file-killed-sweeper-');

async function openStore(options: Partial<FileStoreOptions> = {}): Promise<FileStore> {
  // No spares: the files in a shard are then only the records and what the sweeper left.
  const store = await FileStore.open({
    path: freshPath(),
    reuseFiles: false,
    ...options,
  });
  stores.push(store);
  return store;
}

/**
 * The narrow race of an unguarded sweep, made to happen: a record expired as of the sweep's
 * `now` is rewritten by this process (another one, to the sweeper) between the sweeper's lstat
 * and its rename aside, and the sweeper is killed with SIGKILL before it links the live record
 * back. Resolves once it is dead, with the `now` its sweep judged by.
 */
async function killSweeperMidRemoval(
  store: FileStore,
  id: string,
  owner?: string,
): Promise<{ sweepNow: number }> {
  const sweeper = await sweeperAtLink(store, id, owner, 'kill');
  expect(await sweeper.exited).toEqual({ code: null, signal: 'SIGKILL' });
  // The window itself: the record is aside, so it reads as absent.
  expect(await store.get(id)).toBeUndefined();
  return sweeper;
}

/** How a child process ended. */
type Exit = { code: number | null; signal: NodeJS.Signals | null };

/**
 * The same race up to the sweeper's link back of the live record it moved aside; there it is
 * killed (`kill`), or waits (`pause`) until `link()` lets it go on and finish its sweep.
 */
async function sweeperAtLink(
  store: FileStore,
  id: string,
  owner: string | undefined,
  mode: 'kill' | 'pause',
): Promise<{ sweepNow: number; link(): void; exited: Promise<Exit> }> {
  const now = Date.now();
  await store.set(id, {
    ...recordOf('old', now + 1000),
    ...(owner === undefined ? {} : { owner }),
  });
  const sweepNow = now + 2 * HOUR_MS;
  const signals = mkdtempSync(join(root, 'signals-'));
  const sweeper = fork(
    fileURLToPath(new URL('./fixtures/killed-sweeper.mjs', import.meta.url)),
    [store.path, id, signals, String(sweepNow), mode],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
  );
  children.push(sweeper);
  const exited = new Promise<Exit>((resolve) =>
    sweeper.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const reached = async (signal: string) => {
    for (let looks = 0; !existsSync(join(signals, signal)); looks++) {
      expect(looks, `the sweeper reached ${signal}`).toBeLessThan(20_000);
      expect(sweeper.exitCode).toBeNull();
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  };
  await reached('paused');
  const rewritten = { ...recordOf('rewritten', now + 10 * HOUR_MS), ...(owner ? { owner } : {}) };
  expect(await store.set(id, rewritten)).toBe(true);
  writeFileSync(join(signals, 'go'), '');
  if (mode === 'pause') await reached('at-link');
  return { sweepNow, link: () => writeFileSync(join(signals, 'link'), ''), exited };
}

function shardFiles(store: FileStore, id: string): string[] {
  return readdirSync(join(store.path, id.slice(0, 1))).filter((name) => !name.endsWith('.lock'));
}

describe('a sweeper killed while it had a live record aside', () => {
  for (const io of ['sync', 'async'] as const) {
    it(`the next sweep puts the record another process rewrote back (io: '${io}')`, async () => {
      const store = await openStore({ io });
      const id = generateSessionId();
      const { sweepNow } = await killSweeperMidRemoval(store, id);
      while (!(await store.sweep({ now: sweepNow })).done);
      expect(textOf(await store.get(id))).toBe('rewritten');
      expect(shardFiles(store, id)).toEqual([id]);
    }, 60_000);
  }

  it('a record with an owner comes back listed for that owner', async () => {
    const store = await openStore();
    const id = generateSessionId();
    const { sweepNow } = await killSweeperMidRemoval(store, id, 'alice');
    while (!(await store.sweep({ now: sweepNow })).done);
    const listed = await store.ownedBy('alice');
    expect(listed.map((session) => [session.id, textOf(session.record)])).toEqual([
      [id, 'rewritten'],
    ]);
  }, 60_000);

  it('a record whose owner was listed (revokeOwner) while it was aside stays away', async () => {
    const store = await openStore();
    const id = generateSessionId();
    const { sweepNow } = await killSweeperMidRemoval(store, id, 'alice');
    // What revokeOwner does first: the owner has no session to end, and must not get one back.
    expect(await store.ownedBy('alice')).toEqual([]);
    while (!(await store.sweep({ now: sweepNow })).done);
    expect(await store.get(id)).toBeUndefined();
    expect(await store.ownedBy('alice')).toEqual([]);
    expect(shardFiles(store, id)).toEqual([]);
  }, 60_000);

  for (const owner of [undefined, 'alice']) {
    it(`delete() ends a record left aside (owner: ${owner}): it resolves true and no sweep brings it back`, async () => {
      const store = await openStore();
      const id = generateSessionId();
      const { sweepNow } = await killSweeperMidRemoval(store, id, owner);
      // A user signing out while the record is aside: before, this resolved false and the next
      // sweep put the session back.
      expect(await store.delete(id)).toBe(true);
      expect(shardFiles(store, id)).toEqual([]);
      while (!(await store.sweep({ now: sweepNow })).done);
      expect(await store.get(id)).toBeUndefined();
      if (owner !== undefined) expect(await store.ownedBy(owner)).toEqual([]);
      // Nothing else of that id is left to delete.
      expect(await store.delete(id)).toBe(false);
    }, 60_000);
  }

  it('delete() while a live sweeper has the record aside: the sweeper does not put it back, and its sweep still finishes', async () => {
    const store = await openStore();
    const id = generateSessionId();
    const sweeper = await sweeperAtLink(store, id, 'alice', 'pause');
    expect(await store.delete(id)).toBe(true);
    sweeper.link();
    expect(await sweeper.exited).toEqual({ code: 0, signal: null });
    expect(await store.get(id)).toBeUndefined();
    expect(await store.ownedBy('alice')).toEqual([]);
    expect(shardFiles(store, id)).toEqual([]);
  }, 60_000);

  it('clear() removes a record left aside too, so no sweep brings it back', async () => {
    const store = await openStore();
    const id = generateSessionId();
    const { sweepNow } = await killSweeperMidRemoval(store, id);
    await store.clear();
    expect(shardFiles(store, id)).toEqual([]);
    while (!(await store.sweep({ now: sweepNow })).done);
    expect(await store.get(id)).toBeUndefined();
  }, 60_000);
});

describe('an expired record a killed sweeper left aside', () => {
  it('is removed by the next sweep at once, not after graceMs, with its owner entry', async () => {
    const store = await openStore();
    const id = generateSessionId();
    const expiresAt = Date.now() + 200;
    await store.set(id, { ...recordOf('expired', expiresAt), owner: 'alice' });
    const shard = join(store.path, id.slice(0, 1));
    renameSync(join(shard, id), join(shard, `${id}.0123456789ab0.aside.tmp`));
    while (Date.now() <= expiresAt) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await store.sweep()).toMatchObject({ removed: 1, done: true });
    expect(readdirSync(shard)).toEqual([]);
    const owners = join(store.path, '.owners');
    const entries = readdirSync(owners)
      .filter((name) => !name.startsWith('.'))
      .flatMap((h2) => readdirSync(join(owners, h2)).map((hash) => join(owners, h2, hash)))
      .flatMap((directory) => readdirSync(directory).filter((name) => name !== '.anchor'));
    expect(entries).toEqual([]);
  });
});

describe('a foreign file named like a record left aside', () => {
  it('is never put in place of the record: the sweep leaves it to graceMs, as any foreign file', async () => {
    const store = await openStore();
    const id = generateSessionId();
    const shard = join(store.path, id.slice(0, 1));
    mkdirSync(shard);
    const planted = join(shard, `${id}.x.aside.tmp`);
    writeFileSync(planted, 'not a record');
    const later = (Date.now() + HOUR_MS) / 1000;
    utimesSync(planted, later, later);
    expect((await store.sweep()).done).toBe(true);
    expect(await store.get(id)).toBeUndefined();
    expect(readdirSync(shard)).toEqual([`${id}.x.aside.tmp`]);
  });
});

describe('a record left aside on a disk with no inode left', () => {
  const mounts: string[] = [];
  afterEach(() => {
    for (const dir of mounts.splice(0)) unmountSmallFilesystem(dir);
  });

  it('the sweep goes on removing expired records, and puts the record back once they made room', async () => {
    const dir = mountSmallFilesystem('8m', { inodes: 200 });
    mounts.push(dir);
    const store = await FileStore.open({ path: join(dir, 'sessions'), reuseFiles: false });
    try {
      await sweepBackOnFullDisk(dir, store);
    } finally {
      await store.close();
    }
  });
});

async function sweepBackOnFullDisk(dir: string, store: FileStore): Promise<void> {
  // Its shard sorts before theirs, so the sweep meets it before it frees any inode.
  const id = `A${generateSessionId().slice(1)}`;
  await store.set(id, recordOf('kept'));
  const expiresAt = Date.now() + 300;
  for (let i = 0; i < 20; i++) {
    await store.set(`z${generateSessionId().slice(1)}`, recordOf('expired', expiresAt));
  }
  // As a sweeper killed between its rename and its link back leaves it.
  const shard = join(store.path, 'A');
  renameSync(join(shard, id), join(shard, `${id}.0123456789ab0.aside.tmp`));
  for (let i = 0; ; i++) {
    try {
      writeFileSync(join(dir, `other-${i}`), '');
    } catch {
      break;
    }
  }
  while (Date.now() <= expiresAt) await new Promise((resolve) => setTimeout(resolve, 50));

  let removed = 0;
  for (let calls = 0; ; calls++) {
    expect(calls).toBeLessThan(10);
    const result = await store.sweep();
    removed += result.removed;
    if (result.done) break;
  }
  expect(removed).toBe(20);
  expect(textOf(await store.get(id))).toBe('kept');
  expect(readdirSync(shard)).toEqual([id]);
}
