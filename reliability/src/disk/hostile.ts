import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isSessionError, type SessionStore } from '@sessile/core';
import type { CheckOutcome } from '../results.js';
import type { StoreSpec } from '../stores.js';
import { type Mounted, mountTmpfs } from './mount.js';

/** An operation that takes longer than this counts as a hang. */
const HANG_MS = 15_000;
const RECORD = () => ({ data: new Uint8Array([1, 2, 3]), expiresAt: Date.now() + 3_600_000 });
const KNOWN = 'hostile-known-session-0001';

/**
 * What one call gave: ok, a SessionError code, anything else, or no answer. With `path`, an
 * ERR_STORE_IO whose message does not name it is `unnamed: …` (a user cannot tell what failed).
 */
export async function attempt(call: () => Promise<unknown>, path?: string): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve('hang'), HANG_MS);
  });
  const settled = (async () => {
    try {
      await call();
      return 'ok';
    } catch (error) {
      if (!isSessionError(error)) return `other: ${String(error).slice(0, 160)}`;
      if (path !== undefined && error.code === 'ERR_STORE_IO' && !error.message.includes(path))
        return `unnamed: ${error.message.slice(0, 160)}`;
      return error.code;
    }
  })();
  try {
    return await Promise.race([settled, hang]);
  } finally {
    clearTimeout(timer);
  }
}

/** Every kind of call a store takes, each with its outcome (see `attempt` for `path`). */
export async function battery(
  store: SessionStore,
  tag: string,
  path?: string,
): Promise<Map<string, string>> {
  const outcomes = new Map<string, string>();
  const fresh = `hostile-${tag}-session-0001`;
  const calls: [string, () => Promise<unknown>][] = [
    ['get', () => store.get(KNOWN)],
    ['set', () => store.set(fresh, RECORD())],
    ['set present', () => store.set(KNOWN, RECORD(), { only: 'present' })],
    ['touch', () => store.touch(KNOWN, Date.now() + 7_200_000)],
    ['count', () => store.count()],
    [
      'ids',
      async () => {
        for await (const _ of store.ids());
      },
    ],
    ['sweep', () => store.sweep({ limit: 100 })],
    [
      'lock',
      async () => {
        const lock = await store.locks.acquire(`hostile-lock-${tag}-0001`, {
          waitMs: 2000,
          leaseMs: 2000,
        });
        await lock.release();
      },
    ],
    ['delete', () => store.delete(fresh)],
  ];
  for (const [name, call] of calls) outcomes.set(name, await attempt(call, path));
  return outcomes;
}

export function judge(outcome: CheckOutcome, when: string, outcomes: Map<string, string>): void {
  const summary: string[] = [];
  for (const [name, result] of outcomes) {
    outcome.cases++;
    summary.push(`${name} ${result}`);
    if (result === 'hang' || result.startsWith('other') || result.startsWith('unnamed'))
      outcome.failures.push(`${when}: ${name} gave ${result}`);
  }
  outcome.notes?.push(`${when}: ${summary.join(', ')}`);
}

async function onTmpfs(
  name: string,
  body: (mounted: Mounted, outcome: CheckOutcome) => Promise<void>,
): Promise<CheckOutcome> {
  const outcome: CheckOutcome = { name, cases: 0, failures: [], notes: [] };
  const mounted = await mountTmpfs(64 * 1024 * 1024);
  if (typeof mounted === 'string') return { ...outcome, skipped: mounted };
  try {
    await body(mounted, outcome);
  } catch (error) {
    outcome.failures.push(`unexpected: ${String(error)}`);
  } finally {
    await mounted.remount('rw').catch(() => {});
    await mounted.unmount().catch((error) => outcome.failures.push(`umount: ${String(error)}`));
  }
  return outcome;
}

/** The filesystem turns read-only under an open store, then writable again. */
export function readOnlyMidRun(spec: StoreSpec): Promise<CheckOutcome> {
  return onTmpfs(`${spec.name}: filesystem read-only mid-run`, async (mounted, outcome) => {
    const dir = join(mounted.path, 'store');
    await mkdir(dir);
    const store = await spec.open(dir);
    try {
      await store.set(KNOWN, RECORD());
      try {
        await mounted.remount('ro');
      } catch (error) {
        const reason = String((error as { stderr?: string }).stderr ?? error).split('\n')[0];
        outcome.skipped = `the kernel refuses a read-only remount while the store holds files open for writing (${reason?.trim()})`;
        return;
      }
      const readOnly = await battery(store, 'ro');
      judge(outcome, 'read-only', readOnly);
      if (readOnly.get('set') === 'ok') {
        outcome.failures.push(
          'read-only: set resolved, so it acknowledged a write it could not make',
        );
      }
      await mounted.remount('rw');
      let writable = await battery(store, 'rw');
      // A store may need one failed call to notice that the filesystem is back.
      if ([...writable.values()].some((result) => result !== 'ok'))
        writable = await battery(store, 'rw2');
      judge(outcome, 'writable again', writable);
      for (const [name, result] of writable) {
        if (result !== 'ok') outcome.failures.push(`writable again: ${name} still gave ${result}`);
      }
    } finally {
      await store.close().catch((error) => outcome.failures.push(`close: ${String(error)}`));
    }
  });
}

/** Opening a store on a filesystem that is read-only from the start. */
export function openReadOnly(spec: StoreSpec): Promise<CheckOutcome> {
  return onTmpfs(`${spec.name}: open on a read-only filesystem`, async (mounted, outcome) => {
    const dir = join(mounted.path, 'store');
    await mkdir(dir);
    await mounted.remount('ro');
    outcome.cases++;
    let store: SessionStore;
    try {
      store = await spec.open(dir);
    } catch (error) {
      if (!isSessionError(error))
        outcome.failures.push(`open threw ${String(error)}, not a SessionError`);
      else if (!error.message.includes(mounted.path)) {
        outcome.failures.push(`open's error does not name the path: ${error.message}`);
      }
      outcome.notes?.push(
        `open rejected: ${isSessionError(error) ? error.code : ''} ${String(error).slice(0, 160)}`,
      );
      return;
    }
    outcome.notes?.push('open resolved');
    judge(outcome, 'opened read-only', await battery(store, 'ro'));
    await store.close().catch((error) => outcome.failures.push(`close: ${String(error)}`));
  });
}

/** The store's directory is deleted while the store is open. */
export function deletedUnderneath(spec: StoreSpec): Promise<CheckOutcome> {
  return onTmpfs(`${spec.name}: directory deleted underneath`, async (mounted, outcome) => {
    const dir = join(mounted.path, 'store');
    await mkdir(dir);
    const store = await spec.open(dir);
    try {
      await store.set(KNOWN, RECORD());
      await rm(dir, { recursive: true, force: true });
      const outcomes = await battery(store, 'gone');
      judge(outcome, 'deleted', outcomes);
      if (outcomes.get('set') === 'ok') {
        outcome.failures.push(
          'set resolved after the directory was deleted: the write went to a deleted file, which no later open can find',
        );
      }
    } finally {
      const closed = await attempt(() => store.close());
      if (closed === 'hang' || closed.startsWith('other'))
        outcome.failures.push(`close gave ${closed}`);
    }
  });
}
