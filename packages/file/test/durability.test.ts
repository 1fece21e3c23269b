import { mkdirSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSessionId } from '@sessile/core';
import { FileStore, type FileStoreOptions } from '@sessile/file';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { HOUR_MS, recordOf } from './helpers.js';

// Every fsync the store makes, by the path of the file or directory it synced (the real call
// is made too; only its target is noted).
const synced = vi.hoisted(() => ({ paths: [] as string[] }));

vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs')>();
  const fsync = (fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => {
    synced.paths.push(actual.readlinkSync(`/proc/self/fd/${fd}`));
    actual.fsync(fd, callback);
  };
  return { ...actual, default: { ...actual, fsync }, fsync };
});

const root = realpathSync(mkdtempSync(join(tmpdir(), 'sessile-file-durability-')));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const stores: FileStore[] = [];
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
});

let made = 0;
async function openStore(options: Partial<FileStoreOptions> = {}): Promise<FileStore> {
  const store = await FileStore.open({ path: join(root, `store-${++made}`), ...options });
  stores.push(store);
  return store;
}

/** The paths `step` fsynced. */
async function syncsOf(step: () => Promise<unknown>): Promise<string[]> {
  const before = synced.paths.length;
  await step();
  return synced.paths.slice(before);
}

function idIn(shard: string): string {
  return shard + generateSessionId().slice(1);
}

// fds are named through /proc/self/fd.
describe.runIf(process.platform === 'linux')("FileStore durability 'full'", () => {
  it('fsyncs the store directory once a write has made a shard directory in it, not on every write', async () => {
    const store = await openStore({ durability: 'full' });
    const record = recordOf('durable', Date.now() + HOUR_MS);
    const first = await syncsOf(() => store.set(idIn('a'), record, { only: 'absent' }));
    expect(first.filter((path) => path === store.path)).toHaveLength(1);
    // The record's own shard directory is synced as before.
    expect(first).toContain(join(store.path, 'a'));
    for (const write of [
      () => store.set(idIn('a'), record, { only: 'absent' }),
      () => store.set(idIn('a'), record),
    ]) {
      expect(await syncsOf(write)).not.toContain(store.path);
    }
    // Another shard is another new entry in the store directory.
    const other = await syncsOf(() => store.set(idIn('b'), record));
    expect(other.filter((path) => path === store.path)).toHaveLength(1);
  });

  it('fsyncs the store directory on the first write into a shard another process made', async () => {
    const store = await openStore({ durability: 'full' });
    // Made by someone else, who may not have synced the store directory yet.
    mkdirSync(join(store.path, 'c'));
    const record = recordOf('durable', Date.now() + HOUR_MS);
    expect(await syncsOf(() => store.set(idIn('c'), record))).toContain(store.path);
    expect(await syncsOf(() => store.set(idIn('c'), record))).not.toContain(store.path);
  });

  it('fsyncs the parent of every directory open made for the store', async () => {
    const path = join(root, `nested-${++made}`, 'sessions');
    const syncs = await syncsOf(async () => {
      stores.push(await FileStore.open({ path, durability: 'full' }));
    });
    expect(syncs).toEqual(expect.arrayContaining([root, join(root, `nested-${made}`)]));
  });

  it('clear() fsyncs each shard directory it removed records from, once, and the records stay gone after a reopen', async () => {
    const store = await openStore({ durability: 'full' });
    const record = recordOf('cleared', Date.now() + HOUR_MS);
    for (const id of [idIn('e'), idIn('e'), idIn('f')]) await store.set(id, record);
    // A shard with no record in it has no unlink to make durable.
    mkdirSync(join(store.path, 'g'));
    const syncs = await syncsOf(() => store.clear());
    expect(syncs.filter((path) => path === join(store.path, 'e'))).toHaveLength(1);
    expect(syncs.filter((path) => path === join(store.path, 'f'))).toHaveLength(1);
    expect(syncs).not.toContain(join(store.path, 'g'));
    const reopened = await FileStore.open({ path: store.path, durability: 'full' });
    stores.push(reopened);
    expect(await reopened.count()).toBe(0);
    const normal = await openStore();
    await normal.set(idIn('e'), record);
    expect(await syncsOf(() => normal.clear())).toEqual([]);
  });

  it("'normal' (the default) fsyncs nothing", async () => {
    const path = join(root, `nested-${++made}`, 'sessions');
    const syncs = await syncsOf(async () => {
      const store = await FileStore.open({ path });
      stores.push(store);
      await store.set(idIn('d'), recordOf('fast', Date.now() + HOUR_MS));
      await store.delete(idIn('d'));
    });
    expect(syncs).toEqual([]);
  });
});
