import type { SessionRecord, SessionStore } from '@sessile/core';
import { isSessionError } from '@sessile/core';
import { sameRecord } from './workload.js';

/** Concurrent reads a check keeps in flight: a server store answers them in parallel. */
export const CHECK_CONCURRENCY = 16;

/** Runs `each` over `items`, at most `limit` at a time. */
export async function forEachLimited<T>(
  items: Iterable<T>,
  limit: number,
  each: (item: T) => Promise<void>,
): Promise<void> {
  const iterator = items[Symbol.iterator]();
  const worker = async () => {
    for (let next = iterator.next(); !next.done; next = iterator.next()) await each(next.value);
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

export function describeRecord(record: SessionRecord | undefined): string {
  if (record === undefined) return 'absent';
  const header = new TextDecoder().decode(record.data.subarray(0, 24)).replace(/[^ -~]/g, '.');
  return `${header}… (${record.data.length} bytes, expiresAt ${record.expiresAt})`;
}

export interface SurvivorCheck {
  /** Records found, by id (what is absent is left out). */
  present: Map<string, SessionRecord>;
  /** Records that differ from every allowed state. */
  lost: number;
  corrupt: number;
  failures: string[];
}

/**
 * Reads every record earlier rounds left and compares it with what they left. `mayBeGone`:
 * a clear() ran (or may have run) since, so absent is allowed too; `gone`: it finished.
 */
export async function verifySurvivors(
  store: SessionStore,
  survivors: Map<string, SessionRecord>,
  state: 'kept' | 'mayBeGone' | 'gone',
): Promise<SurvivorCheck> {
  const result: SurvivorCheck = { present: new Map(), lost: 0, corrupt: 0, failures: [] };
  await forEachLimited(survivors, CHECK_CONCURRENCY, async ([id, expected]) => {
    const candidates =
      state === 'gone' ? [undefined] : state === 'mayBeGone' ? [expected, undefined] : [expected];
    let actual: SessionRecord | undefined;
    try {
      actual = await store.get(id);
    } catch (error) {
      if (isSessionError(error) && error.code === 'ERR_CORRUPT_RECORD') result.corrupt++;
      result.failures.push(`earlier round's ${id}: ${String(error)}`);
      return;
    }
    if (actual !== undefined) result.present.set(id, actual);
    if (candidates.some((candidate) => sameRecord(actual, candidate))) return;
    result.lost++;
    result.failures.push(
      `earlier round's ${id}: found ${describeRecord(actual)}, expected ${describeRecord(expected)}`,
    );
  });
  return result;
}
