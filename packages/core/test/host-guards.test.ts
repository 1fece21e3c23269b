import { existsSync, mkdtempSync, readdirSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MemoryStore, type SessionRecord } from '../src/index.js';
import { HostGuards, LeaseFiles, LeaseLocks, syncLockFileSystem } from '../src/store.js';
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

  it('makes its own directory again when it was removed by hand, but never the store directory above it', async () => {
    const store = mkdtempSync(join(tmpdir(), 'sessile-guards-'));
    const guardsDirectory = join(store, '.guards');
    const guards = hostGuardsIn(guardsDirectory);
    try {
      expect(await guards.run(join(store, 'record'), async () => 'first')).toBe('first');
      rmSync(guardsDirectory, { recursive: true });
      expect(await guards.run(join(store, 'record'), async () => 'again')).toBe('again');
      expect(existsSync(guardsDirectory)).toBe(true);
    } finally {
      await guards.close();
    }
    // A new instance (a store opened before its directory was deleted) brings nothing back.
    const late = hostGuardsIn(guardsDirectory);
    rmSync(store, { recursive: true });
    await expect(late.run(join(store, 'record'), async () => 'never')).rejects.toMatchObject({
      code: 'ENOENT',
    });
    await late.close();
    expect(existsSync(store)).toBe(false);
  });

  it('gives up on a guard a live holder keeps past the wait with ERR_STORE_BUSY, naming the directory', async () => {
    const store = mkdtempSync(join(tmpdir(), 'sessile-guards-'));
    const guardsDirectory = join(store, '.guards');
    // Two instances stand for two processes; a short staleMs keeps the wait (3 × staleMs + 5 s) short.
    const options = { staleMs: 200, fileMode: 0o600, directoryMode: 0o700, fs: syncLockFileSystem };
    const holder = new HostGuards({ directory: guardsDirectory, ...options });
    const waiter = new HostGuards({ directory: guardsDirectory, ...options });
    let release = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    let entered = () => {};
    const holding = new Promise<void>((resolve) => (entered = resolve));
    try {
      const held = holder.run(join(store, 'record'), async () => {
        entered();
        await released;
      });
      await holding;
      await expect(waiter.run(join(store, 'record'), async () => 'never')).rejects.toMatchObject({
        code: 'ERR_STORE_BUSY',
        message: expect.stringContaining(store),
      });
      release();
      await held;
      expect(await waiter.run(join(store, 'record'), async () => 'after')).toBe('after');
    } finally {
      release();
      await holder.close();
      await waiter.close();
      rmSync(store, { recursive: true, force: true });
    }
  });

  it('ends a wait for a guard a live holder keeps with ERR_STORE_CLOSED once acquiring stops, and still takes a guard freed meanwhile', async () => {
    const store = mkdtempSync(join(tmpdir(), 'sessile-guards-'));
    const guardsDirectory = join(store, '.guards');
    const holder = hostGuardsIn(guardsDirectory);
    const waiter = hostGuardsIn(guardsDirectory);
    let release = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    let entered = () => {};
    const holding = new Promise<void>((resolve) => (entered = resolve));
    let enteredOther = () => {};
    const holdingOther = new Promise<void>((resolve) => (enteredOther = resolve));
    try {
      const held = holder.run(join(store, 'record'), async () => {
        entered();
        await new Promise(() => {});
      });
      held.catch(() => {});
      const heldBriefly = holder.run(join(store, 'other'), async () => {
        enteredOther();
        await released;
      });
      await holding;
      await holdingOther;
      const kept = waiter.run(join(store, 'record'), async () => 'never');
      const freed = waiter.run(join(store, 'other'), async () => 'taken');
      waiter.stopAcquiring();
      release();
      await heldBriefly;
      await expect(kept).rejects.toMatchObject({
        code: 'ERR_STORE_CLOSED',
        message: expect.stringContaining(store),
      });
      expect(await freed).toBe('taken');
    } finally {
      release();
      await waiter.close();
      await holder.close();
      rmSync(store, { recursive: true, force: true });
    }
  });

  it("a store's close() ends a write's wait for a guard another process keeps: the write rejects with ERR_STORE_CLOSED", async () => {
    const store = mkdtempSync(join(tmpdir(), 'sessile-guards-'));
    const guardsDirectory = join(store, '.guards');
    // The store's own guards, wired as the file store wires them: through its lease files.
    const guards = new HostGuards({
      directory: guardsDirectory,
      staleMs: 200,
      fileMode: 0o600,
      directoryMode: 0o700,
      fs: syncLockFileSystem,
    });
    const leases = new LeaseFiles({
      guards,
      fs: syncLockFileSystem,
      fileMode: 0o600,
      directoryMode: 0o700,
      pathOf: (key) => join(store, '.locks', key),
    });
    const record = join(store, 'record');
    class GuardedStore extends MemoryStore {
      override readonly locks = new LeaseLocks(leases, { location: store });
      protected override _set(
        id: string,
        value: SessionRecord,
        only: 'absent' | 'present' | undefined,
        now: number,
      ) {
        return guards.run(record, async () => super._set(id, value, only, now));
      }
    }
    const other = hostGuardsIn(guardsDirectory);
    let entered = () => {};
    const holding = new Promise<void>((resolve) => (entered = resolve));
    const held = other.run(record, async () => {
      entered();
      await new Promise(() => {});
    });
    held.catch(() => {});
    const sessions = new GuardedStore();
    try {
      await holding;
      const write = sessions.set('a'.repeat(32), {
        data: new Uint8Array([1]),
        expiresAt: Date.now() + 60_000,
      });
      await sessions.close();
      await expect(write).rejects.toMatchObject({ code: 'ERR_STORE_CLOSED' });
    } finally {
      await sessions.close();
      await other.close();
      rmSync(store, { recursive: true, force: true });
    }
  });

  it('makes no holder file once closed: a guard asked for after close() is refused and nothing is left heartbeating', async () => {
    const store = mkdtempSync(join(tmpdir(), 'sessile-guards-'));
    const guardsDirectory = join(store, '.guards');
    const guards = hostGuardsIn(guardsDirectory);
    try {
      expect(await guards.run(join(store, 'record'), async () => 'open')).toBe('open');
      // Closing while a guard is asked for, and asking after: neither leaves a holder behind.
      const racing = guards.run(join(store, 'other'), async () => 'raced').catch((e) => e.code);
      await guards.close();
      expect(['raced', 'ERR_STORE_CLOSED']).toContain(await racing);
      await expect(guards.run(join(store, 'record'), async () => 'late')).rejects.toMatchObject({
        code: 'ERR_STORE_CLOSED',
      });
      expect(readdirSync(guardsDirectory)).toEqual([]);
    } finally {
      rmSync(store, { recursive: true, force: true });
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
