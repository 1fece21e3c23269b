import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { CliError, EXIT } from '../exit-codes.js';

/** A session as express-session stores it: the app's fields and its cookie. */
export interface ExpressSessionData {
  cookie?: { expires?: Date | string | null } | null;
  [field: string]: unknown;
}

/** One session as a peer store holds it. */
export interface PeerSession {
  id: string;
  /**
   * The express-session session (JSON with `cookie`), without the peer's own bookkeeping fields;
   * unset with no `problem` for one gone since it was listed, which counts as expired.
   */
  session?: ExpressSessionData;
  /** When the peer would stop serving it, in ms since the epoch; unset when the peer keeps it forever. */
  expiresAt?: number;
  /**
   * The same expiry as the peer stores it, which reads the same until the peer changes it; set
   * where `expiresAt` comes from a relative TTL (now + PTTL moves between reads). The ledger
   * fingerprints this one, so an unchanged session is not read as changed.
   */
  storedExpiresAt?: number;
  /** Why this entry could not be read; the importer reports and skips it. */
  problem?: string;
}

/** A peer store's native data, read without the peer package. */
export interface PeerSource {
  readonly display: string;
  /** How many entries there are, when the peer can tell cheaply. */
  count(): Promise<number | undefined>;
  sessions(): AsyncIterable<PeerSession>;
  close(): Promise<void>;
}

/** Options that say where a peer keeps its data, as its own constructor took them. */
export interface PeerOptions {
  /** Table name (connect-sqlite3, better-sqlite3-session-store, connect-pg-simple). */
  table?: string;
  /** Schema (connect-pg-simple). */
  schema?: string;
  /** Key prefix (connect-redis, level-session-store). */
  prefix?: string;
  /** session-file-store's `ttl` in seconds, for sessions whose cookie has no `originalMaxAge`. */
  ttlSeconds?: number;
  /** session-file-store's `fileExtension`: its files are `<sid><fileExtension>`. */
  fileExtension?: string;
}

/** A peer's data that is not what the peer writes: a wrong table, missing columns, a foreign file. */
export function notThePeer(display: string, reason: string, cause?: unknown): CliError {
  return new CliError(`${display}: ${reason}`, EXIT.failure, 'ERR_NOT_PEER_DATA', { cause });
}

/** A peer's server or file that failed to answer (`action`: 'connect', 'query'), naming the peer. */
export function peerIoError(display: string, action: string, cause: unknown): CliError {
  return new CliError(
    `${display}: cannot ${action} (${(cause as Error).message})`,
    EXIT.failure,
    'ERR_STORE_IO',
    { cause },
  );
}

/** What a JSON value that is not an object is, for a message. */
function jsonKind(value: unknown): string {
  if (value === null) return 'JSON null';
  if (Array.isArray(value)) return 'a JSON array';
  return `a JSON ${typeof value}`;
}

/**
 * Parses the JSON a peer stored for one session; anything but a JSON object is a problem, said
 * of `column` (such as `sess in public.session`) where the peer keeps it in a table.
 */
export function parseSession(
  text: unknown,
  column?: string,
): { session?: ExpressSessionData; problem?: string } {
  const subject = column === undefined ? '' : `${column} is `;
  let value: unknown = text;
  if (typeof text === 'string' || Buffer.isBuffer(text)) {
    try {
      value = JSON.parse(String(text));
    } catch {
      return { problem: `${subject}not JSON (encrypted by the peer, or damaged)` };
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return {
      problem: `${subject}${jsonKind(value)}, not an object (express-session stores each session as one)`,
    };
  }
  // express-session reads every stored session's cookie: JSON without one is not a session,
  // such as session-file-store's files encrypted with its `secret` (`{ hmac, ct, iv, salt }`).
  const { cookie } = value as { cookie?: unknown };
  if (typeof cookie !== 'object' || cookie === null || Array.isArray(cookie)) {
    return { problem: 'not an express-session session: no cookie (encrypted by the peer?)' };
  }
  return { session: value as ExpressSessionData };
}

/**
 * The expiry in a session's own cookie, when it has one. `false` is express-session's
 * browser-session cookie, as `null` is: read as a Date it would be the epoch, long expired.
 */
export function cookieExpiry(session: ExpressSessionData): number | undefined {
  const expires: unknown = session.cookie?.expires;
  if (expires === undefined || expires === null || typeof expires === 'boolean') return undefined;
  const time = new Date(expires as string | Date).getTime();
  return Number.isFinite(time) ? time : undefined;
}

/**
 * What keeps a peer's file or directory at `path` from being read, naming it, or `undefined`
 * when it is there, of that kind, and readable: the drivers' own messages ("unable to open
 * database file") name neither the path nor the reason.
 */
export async function peerPathProblem(
  path: string,
  kind: 'file' | 'directory',
): Promise<string | undefined> {
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(path)).isDirectory();
    await access(path, isDirectory ? constants.R_OK | constants.X_OK : constants.R_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
    if (code === 'ENOENT') return `${path} does not exist`;
    if (code === 'ENOTDIR') return `${path} is inside a file, not a directory`;
    if (code === 'EACCES' || code === 'EPERM') return `${path}: permission denied (${code})`;
    return `${path}: ${(error as Error).message}`;
  }
  if (kind === 'file' && isDirectory) return `${path} is a directory, not a file`;
  if (kind === 'directory' && !isDirectory) return `${path} is a file, not a directory`;
  return undefined;
}
