import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSessionId, isSessionError } from '@sessile/core';
import { afterAll, describe, expect, it } from 'vitest';
import { DbmStore } from '../src/index.js';

// Needs root, to mount a small tmpfs; the test fails with the reason when the mount is refused.
describe('a full disk', { timeout: 120_000 }, () => {
  const mounted = mkdtempSync(join(tmpdir(), 'sessile-dbm-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mounted], { stdio: 'pipe' });
  afterAll(() => {
    execFileSync('umount', [mounted]);
    rmdirSync(mounted);
  });

  it("rejects with ERR_STORE_IO naming the store's path and keeping the cause, and nothing acknowledged is lost", async () => {
    const store = await DbmStore.open({ path: join(mounted, 'sessions.dbm') });
    try {
      const data = Buffer.alloc(4000, 0x5a);
      const written: string[] = [];
      let failure: unknown;
      for (let n = 0; n < 10_000 && failure === undefined; n++) {
        const id = generateSessionId();
        try {
          await store.set(id, { data, expiresAt: Date.now() + 3_600_000 });
          written.push(id);
        } catch (error) {
          failure = error;
        }
      }
      expect(isSessionError(failure, 'ERR_STORE_IO'), String(failure)).toBe(true);
      expect((failure as Error).message).toContain(`set on ${store.path} failed: `);
      expect((failure as { cause?: { code?: string } }).cause?.code).toBe('ENOSPC');
      for (const id of written)
        expect(Buffer.from((await store.get(id))?.data ?? [])).toEqual(data);
    } finally {
      await store.close();
    }
  });
});
