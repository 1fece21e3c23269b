import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { afterAll, afterEach } from 'vitest';

/**
 * A test file's temporary dbm paths and child processes: `newPath()` gives a fresh
 * `sessions.dbm` in its own directory, removed after the file's tests; `children` is killed
 * after each test.
 */
export function useTestPaths(prefix: string): { newPath(): string; children: ChildProcess[] } {
  const directories: string[] = [];
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  });
  afterAll(() => {
    for (const directory of directories) rmSync(directory, { recursive: true, force: true });
  });
  return {
    children,
    newPath() {
      const directory = mkdtempSync(join(tmpdir(), `sessile-dbm-${prefix}-`));
      directories.push(directory);
      return join(directory, 'sessions.dbm');
    },
  };
}

/** What this process's file descriptors open inside `directory`, read from `/proc/self/fd` (Linux). */
export function openFilesIn(directory: string): string[] {
  const found: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      // The descriptor readdir itself used, closed by now.
      continue;
    }
    if (target.startsWith(directory + sep)) found.push(target);
  }
  return found;
}
