import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSessionError, type SessionStore } from '@sessile/core';
import { afterAll, describe, expect, it } from 'vitest';
import { newId, record } from '../helpers.js';
import type { ConformanceOptions } from '../options.js';

/** The small filesystem the store fills. */
const FILESYSTEM_SIZE = '16m';
/**
 * Space given back once the disk is full, so the store can be seen to take writes again. A
 * store may need room for more than one write before it takes writes again: LevelDB reopens
 * only with room for its next log (its 4 MiB write buffer) and a new MANIFEST.
 */
const BALLAST_BYTES = 8 * 1024 * 1024;

/**
 * 4,000 characters that no store can compress much, so a store that compresses (LevelDB's
 * tables) fills the disk as quickly as one that does not.
 */
function padding(): string {
  return randomBytes(3000).toString('base64');
}

/**
 * Mounts a tmpfs of `size` (`'8m'`) on a new directory and returns its path, for a store's own
 * full-disk tests; with `inodes`, it holds at most that many files and directories (a disk out
 * of inodes). Needs root; throws, saying so, when the mount is refused.
 */
export function mountSmallFilesystem(size: string, options: { inodes?: number } = {}): string {
  const mounted = mkdtempSync(join(tmpdir(), 'sessile-full-disk-'));
  const settings = `size=${size}${options.inodes === undefined ? '' : `,nr_inodes=${options.inodes}`}`;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', settings, 'tmpfs', mounted], { stdio: 'pipe' });
  } catch (error) {
    rmdirSync(mounted);
    const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim();
    throw new Error(`mounting a tmpfs needs root: ${stderr || (error as Error).message}`);
  }
  return mounted;
}

/** Unmounts what `mountSmallFilesystem` mounted and removes its directory. */
export function unmountSmallFilesystem(mounted: string): void {
  execFileSync('umount', [mounted]);
  rmdirSync(mounted);
}

export function fullDiskTests(
  options: ConformanceOptions,
  openIn: NonNullable<ConformanceOptions['fullDisk']>,
): void {
  describe('full disk', () => {
    const mounts: string[] = [];
    afterAll(() => {
      for (const mounted of mounts.splice(0)) unmountSmallFilesystem(mounted);
    });

    it('rejects with ERR_STORE_IO naming where the store is, loses nothing acknowledged, and recovers once there is room', async () => {
      const mounted = mountSmallFilesystem(FILESYSTEM_SIZE);
      mounts.push(mounted);
      const ballast = join(mounted, 'ballast');
      writeFileSync(ballast, Buffer.alloc(BALLAST_BYTES));
      const store: SessionStore = await openIn(join(mounted, 'store'));
      try {
        const written: string[] = [];
        let failure: unknown;
        while (failure === undefined && written.length < 10_000) {
          const id = newId();
          try {
            await store.set(id, record({ id, padding: padding() }));
            written.push(id);
          } catch (error) {
            failure = error;
          }
        }
        expect(isSessionError(failure, 'ERR_STORE_IO'), String(failure)).toBe(true);
        expect((failure as Error).message, `${options.name} names its location`).toContain(mounted);
        expect((failure as Error).cause).toBeDefined();
        for (const id of written) expect(await store.get(id)).toBeDefined();
        unlinkSync(ballast);
        expect(await store.set(newId(), record({ after: 'room was made' }))).toBe(true);
      } finally {
        await store.close();
      }
    }, 120_000);

    it('a full disk rejects with an ERR_STORE_IO whose message never contains the session id', async () => {
      const mounted = mountSmallFilesystem(FILESYSTEM_SIZE);
      mounts.push(mounted);
      const store: SessionStore = await openIn(join(mounted, 'store'));
      try {
        let failure: unknown;
        let failedId = '';
        for (let i = 0; failure === undefined && i < 10_000; i++) {
          failedId = newId();
          await store.set(failedId, record({ padding: padding() })).catch((error) => {
            failure = error;
          });
        }
        expect(isSessionError(failure, 'ERR_STORE_IO'), String(failure)).toBe(true);
        // Ids are bearer secrets, and error messages end up in logs.
        expect((failure as Error).message).not.toContain(failedId);
      } finally {
        await store.close();
      }
    }, 120_000);
  });
}
