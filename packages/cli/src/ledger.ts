import { createHash } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { access, type FileHandle, open, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { CliError, EXIT, usageError } from './exit-codes.js';

/**
 * What a run wrote for one id: a fingerprint of the record as written to the target, one of
 * the source's session it came from, and one of the written record's data and owner alone
 * (unset on lines written before it: such a session is then updated only where the target
 * holds exactly what was written). All unset for a line without them (a ledger written before
 * fingerprints, or an id the target already held), which a later run leaves alone.
 */
export interface LedgerEntry {
  target?: string;
  source?: string;
  targetData?: string;
}

/**
 * The ids earlier imports brought into the target, one a line. A later import never writes one
 * back as new, so a session the new app deleted (a logout) since then stays deleted; where the
 * target still holds exactly what the line's fingerprint says the run wrote, it is brought in
 * line with the source instead. Each line is a SHA-256 of the id, then optionally the two
 * fingerprints, so the file holds no live session id; a later line for an id replaces an earlier.
 */
export interface Ledger {
  /** The id's latest line when the ledger was opened, or `undefined` when no run brought it over. */
  entry(id: string): LedgerEntry | undefined;
  /** Adds a line for an id the target now holds; a dry run adds nothing. */
  record(id: string, fingerprints?: Required<LedgerEntry>): Promise<void>;
  close(): Promise<void>;
}

/** What keeps the ledger from being read or written, in words beside the errno code. */
function ledgerProblem(path: string, error: unknown): string {
  const { code } = error as NodeJS.ErrnoException;
  if (code === 'ENOENT') return `ENOENT, its directory ${dirname(path)} does not exist`;
  if (code === 'ENOTDIR') return `ENOTDIR, a part of the path is a file, not a directory`;
  if (code === 'EISDIR') return 'EISDIR, it is a directory; give a file';
  if (code === 'EACCES' || code === 'EPERM') return `${code}, permission denied`;
  if (code === 'EROFS') return 'EROFS, it is on a read-only filesystem';
  return code ?? (error as Error).message;
}

function specialKind(stats: Stats): string {
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isSocket()) return 'a socket';
  return 'not a regular file';
}

function ledgerError(path: string, error: unknown): CliError {
  return new CliError(
    `--ledger ${path}: ${ledgerProblem(path, error)}`,
    EXIT.failure,
    'ERR_STORE_IO',
    { cause: error },
  );
}

/** The ledger at `path`, created when missing; without a path, one that holds nothing. */
export async function openLedger(path: string | undefined, dryRun: boolean): Promise<Ledger> {
  if (path === undefined) {
    return {
      entry: () => undefined,
      record: async () => {},
      close: async () => {},
    };
  }
  // A FIFO would block the read for ever, and /dev/null would keep no line: a run after it
  // would write back the sessions the new app deleted.
  const kind = await stat(path).then(
    (stats) => (stats.isFile() || stats.isDirectory() ? undefined : specialKind(stats)),
    () => undefined,
  );
  if (kind !== undefined) {
    throw new CliError(
      `--ledger ${path}: it is ${kind}, which keeps nothing; give a file`,
      EXIT.failure,
      'ERR_STORE_IO',
    );
  }
  let text: string | undefined;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw ledgerError(path, error);
  }
  if (dryRun) {
    // A dry run opens nothing for writing, yet must fail where the real run would.
    await access(text === undefined ? dirname(path) : path, constants.W_OK).catch((error) => {
      throw ledgerError(path, error);
    });
  }
  text ??= '';
  const lines = text.split('\n').filter((line) => line !== '');
  // Every line is an entry, or the start of one a killed run tore: anything else is another
  // file (a peer's session file, the app's config), which appending to would damage.
  const foreign = lines.findIndex(
    (line) =>
      !/^[A-Za-z0-9_-]{1,43}( [A-Za-z0-9_-]{0,43}( [A-Za-z0-9_-]{0,43}( [A-Za-z0-9_-]{0,43})?)?)?$/.test(
        line,
      ),
  );
  if (foreign !== -1) {
    throw usageError(
      `--ledger ${path}: not a ledger (its line ${text.split('\n').indexOf(lines[foreign] as string) + 1} is not an entry); give a new file or the ledger of an earlier import`,
    );
  }
  const entries = new Map<string, LedgerEntry>();
  for (const line of lines) {
    const [id, target, source, targetData] = line.split(' ') as [string, string?, string?, string?];
    // A torn fingerprint is no fingerprint: that id is left as the target has it.
    const whole = target?.length === 43 && source?.length === 43;
    const entry: LedgerEntry = whole ? { target, source } : {};
    if (whole && targetData?.length === 43) entry.targetData = targetData;
    entries.set(id, entry);
  }
  let file: FileHandle | undefined;
  if (!dryRun) {
    try {
      file = await open(path, 'a');
      // A run killed mid-line leaves a torn id; the next one starts on a line of its own.
      if (text !== '' && !text.endsWith('\n')) await file.appendFile('\n');
    } catch (error) {
      await file?.close();
      throw ledgerError(path, error);
    }
  }
  return {
    entry: (id) => entries.get(entryOf(id)),
    async record(id, fingerprints) {
      const key = entryOf(id);
      const line =
        fingerprints === undefined
          ? key
          : `${key} ${fingerprints.target} ${fingerprints.source} ${fingerprints.targetData}`;
      // One write per line with O_APPEND, so concurrent records never interleave.
      await file?.appendFile(`${line}\n`);
    },
    async close() {
      await file?.close();
    },
  };
}

function entryOf(id: string): string {
  return createHash('sha256').update(id).digest('base64url');
}
