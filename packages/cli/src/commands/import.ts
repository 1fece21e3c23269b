import { isSessionId } from '@sessile/core';
import { encodeLibrarySession, MAX_DATE_MS } from '@sessile/core/store';
import { parseStoreAddress, sameStore } from '../addresses.js';
import { codecFromEnvironment } from '../codec.js';
import { type ExitCode, usageError } from '../exit-codes.js';
import { openLedger } from '../ledger.js';
import { maskId } from '../output.js';
import {
  type PeerOptions,
  type PeerSession,
  type PeerSource,
  parsePeerAddress,
} from '../peers/index.js';
import { forEachConcurrently } from '../pool.js';
import { Progress, progressShown } from '../progress.js';
import {
  deleteGone,
  newReconciled,
  reconcile,
  textFingerprint,
  writtenFingerprints,
} from '../reconcile.js';
import { checkTarget, interruptSignal, withTarget } from '../store-session.js';
import {
  newCounts,
  reportTransfer,
  type TransferOptions,
  transferStopped,
  writeRecord,
} from './copy.js';

export interface ImportOptions extends TransferOptions, PeerOptions {
  from: string;
  /** Lifetime of a session the peer keeps with no expiry. */
  defaultTtlMs: number;
}

/**
 * `sessile import --from PEER --to URL`: reads a peer store's native data and writes sessile
 * records that express-session, through `toExpressStore`, reads back as the same sessions.
 */
