import { createHash } from 'node:crypto';
import {
  isSessionError,
  type SessionLock,
  type SessionRecord,
  type SessionStore,
} from '@sessile/core';
import type { Ledger, LedgerEntry } from './ledger.js';
import { forEachConcurrently } from './pool.js';

/** What a run with `--ledger` did to sessions an earlier run brought over. */
export interface ReconciledCounts {
  /** On the source as an earlier run brought it over; left as it is. */
  unchanged: number;
  /** Gone from the source (a logout, a revocation, expired) and deleted from the target. */
  deleted: number;
  /**
   * Changed on the source and written again to the target: where the target holds what a run
   * wrote, or that renewed by the new app (its data as written, a later expiry, which is kept).
   */
  updated: number;
  /** Due one of those, but the target no longer holds what the run wrote: the new app's now. */
  keptChanged: number;
}

export function newReconciled(): ReconciledCounts {
  return { unchanged: 0, deleted: 0, updated: 0, keptChanged: 0 };
}

/** A record as a store holds it: its bytes, its expiry and its owner. */
export function recordFingerprint(record: SessionRecord): string {
  const owner = record.owner === undefined ? '' : JSON.stringify(record.owner);
  return createHash('sha256')
    .update(`${record.expiresAt}\n${owner}\n`)
    .update(record.data)
    .digest('base64url');
}

/**
 * A record's bytes and owner without its expiry: what a touch (a read-only request renewing
 * the session) leaves as it was. Never equal to a `recordFingerprint`.
 */
export function dataFingerprint(record: SessionRecord): string {
  const owner = record.owner === undefined ? '' : JSON.stringify(record.owner);
  return createHash('sha256').update(`data\n${owner}\n`).update(record.data).digest('base64url');
}

/** The ledger's fingerprints of a record a run writes to the target, from the source's `source`. */
export function writtenFingerprints(record: SessionRecord, source: string): Required<LedgerEntry> {
  return { target: recordFingerprint(record), source, targetData: dataFingerprint(record) };
}

/** A peer's session as read: its JSON text and the expiry the peer gave it. */
export function textFingerprint(text: string, expiresAt: number | undefined): string {
  return createHash('sha256')
    .update(`${expiresAt ?? ''}\n${text}`)
    .digest('base64url');
}

export type Reconcile =
  | { kind: 'delete' }
  | { kind: 'update'; record: SessionRecord; source: string };

/**
 * Deletes or rewrites `id` on the target, holding the target's lock on it so a request of the
 * new app on that session cannot interleave. A delete only while the target still holds exactly
 * the record the ledger's fingerprint `written.target` describes: a record the new app changed,
 * renewed or ended is the new app's (a renewed one may be a user still active there). An update
 * also where the new app only renewed it (`written.targetData`: the data as written, another
 * expiry): the source's change is the session's latest data, written with the later expiry. A
 * record the new app saved or ended is left as it is.
 */
export async function reconcile(
  target: SessionStore,
  ledger: Ledger,
  id: string,
  written: LedgerEntry,
  action: Reconcile,
  counts: ReconciledCounts,
  dryRun: boolean,
): Promise<void> {
  let lock: SessionLock | undefined;
  if (!dryRun) {
    try {
      lock = await target.locks.acquire(id);
    } catch (error) {
      // A request of the new app has held it all the wait: the session is in use there, so it
      // is the new app's, and the run goes on with the rest.
      if (!isSessionError(error, 'ERR_LOCK_TIMEOUT')) throw error;
      counts.keptChanged++;
      return;
    }
  }
  try {
    const current = await target.get(id);
    const asWritten = current !== undefined && recordFingerprint(current) === written.target;
    const renewed =
      !asWritten &&
      current !== undefined &&
      action.kind === 'update' &&
      written.targetData !== undefined &&
      dataFingerprint(current) === written.targetData;
    if (current === undefined || !(asWritten || renewed)) {
      counts.keptChanged++;
      return;
    }
    if (action.kind === 'delete') {
      if (lock !== undefined) await target.delete(id, { lock });
      counts.deleted++;
      return;
    }
    const record = renewed
      ? { ...action.record, expiresAt: Math.max(action.record.expiresAt, current.expiresAt) }
      : action.record;
    if (lock !== undefined) {
      // Revoked by the new app since the read (a delete takes no lock): its logout stands.
      if (!(await target.set(id, record, { only: 'present', lock }))) {
        counts.keptChanged++;
        return;
      }
      await ledger.record(id, writtenFingerprints(record, action.source));
    }
    counts.updated++;
  } finally {
    await lock?.release();
  }
}

async function* each<T>(items: readonly T[]): AsyncIterable<T> {
  yield* items;
}

/**
 * After a whole pass over the source: deletes from the target each session an earlier run
 * brought over that the pass did not find live on the source (`seen`), where the target still
 * holds what the run wrote. `stillLive` asks the source once more before a delete, where it can.
 */
export async function deleteGone(
  target: SessionStore,
  ledger: Ledger,
  seen: ReadonlySet<string>,
  stillLive: (id: string) => Promise<boolean>,
  concurrency: number,
  signal: AbortSignal,
  counts: ReconciledCounts,
  dryRun: boolean,
): Promise<{ interrupted: boolean }> {
  const gone: { id: string; written: LedgerEntry }[] = [];
  // Listed first, then deleted: a store need not list ids while its records are deleted.
  for await (const id of target.ids()) {
    const written = ledger.entry(id);
    if (written?.target !== undefined && !seen.has(id)) gone.push({ id, written });
  }
  return forEachConcurrently(each(gone), concurrency, signal, async ({ id, written }) => {
    if (await stillLive(id)) return;
    await reconcile(target, ledger, id, written, { kind: 'delete' }, counts, dryRun);
  });
}
