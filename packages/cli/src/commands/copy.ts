import { isSessionError, SessionError, type SessionRecord, type SessionStore } from '@sessile/core';
import { parseStoreAddress, sameStore } from '../addresses.js';
import { EXIT, type ExitCode, usageError } from '../exit-codes.js';
import { type LedgerEntry, openLedger } from '../ledger.js';
import {
  type CommonOptions,
  maskId,
  printJson,
  printLines,
  RECORD_LIMIT_HINT,
  toCliError,
} from '../output.js';
import { forEachConcurrently } from '../pool.js';
import { Progress, progressShown } from '../progress.js';
import {
  deleteGone,
  newReconciled,
  type ReconciledCounts,
  reconcile,
  recordFingerprint,
  writtenFingerprints,
} from '../reconcile.js';
import {
  checkTarget,
  interruptSignal,
  readRecordToCopy,
  unreadableReason,
  withStore,
  withTarget,
} from '../store-session.js';

export interface TransferOptions extends CommonOptions {
  to: string;
  overwrite?: boolean;
  dryRun?: boolean;
  concurrency: number;
  /** The file of ids earlier runs into this target wrote, which this one skips and adds to. */
  ledger?: string;
}

export interface CopyOptions extends TransferOptions {
  from: string;
}

/** What a copy or an import did, record by record. */
export interface TransferCounts {
  /** Records read from the source, with those an earlier run brought over (`inLedger`). */
  read: number;
  /** Written to the target (with `--dry-run`: would be written). */
  written: number;
  /** Left alone because the target already holds that id (`only: 'absent'`). */
  present: number;
  /** Expired or deleted between listing and reading, so not copied. */
  expired: number;
  /** Could not be read or decoded; skipped and reported. */
  unreadable: number;
  /** Copy only: of the unreadable, those over the source's `maxRecordBytes`. */
  tooLarge?: number;
  /** Import only: ids that are not valid sessile ids; skipped, never altered. */
  invalidId?: number;
  /** With `--ledger`: ids an earlier run brought over, never written as new (`reconciled` says what became of them). */
  inLedger?: number;
  /** With `--ledger`: what this run did to sessions an earlier run brought over. */
  reconciled?: ReconciledCounts;
}

export function newCounts(): TransferCounts {
  return { read: 0, written: 0, present: 0, expired: 0, unreadable: 0 };
}

type TransferSummary = Record<string, unknown> & { counts: TransferCounts };

/** The exit code and the closing lines a copy or an import reports. */
export async function reportTransfer(
  summary: TransferSummary & { interrupted: boolean },
  options: TransferOptions,
): Promise<ExitCode> {
  const { counts } = summary;
  const exitCode = summary.interrupted
    ? EXIT.interrupted
    : counts.unreadable > 0
      ? EXIT.incomplete
      : EXIT.ok;
  if (options.json) await printJson({ ok: exitCode === EXIT.ok, ...summary, exitCode });
  else {
    await printLines([
      `${options.dryRun ? 'dry run: ' : ''}${countsLine(counts, options)}`,
      ...(summary.interrupted ? ['interrupted: run the same command again to resume'] : []),
    ]);
  }
  return exitCode;
}

/**
 * Rethrows what ended a copy or an import early (a session the target refuses, a store that
 * failed) with what the run had done by then: the sessions before it stay written, so the counts
 * are printed as a finished run prints them, and `--json` puts them beside the error.
 */
export async function transferStopped(
  error: unknown,
  summary: TransferSummary,
  options: TransferOptions,
): Promise<never> {
  const failure = toCliError(error);
  failure.done = { ...summary, stopped: true };
  if (!options.json) await printLines([`stopped: ${countsLine(summary.counts, options)}`]);
  throw failure;
}

function countsLine(counts: TransferCounts, options: TransferOptions): string {
  const verb = options.dryRun ? 'would write' : 'written';
  return `${counts.read} read, ${counts.written} ${verb}, ${counts.present} already present${options.overwrite ? '' : ' (kept; --overwrite replaces them)'}, ${counts.expired} expired, ${counts.unreadable} unreadable${counts.invalidId === undefined ? '' : `, ${counts.invalidId} invalid ids`}${counts.inLedger === undefined ? '' : `, ${counts.inLedger} brought over before (in --ledger)`}${reconciledText(counts.reconciled, options)}`;
}

function reconciledText(
  reconciled: ReconciledCounts | undefined,
  options: TransferOptions,
): string {
  if (reconciled === undefined) return '';
  const would = options.dryRun ? 'would be ' : '';
  return `; of those brought over before, ${reconciled.unchanged} unchanged, ${reconciled.deleted} ended on the source (${would}deleted), ${reconciled.updated} changed there (${would}updated), ${reconciled.keptChanged} changed on the target (kept)`;
}

/**
 * Writes one record under `only: 'absent'` (or unconditionally with `--overwrite`), or counts
 * what it would do; resolves whether it wrote.
 */
