import { type ChildProcess, fork } from 'node:child_process';
import { copyFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  generateSessionId,
  isSessionError,
  manual,
  SessionManager,
  type SessionRecord,
} from '@sessile/core';
import { describe, expect, it } from 'vitest';
import { DbmStore, sessionStripe } from '../src/index.js';
import { useTestPaths } from './helpers.js';

const { newPath, children } = useTestPaths('replaced');

function recordOf(text: string): SessionRecord {
  return { data: new TextEncoder().encode(text), expiresAt: Date.now() + 3_600_000 };
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'ok';
  } catch (error) {
    return isSessionError(error) ? error.code : String(error);
  }
}

function spawn(script: string, args: string[]): ChildProcess {
  const child = fork(fileURLToPath(new URL(`./fixtures/${script}`, import.meta.url)), args, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.push(child);
  return child;
}

/** The first message of `type` the child sends; rejects on its error message or early exit. */
function messageOf<T>(child: ChildProcess, type: string): Promise<T> {
  return new Promise((resolve, reject) => {
    child.on('message', (message: { type: string; message?: string }) => {
      if (message.type === 'error') reject(new Error(`child failed: ${message.message}`));
      if (message.type === type) resolve(message as T);
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`child exited before sending ${type} (${code ?? signal})`)),
    );
  });
}

/** The ids another process finds in the file at `path`. */
async function idsSeenElsewhere(path: string): Promise<string[]> {
  const { ids } = await messageOf<{ ids: string[] }>(spawn('list-ids.mjs', [path]), 'ids');
  return ids.sort();
}

