import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { probeStoreDirectory, probeStoreFile, type StoreDirectoryRules } from '../src/store.js';
import { mountTmpfs, unmount } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'sessile-probe-'));
const mounts: string[] = [];
let made = 0;

afterEach(() => {
  for (const dir of mounts.splice(0)) unmount(dir);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A new directory holding a regular file `a-file` and nothing else. */
function place(): string {
  const dir = join(root, `case-${made++}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'a-file'), 'not a directory');
  return dir;
}

/** A store that marks itself with `STORE` and leaves `*.part` files while it is being made. */
const rules: StoreDirectoryRules = {
  kind: 'a test store',
  isStore: (names) => names.includes('STORE'),
  isOwnFile: (name) => name.endsWith('.part'),
};

describe('probeStoreDirectory', () => {
  it('finds a store by its own rule, whatever else it holds', async () => {
    const dir = place();
    writeFileSync(join(dir, 'STORE'), '');
    expect(await probeStoreDirectory(dir, rules)).toEqual({ state: 'present' });
  });

  it('calls a missing directory absent when its parents can be made, and makes nothing', async () => {
    const dir = place();
    const target = join(dir, 'new', 'deeper', 'sessions');
    expect(await probeStoreDirectory(target, rules)).toEqual({
      state: 'absent',
      reason: `${target} does not exist`,
    });
    expect(readdirSync(dir)).toEqual(['a-file']);
  });

  it("calls an empty directory, or one of the store's own unfinished files, absent", async () => {
    const dir = place();
    mkdirSync(join(dir, 'empty'));
    expect(await probeStoreDirectory(join(dir, 'empty'), rules)).toMatchObject({
      state: 'absent',
      reason: `${join(dir, 'empty')} is an empty directory, not a test store yet`,
    });
    mkdirSync(join(dir, 'begun'));
    writeFileSync(join(dir, 'begun', '1.part'), '');
    mkdirSync(join(dir, 'begun', 'lost+found'));
    expect(await probeStoreDirectory(join(dir, 'begun'), rules)).toMatchObject({
      state: 'absent',
    });
  });

  it('refuses a directory of other files, naming a few of them', async () => {
    const dir = place();
    for (const name of ['d', 'c', 'b', 'a']) writeFileSync(join(dir, `${name}.txt`), '');
    expect(await probeStoreDirectory(dir, rules)).toEqual({
      state: 'refused',
      reason: `${dir} holds other files (a-file, a.txt, b.txt, …) and is not a test store`,
    });
  });

  it("names another store's session files by their start and length only: an id is never quoted", async () => {
    const dir = join(root, `case-${made++}`);
    mkdirSync(dir);
    const id = 'AbCdEfGhIjKlMnOpQrStUvWxYz012345';
    writeFileSync(join(dir, `${id}.json`), '{}');
    writeFileSync(join(dir, 'notes.txt'), '');
    expect(await probeStoreDirectory(dir, rules)).toEqual({
      state: 'refused',
      reason: `${dir} holds other files (AbCd… (37 characters), notes.txt) and is not a test store`,
    });
  });

  it('refuses a regular file, and a path inside one', async () => {
    const dir = place();
    expect(await probeStoreDirectory(join(dir, 'a-file'), rules)).toEqual({
      state: 'refused',
      reason: `${join(dir, 'a-file')} is a regular file, not a directory`,
    });
    const inside = join(dir, 'a-file', 'sessions', 'deeper');
    expect(await probeStoreDirectory(inside, rules)).toMatchObject({
      state: 'refused',
      reason: `${inside} is inside a file, not a directory`,
    });
  });

  it('refuses a kernel pseudo-filesystem without touching it', async () => {
    expect(await probeStoreDirectory('/proc/sessile-sessions', rules)).toEqual({
      state: 'refused',
      reason:
        '/proc/sessile-sessions is on a proc filesystem, whose files are kernel interfaces, not storage',
    });
  });

  it('refuses a directory, or a parent, on a read-only filesystem (needs root)', async () => {
    const readOnly = mountTmpfs('ro,size=1m');
    mounts.push(readOnly);
    expect(await probeStoreDirectory(readOnly, rules)).toMatchObject({
      state: 'refused',
      reason: `${readOnly}: a read-only filesystem (EROFS)`,
      cause: expect.objectContaining({ code: 'EROFS' }),
    });
    expect(await probeStoreDirectory(join(readOnly, 'new', 'sessions'), rules)).toMatchObject({
      state: 'refused',
      reason: `${readOnly}: a read-only filesystem (EROFS)`,
    });
  });

  it('refuses a store on a filesystem remounted read-only, which open could not write in (needs root)', async () => {
    const dir = mountTmpfs('size=1m');
    mounts.push(dir);
    writeFileSync(join(dir, 'STORE'), '');
    expect(await probeStoreDirectory(dir, rules)).toEqual({ state: 'present' });
    execFileSync('mount', ['-o', 'remount,ro', dir]);
    expect(await probeStoreDirectory(dir, rules)).toMatchObject({
      state: 'refused',
      reason: `${dir}: a read-only filesystem (EROFS)`,
      cause: expect.objectContaining({ code: 'EROFS' }),
    });
  });
});

describe('probeStoreFile', () => {
  it('leaves a regular file to the store, and calls a missing one in a writable directory absent', async () => {
    const dir = place();
    expect(await probeStoreFile(join(dir, 'a-file'))).toBeUndefined();
    expect(await probeStoreFile(join(dir, 'sessions.db'))).toEqual({
      state: 'absent',
      reason: `${join(dir, 'sessions.db')} does not exist`,
    });
    expect(readdirSync(dir)).toEqual(['a-file']);
  });

  it('refuses a directory, a missing directory, a path inside a file and a read-only one', async () => {
    const dir = place();
    expect(await probeStoreFile(dir)).toEqual({
      state: 'refused',
      reason: `${dir} is a directory, not a regular file`,
    });
    expect(await probeStoreFile(join(dir, 'missing', 'sessions.db'))).toMatchObject({
      state: 'refused',
      reason: `its directory ${join(dir, 'missing')} does not exist`,
    });
    expect(await probeStoreFile(join(dir, 'a-file', 'sessions.db'))).toMatchObject({
      state: 'refused',
      reason: `${join(dir, 'a-file', 'sessions.db')} is inside a file, not a directory`,
      cause: expect.objectContaining({ code: 'ENOTDIR' }),
    });
    const readOnly = mountTmpfs('ro,size=1m');
    mounts.push(readOnly);
    expect(await probeStoreFile(join(readOnly, 'sessions.db'))).toMatchObject({
      state: 'refused',
      reason: `${readOnly}: a read-only filesystem (EROFS)`,
    });
  });
});
