import { readdirSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HostGuards, syncLockFileSystem } from '../src/store.js';
import { fillWithBytes, hostGuardsIn, mountTmpfs, unmount } from './helpers.js';

// The machine is shared with other suites: allow slow runs; no test asserts on time.
vi.setConfig({ testTimeout: 60_000 });

const mounts: string[] = [];

afterEach(() => {
  for (const dir of mounts.splice(0)) unmount(dir);
});

/** A tmpfs of `size` with no byte left: needs root, and the test fails with the reason otherwise. */
function fullFilesystem(size: string): string {
  const dir = mountTmpfs(`size=${size}`);
  mounts.push(dir);
  fillWithBytes(dir);
  expect(statfsSync(dir).bavail).toBe(0);
  return dir;
}

describe('HostGuards', () => {
  it('refuses a staleMs that is not a duration a timer can keep', () => {
    for (const staleMs of [Number.NaN, -1, 2 ** 31, Number.POSITIVE_INFINITY, '5000']) {
      expect(
        () =>
          new HostGuards({
            directory: join(tmpdir(), 'sessile-never-made'),
            staleMs: staleMs as number,
            fileMode: 0o600,
            directoryMode: 0o700,
            fs: syncLockFileSystem,
          }),
      ).toThrow(/^HostGuards: staleMs must be a number of milliseconds/);
    }
  });

  it('takes a guard on a full disk in a process that had no holder file yet, so it can still delete and free space', async () => {
    const dir = fullFilesystem('1m');
    const guardsDirectory = join(dir, '.guards');
    const guards = hostGuardsIn(guardsDirectory);
    expect(await guards.run(join(dir, 'record'), async () => 'ran under the guard')).toBe(
      'ran under the guard',
    );
    expect(readdirSync(dir).filter((name) => name.endsWith('.lock'))).toEqual([]);
    await guards.close();
    expect(readdirSync(guardsDirectory)).toEqual([]);
  });
});
