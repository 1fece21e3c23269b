import { execFile } from 'node:child_process';
import { mkdtemp, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A size-limited tmpfs the harness mounts, or why it could not. */
export interface Mounted {
  path: string;
  remount(mode: 'ro' | 'rw'): Promise<void>;
  unmount(): Promise<void>;
}

export async function mountTmpfs(sizeBytes: number): Promise<Mounted | string> {
  const path = await mkdtemp(join(tmpdir(), 'sessile-tmpfs-'));
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0755`, 'tmpfs', path]);
  } catch (error) {
    await rmdir(path).catch(() => {});
    const stderr = (error as { stderr?: string }).stderr?.trim();
    return `mounting a tmpfs failed: ${stderr || String(error)}`;
  }
  return {
    path,
    async remount(mode) {
      await run('mount', ['-o', `remount,${mode}`, path]);
    },
    async unmount() {
      await run('umount', ['-l', path]);
      await rmdir(path).catch(() => {});
    },
  };
}
