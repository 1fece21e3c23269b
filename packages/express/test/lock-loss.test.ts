import { fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { manual, SessionManager } from '@sessile/core';
import { SqliteStore } from '@sessile/sqlite';
import { expect, it } from 'vitest';

const holderModule = new URL('./fixtures/stalled-holder.mjs', import.meta.url).pathname;

it('a stalled process whose lease was taken over gets ERR_LOCK_LOST at commit and overwrites nothing', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sessile-lock-loss-'));
  const path = join(dir, 'sessions.db');
  const store = await SqliteStore.open({ path });
  const manager = new SessionManager<{ count?: number }>({
    store,
    cleanup: manual(),
    lock: { waitMs: 30_000, leaseMs: 30_000 },
  });
  try {
    const created = await manager.open(undefined);
    created.data.count = 0;
    await created.commit();
    const holder = fork(holderModule, [path, created.id], { stdio: 'inherit' });
    // Listened for from the start: the holder may exit before the test gets to wait for it.
    const exited = once(holder, 'exit');
    const [ready] = (await once(holder, 'message')) as [{ locked: boolean }];
    expect(ready.locked).toBe(true);
    // The holder has stopped itself: it stalls (a long GC pause, a stopped VM) past its lease.
    const taker = await manager.open(created.id);
    expect(taker.id).toBe(created.id);
    taker.data.count = 1;
    expect(await taker.commit()).toBe('saved');

    holder.kill('SIGCONT');
    holder.send('commit');
    const [result] = (await once(holder, 'message')) as [{ code?: string; outcome?: string }];
    expect(result).toEqual({ code: 'ERR_LOCK_LOST' });
    const after = await manager.open(created.id);
    expect(after.data.count).toBe(1);
    await after.commit();
    await exited;
  } finally {
    await manager.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});
