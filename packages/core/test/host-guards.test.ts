import { execFileSync } from 'node:child_process';
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmdirSync,
  statfsSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HostGuards, syncLockFileSystem } from '../src/store.js';

// The machine is shared with other suites: allow slow runs; no test asserts on time.
vi.setConfig({ testTimeout: 60_000 });

const mounts: string[] = [];

afterEach(() => {
  for (const dir of mounts.splice(0)) {
    execFileSync('umount', [dir]);
    rmdirSync(dir);
  }
});

/** A tmpfs of `size` with no byte left: needs root, and the test fails with the reason otherwise. */
function fullFilesystem(size: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'sessile-guards-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (error) {
    rmdirSync(dir);
    const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim();
    throw new Error(`mount -t tmpfs of ${size} on ${dir} was refused: ${stderr || error}`);
  }
  mounts.push(dir);
  const fd = openSync(join(dir, 'filler'), 'w');
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  } finally {
    closeSync(fd);
  }
  expect(statfsSync(dir).bavail).toBe(0);
  return dir;
}

describe('HostGuards', () => {
  it('takes a guard on a full disk in a process that had no holder file yet, so it can still delete and free space', async () => {
    const dir = fullFilesystem('1m');
    const guardsDirectory = join(dir, '.guards');
    const guards = new HostGuards({
      directory: guardsDirectory,
      staleMs: 5000,
      fileMode: 0o600,
      directoryMode: 0o700,
      fs: syncLockFileSystem,
    });
    expect(await guards.run(join(dir, 'record'), async () => 'ran under the guard')).toBe(
      'ran under the guard',
    );
    expect(readdirSync(dir).filter((name) => name.endsWith('.lock'))).toEqual([]);
    await guards.close();
    expect(readdirSync(guardsDirectory)).toEqual([]);
  });
});