export async function importSessions(options: ImportOptions): Promise<ExitCode> {
  const codec = codecFromEnvironment();
  const from = parsePeerAddress(options.from, options);
  const to = parseStoreAddress(options.to);
  // Before either is opened: LevelDB would call its own directory "locked by another process".
  if (await sameStore(from.place, to)) {
    throw usageError(
      `--from and --to name the same store (${to.path === undefined ? to.display : to.identity}): an import cannot write into the data it reads; give --to another store`,
    );
  }
  const checked = await checkTarget(to, options.dryRun);
  const ledger = await openLedger(options.ledger, Boolean(options.dryRun));
  let peer: PeerSource;
  try {
    peer = await from.open();
  } catch (error) {
    await ledger.close();
    throw error;
  }
  const interrupt = interruptSignal();
  try {
    return await withTarget(checked, options, async (target, to) => {
      const counts = newCounts();
      const reconciled = newReconciled();
      // Sessions in the ledger found live on the peer; the others have ended there.
      const seen = new Set<string>();
      const dryRun = Boolean(options.dryRun);
      const invalidIds: string[] = [];
      const unreadable: { id: string; problem: string }[] = [];
      const shown = progressShown(options.json);
      const progress = new Progress('import', shown ? await peer.count() : undefined, shown);
      const summary = () => ({
        from: peer.display,
        to: to.display,
        codec: codec.name,
        dryRun: Boolean(options.dryRun),
        overwrite: Boolean(options.overwrite),
        counts: {
          ...counts,
          invalidId: invalidIds.length,
          ...(options.ledger === undefined
            ? {}
            : { inLedger: counts.inLedger ?? 0, reconciled: { ...reconciled } }),
        },
        invalidIds,
        unreadable,
      });
      /** The sessions left out, one line each; `--json` lists them in its document instead. */
      const reportSkipped = (): void => {
        if (options.json) return;
        for (const id of invalidIds) {
          process.stderr.write(`skipped ${id}: not a valid sessile id, left as it is\n`);
        }
        for (const { id, problem } of unreadable) {
          process.stderr.write(`skipped ${id}: ${problem}\n`);
        }
      };
      let outcome: { interrupted: boolean };
      try {
        outcome = await forEachConcurrently(
          peer.sessions(),
          options.concurrency,
          interrupt.signal,
          async (entry) => {
            progress.increment();
            if (!isSessionId(entry.id)) {
              // Never altered: a changed id would not match the user's cookie anyway.
              invalidIds.push(maskId(entry.id));
              return;
            }
            const inLedger = ledger.entry(entry.id);
            if (inLedger !== undefined) {
              // Never written as new: the new app may have deleted it (a logout) since.
              counts.inLedger = (counts.inLedger ?? 0) + 1;
              counts.read++;
              if (inLedger.target === undefined) return;
              if (entry.session === undefined) {
                // Unreadable is not ended: it is left as the target has it.
                if (entry.problem !== undefined) seen.add(entry.id);
                return;
              }
              const now = Date.now();
              const expiresAt = importExpiry(entry.expiresAt, now, options.defaultTtlMs);
              if (expiresAt <= now) return;
              seen.add(entry.id);
              const read = sourceFingerprint(entry);
              if (read === inLedger.source) {
                reconciled.unchanged++;
                return;
              }
              if (!Number.isFinite(expiresAt)) return;
              let data: Uint8Array;
              try {
                data = encodeLibrarySession(codec, entry.id, entry.session, now);
              } catch {
                return;
              }
              const action = { kind: 'update', record: { data, expiresAt }, source: read } as const;
              await reconcile(target, ledger, entry.id, inLedger, action, reconciled, dryRun);
              return;
            }
            if (entry.session === undefined) {
              if (entry.problem === undefined) counts.expired++;
              else {
                counts.unreadable++;
                unreadable.push({ id: maskId(entry.id), problem: entry.problem });
              }
              return;
            }
            counts.read++;
            const now = Date.now();
            const expiresAt = importExpiry(entry.expiresAt, now, options.defaultTtlMs);
            // Before the finite check: an expiry of -Infinity is expired, not unreadable.
            if (expiresAt <= now) {
              counts.expired++;
              return;
            }
            if (!Number.isFinite(expiresAt)) {
              // Every reader leaves out what is not finite; this keeps one that did not from
              // ending the whole import as a bad argument.
              counts.unreadable++;
              unreadable.push({
                id: maskId(entry.id),
                problem: 'its expiry is not a finite time',
              });
              return;
            }
            // What @sessile/express's toExpressStore writes for this session, so it reads back identically.
            let data: Uint8Array;
            try {
              data = encodeLibrarySession(codec, entry.id, entry.session, now);
            } catch (error) {
              // Such as data nested too deep to write as JSON again: this session, not the run.
              counts.unreadable++;
              unreadable.push({
                id: maskId(entry.id),
                problem: `cannot be written as a session (${(error as Error).message})`,
              });
              return;
            }
            const record = { data, expiresAt };
            if (await writeRecord(target, entry.id, record, options, counts)) {
              await ledger.record(entry.id, writtenFingerprints(record, sourceFingerprint(entry)));
            } else await ledger.record(entry.id);
          },
        );
        // Only after a whole pass: a session the pass did not reach is not one that ended.
        if (!outcome.interrupted && options.ledger !== undefined) {
          outcome = await deleteGone(
            target,
            ledger,
            seen,
            async () => false,
            options.concurrency,
            interrupt.signal,
            reconciled,
            dryRun,
          );
        }
      } catch (error) {
        progress.stop();
        reportSkipped();
        return transferStopped(error, summary(), options);
      }
      progress.stop();
      reportSkipped();
      return reportTransfer({ ...summary(), interrupted: outcome.interrupted }, options);
    });
  } finally {
    interrupt.dispose();
    await peer.close();
    await ledger.close();
  }
}

/** What the ledger keeps of a peer's session as read, the same on every read until the peer changes it. */
function sourceFingerprint(entry: PeerSession): string {
  return textFingerprint(JSON.stringify(entry.session), entry.storedExpiresAt ?? entry.expiresAt);
}

/**
 * The expiry an imported session gets. A peer that keeps the session for ever, or past the last
 * time a Date can hold (a cookie's maxAge of 1e300): its cookie's expiry may be the login's,
 * stale under rolling sessions, so it lives the default as the README says.
 */
function importExpiry(
  peerExpiresAt: number | undefined,
  now: number,
  defaultTtlMs: number,
): number {
  return peerExpiresAt === undefined ||
    (peerExpiresAt > MAX_DATE_MS && peerExpiresAt < Number.POSITIVE_INFINITY)
    ? now + defaultTtlMs
    : peerExpiresAt;
}
