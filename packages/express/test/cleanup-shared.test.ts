import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSessionId, manual, SessionManager, SWEEP_LOCK_ID } from '@sessile/core';
import { SqliteStore } from '@sessile/sqlite';
import { expect, it } from 'vitest';

it('runs cleanup in one place at a time across connections to one sqlite database', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sessile-cleanup-shared-'));
  const path = join(dir, 'sessions.db');
  const first = await SqliteStore.open({ path });
  const second = await SqliteStore.open({ path });
  const firstManager = new SessionManager({ store: first, cleanup: manual() });
  const secondManager = new SessionManager({ store: second, cleanup: manual() });
  try {
    const data = new TextEncoder().encode('{}');
    for (let i = 0; i < 20; i++) {
      await first.set(generateSessionId(), { data, expiresAt: Date.now() + 20 });
    }
    await new Promise((resolve) => setTimeout(resolve, 60));
    // Another process's sweeper holds the reserved lock: this one skips instead of sweeping too.
    const otherRunner = await first.locks.acquire(SWEEP_LOCK_ID, { leaseMs: 60_000 });
    expect(await secondManager.sweep()).toMatchObject({ outcome: 'busy', removed: 0 });
    await otherRunner.release();
    expect(await secondManager.sweep()).toMatchObject({
      outcome: 'swept',
      removed: 20,
      done: true,
    });
    expect(await firstManager.sweep()).toMatchObject({ outcome: 'swept', removed: 0, done: true });
  } finally {
    await firstManager.close();
    await secondManager.close();
    await first.close();
    await second.close();
    await rm(dir, { recursive: true, force: true });
  }
});