describe('DbmStore files replaced while it runs', () => {
  it('follows a file renamed over its path (a restore from backup): its writes land where other processes look', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path });
    try {
      const kept = generateSessionId();
      await store.set(kept, recordOf('kept'));
      copyFileSync(path, `${path}.backup`);
      const undone = generateSessionId();
      await store.set(undone, recordOf('undone'));
      // The restore: a copy of the backup, renamed over the live file.
      copyFileSync(`${path}.backup`, `${path}.restoring`);
      renameSync(`${path}.restoring`, path);

      expect(await store.get(undone)).toBeUndefined();
      expect(await store.get(kept)).toBeDefined();
      const later = generateSessionId();
      await store.set(later, recordOf('later'));
      expect(await idsSeenElsewhere(path)).toEqual([kept, later].sort());
    } finally {
      await store.close();
    }
  }, 60_000);

  it('makes the file again when it was removed, as an open would', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path });
    try {
      await store.set(generateSessionId(), recordOf('gone'));
      rmSync(path);
      expect(await store.count()).toBe(0);
      const id = generateSessionId();
      await store.set(id, recordOf('new'));
      expect(await idsSeenElsewhere(path)).toEqual([id]);
    } finally {
      await store.close();
    }
  }, 60_000);

  it('rejects with ERR_STORE_IO naming the path while a file that is not a dbm file is in its place', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path });
    try {
      const id = generateSessionId();
      await store.set(id, recordOf('before'));
      writeFileSync(`${path}.other`, 'not a database, but some other program’s file\n'.repeat(200));
      renameSync(`${path}.other`, path);
      const error = await store.get(id).then(
        () => undefined,
        (failure: unknown) => failure,
      );
      expect(isSessionError(error, 'ERR_STORE_IO')).toBe(true);
      expect((error as Error).message).toContain(path);
      expect((error as Error).message).not.toContain(id);
      expect(await codeOf(store.set(id, recordOf('after')))).toBe('ERR_STORE_IO');
    } finally {
      await store.close();
    }
  });

  it('a removed lock directory: the locks held in it are lost, and its stripe count is recorded again', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path, stripes: 64 });
    try {
      const id = generateSessionId();
      const lock = await store.locks.acquire(id, { leaseMs: 60_000 });
      rmSync(`${path}.locks`, { recursive: true, force: true });
      // Nothing holds the session's lock for another process now: its lease file is gone.
      const holder = spawn('lock-holder.mjs', [path, id, '64']);
      await messageOf(holder, 'held');
      expect(await codeOf(store.set(id, recordOf('stale'), { lock }))).toBe('ERR_LOCK_LOST');

      rmSync(`${path}.locks`, { recursive: true, force: true });
      expect(await store.get(id)).toBeUndefined();
      // The count is on record again: another count would put one session's lock in two files.
      const other = DbmStore.open({ path, stripes: 8 });
      expect(await codeOf(other)).toBe('ERR_STORE_IO');
      await other.then((opened) => opened.close()).catch(() => {});
    } finally {
      await store.close();
    }
  }, 60_000);

  it('a removed lock directory: the next session lock is taken at once, and another instance waits for it', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path, stripes: 64 });
    const other = await DbmStore.open({ path, stripes: 64 });
    try {
      const id = generateSessionId();
      await (await store.locks.acquire(id)).release();
      rmSync(`${path}.locks`, { recursive: true, force: true });
      // No operation on the file first: the session lock's own claim makes the directory again.
      const lock = await store.locks.acquire(id, { leaseMs: 60_000, waitMs: 0 });
      expect(await codeOf(other.locks.acquire(id, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
      await lock.release();
      await (await other.locks.acquire(id, { waitMs: 0 })).release();
    } finally {
      await other.close();
      await store.close();
    }
  }, 60_000);

  it('a removed lock directory: a locked request whose lock was taken in the new one commits', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path, stripes: 64 });
    const other = await DbmStore.open({ path, stripes: 64 });
    const manager = new SessionManager<{ visits?: number }>({ store, cleanup: manual() });
    try {
      const first = await manager.open(undefined);
      first.data.visits = 1;
      expect(await first.commit()).toBe('saved');
      rmSync(`${path}.locks`, { recursive: true, force: true });
      // The request's lock is the first claim after the removal, before any hold of the global lock.
      const request = await manager.open(first.id);
      expect(await codeOf(other.locks.acquire(first.id, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
      request.data.visits = 2;
      expect(await request.commit()).toBe('saved');
      const reread = await manager.open(first.id);
      expect(reread.data.visits).toBe(2);
      expect(await reread.commit()).toBe('unchanged');
      expect(await idsSeenElsewhere(path)).toEqual([first.id]);
    } finally {
      await manager.close();
      await other.close();
      await store.close();
    }
  }, 60_000);

  it('a removed lock directory: a lock held in it stays lost, and its end frees nothing another process took since', async () => {
    const path = newPath();
    const stripes = 64;
    const store = await DbmStore.open({ path, stripes });
    const other = await DbmStore.open({ path, stripes });
    try {
      const taken = generateSessionId();
      let untaken = generateSessionId();
      while (sessionStripe(untaken, stripes) === sessionStripe(taken, stripes)) {
        untaken = generateSessionId();
      }
      const lock = await store.locks.acquire(taken, { leaseMs: 60_000 });
      const unclaimed = await store.locks.acquire(untaken, { leaseMs: 60_000 });
      rmSync(`${path}.locks`, { recursive: true, force: true });
      const holder = spawn('lock-holder.mjs', [path, taken, String(stripes)]);
      await messageOf(holder, 'held');
      expect(await codeOf(store.set(taken, recordOf('stale'), { lock }))).toBe('ERR_LOCK_LOST');
      // Nobody took this one, but its lease file went: another process could have.
      expect(await codeOf(store.set(untaken, recordOf('stale'), { lock: unclaimed }))).toBe(
        'ERR_LOCK_LOST',
      );
      expect(await codeOf(lock.release())).toBe('ERR_LOCK_LOST');
      // The other process's lease on the stripe still holds, for this instance and the next.
      expect(await codeOf(other.locks.acquire(taken, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
      expect(await codeOf(store.locks.acquire(taken, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
      expect(await store.get(taken)).toBeUndefined();
    } finally {
      await other.close();
      await store.close();
    }
  }, 60_000);
});
