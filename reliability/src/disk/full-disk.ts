import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isSessionError, type SessionRecord, type SessionStore } from '@sessile/core';
import { describeOutcome, readOutcome, sameRecord } from '../fuzz/common.js';
import type { CheckOutcome } from '../results.js';
import type { StoreSpec } from '../stores.js';
import { mountTmpfs } from './mount.js';

/** The stores that keep their data on a filesystem. */
export const DISK_STORES = ['sqlite-normal', 'sqlite-full', 'level', 'file', 'dbm'];

const DISK_BYTES = 24 * 1024 * 1024;
/**
 * A file beside the store, deleted to free space once the disk is full: enough for LevelStore,
 * which reopens LevelDB underneath only once its logs plus 1 MiB fit.
 */
const BALLAST_BYTES = 10 * 1024 * 1024;
const FILL_BYTES = 8192;
const MAX_FILL_WRITES = 20_000;

/** Random bytes, so that LevelDB's compression cannot shrink them. */
function record(n: number, bytes: number): SessionRecord {
  return { data: new Uint8Array(randomBytes(bytes)), expiresAt: Date.now() + 86_400_000 + n };
}

function id(kind: string, n: number): string {
  return `disk-${kind}-session-${String(n).padStart(6, '0')}`;
}

/** Reads every record back; returns the failures. */
async function verify(
  store: SessionStore,
  written: Map<string, SessionRecord>,
  when: string,
): Promise<string[]> {
  const failures: string[] = [];
  for (const [key, expected] of written) {
    const outcome = await readOutcome(store, key);
    if (outcome.kind !== 'record' || !sameRecord(outcome.record, expected)) {
      failures.push(`${when}: ${key} read as ${describeOutcome(outcome)}`);
      if (failures.length > 5) break;
    }
  }
  return failures;
}

/**
 * Fills a tmpfs under one store: writes must fail with ERR_STORE_IO, earlier sessions stay
 * readable, writes succeed again once space is freed (same store instance), and a reopen finds
 * every acknowledged record intact.
 */
export async function fullDisk(spec: StoreSpec): Promise<CheckOutcome> {
  const outcome: CheckOutcome = {
    name: `${spec.name}: full disk`,
    cases: 0,
    failures: [],
    notes: [],
  };
  const mounted = await mountTmpfs(DISK_BYTES);
  if (typeof mounted === 'string') return { ...outcome, skipped: mounted };
  const written = new Map<string, SessionRecord>();
  const fail = (message: string) => outcome.failures.push(message);
  try {
    await writeFile(join(mounted.path, 'ballast'), new Uint8Array(BALLAST_BYTES));
    const dir = join(mounted.path, 'store');
    await mkdir(dir);
    let store = await spec.open(dir);
    try {
      for (let n = 0; n < 50; n++) {
        const value = record(n, 1024);
        await store.set(id('early', n), value);
        written.set(id('early', n), value);
      }
      let full = false;
      for (let n = 0; n < MAX_FILL_WRITES && !full; n++) {
        const value = record(n, FILL_BYTES);
        outcome.cases++;
        try {
          await store.set(id('fill', n), value);
          written.set(id('fill', n), value);
        } catch (error) {
          full = true;
          if (!isSessionError(error) || error.code !== 'ERR_STORE_IO') {
            fail(`a write on the full disk rejected with ${String(error)}, not ERR_STORE_IO`);
          } else {
            outcome.notes?.push(
              `full after ${n} writes of ${FILL_BYTES >> 10} KiB: ${error.message.slice(0, 140)}`,
            );
          }
        }
      }
      if (!full)
        fail(
          `${MAX_FILL_WRITES} writes of ${FILL_BYTES >> 10} KiB never filled an ${DISK_BYTES >> 20} MiB disk`,
        );
      for (const message of await verify(store, written, 'disk full')) fail(message);
      await rm(join(mounted.path, 'ballast'));
      for (let n = 0; n < 20; n++) {
        const value = record(n, 1024);
        try {
          await store.set(id('after', n), value);
          written.set(id('after', n), value);
        } catch (error) {
          fail(
            `write ${n} after freeing ${BALLAST_BYTES >> 20} MiB, same instance: ${String(error)}`,
          );
          break;
        }
      }
      for (const message of await verify(store, written, 'space freed')) fail(message);
    } finally {
      await store.close().catch((error) => fail(`close: ${String(error)}`));
    }
    store = await spec.open(dir);
    try {
      for (const message of await verify(store, written, 'reopened')) fail(message);
      const count = await store.count();
      if (count !== written.size)
        fail(`reopened: count() is ${count}, ${written.size} were acknowledged`);
    } finally {
      await store.close();
    }
  } catch (error) {
    fail(`unexpected: ${String(error)}`);
  } finally {
    await mounted.unmount().catch((error) => fail(`umount: ${String(error)}`));
  }
  return outcome;
}