export async function writeRecord(
  store: SessionStore,
  id: string,
  record: SessionRecord,
  options: TransferOptions,
  counts: TransferCounts,
): Promise<boolean> {
  if (options.dryRun) {
    if (!options.overwrite && (await store.get(id)) !== undefined) {
      counts.present++;
      return false;
    }
    counts.written++;
    return true;
  }
  let wrote: boolean;
  try {
    wrote = await store.set(id, record, options.overwrite ? {} : { only: 'absent' });
  } catch (error) {
    // Ends the run: the message says which session, so it can be found in the source.
    if (!isSessionError(error, 'ERR_RECORD_TOO_LARGE')) throw error;
    throw new SessionError('ERR_RECORD_TOO_LARGE', `Session ${maskId(id)}: ${error.message}`, {
      cause: error,
    });
  }
  if (wrote) counts.written++;
  else counts.present++;
  return wrote;
}

/** `sessile copy --from URL --to URL`: every live session with its expiry, resumable and idempotent. */
export async function copy(options: CopyOptions): Promise<ExitCode> {
  const from = parseStoreAddress(options.from);
  const to = parseStoreAddress(options.to);
  if (await sameStore(from, to)) throw usageError('--from and --to name the same store');
  const checked = await checkTarget(to, options.dryRun);
  const ledger = await openLedger(options.ledger, Boolean(options.dryRun));
  const interrupt = interruptSignal();
  try {
    return await withStore(options.from, { ...options, mustExist: true }, (source) =>
      withTarget(checked, options, async (target) => {
        const counts = newCounts();
        let tooLarge = 0;
        const reconciled = newReconciled();
        // Sessions in the ledger found live on the source; the others have ended there.
        const seen = new Set<string>();
        const dryRun = Boolean(options.dryRun);
        // Counting walks the whole store, so it is done only for a bar someone will see.
        const shown = progressShown(options.json);
        const progress = new Progress('copy', shown ? await source.count() : undefined, shown);
        const summary = (): TransferSummary => ({
          from: from.display,
          to: to.display,
          dryRun: Boolean(options.dryRun),
          overwrite: Boolean(options.overwrite),
          counts: {
            ...counts,
            tooLarge,
            ...(options.ledger === undefined
              ? {}
              : { inLedger: counts.inLedger ?? 0, reconciled: { ...reconciled } }),
          },
        });
        const unreadable = (error: unknown): boolean => {
          const reason = unreadableReason(error);
          if (reason === undefined) throw error;
          counts.unreadable++;
          if (reason === 'tooLarge') tooLarge++;
          return true;
        };
        /** Writes the source's version of a session it changed since, where the new app has not. */
        const reconcileChanged = async (id: string, written: LedgerEntry) => {
          let record: SessionRecord | undefined;
          try {
            record = await readRecordToCopy(source, id);
          } catch (error) {
            seen.add(id);
            unreadable(error);
            return;
          }
          counts.read++;
          if (record === undefined || record.expiresAt <= Date.now()) return;
          seen.add(id);
          const fingerprint = recordFingerprint(record);
          if (fingerprint === written.source) {
            reconciled.unchanged++;
            return;
          }
          const action = { kind: 'update', record, source: fingerprint } as const;
          await reconcile(target, ledger, id, written, action, reconciled, dryRun);
        };
        let outcome: { interrupted: boolean };
        try {
          outcome = await forEachConcurrently(
            source.ids(),
            options.concurrency,
            interrupt.signal,
            async (id) => {
              const entry = ledger.entry(id);
              if (entry !== undefined) {
                // Never written as new: the new app may have deleted it (a logout) since.
                counts.inLedger = (counts.inLedger ?? 0) + 1;
                if (entry.target !== undefined) await reconcileChanged(id, entry);
                progress.increment();
                return;
              }
              let record: SessionRecord | undefined;
              try {
                record = await readRecordToCopy(source, id);
              } catch (error) {
                unreadable(error);
                progress.increment();
                return;
              }
              counts.read++;
              if (record === undefined || record.expiresAt <= Date.now()) counts.expired++;
              else if (await writeRecord(target, id, record, options, counts)) {
                await ledger.record(id, writtenFingerprints(record, recordFingerprint(record)));
              } else await ledger.record(id);
              progress.increment();
            },
          );
          // Only after a whole pass: a session the pass did not reach is not one that ended.
          if (!outcome.interrupted && options.ledger !== undefined) {
            const stillLive = async (id: string) => {
              const record = await readRecordToCopy(source, id).catch(() => null);
              return record === null || (record !== undefined && record.expiresAt > Date.now());
            };
            outcome = await deleteGone(
              target,
              ledger,
              seen,
              stillLive,
              options.concurrency,
              interrupt.signal,
              reconciled,
              dryRun,
            );
          }
        } catch (error) {
          return transferStopped(error, summary(), options);
        } finally {
          progress.stop();
        }
        if (tooLarge > 0) {
          process.stderr.write(
            `skipped ${tooLarge} record${tooLarge === 1 ? '' : 's'} over ${source.maxRecordBytes} bytes; ${RECORD_LIMIT_HINT}\n`,
          );
        }
        return reportTransfer({ ...summary(), interrupted: outcome.interrupted }, options);
      }),
    );
  } finally {
    interrupt.dispose();
    await ledger.close();
  }
}
