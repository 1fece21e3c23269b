import { constants, existsSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { CliError, EXIT } from '../exit-codes.js';
import { requireDriver } from '../resolve.js';
import {
  cookieExpiry,
  notThePeer,
  type PeerOptions,
  type PeerSession,
  type PeerSource,
  parseSession,
  peerIoError,
  peerPathProblem,
} from './peer.js';

interface Iterator {
  nextv(size: number): Promise<Array<[string, string]>>;
  close(): Promise<void>;
}

interface Database {
  open(): Promise<void>;
  get(key: string): Promise<string | undefined>;
  iterator(options: { gt: string; lt: string }): Iterator;
  close(): Promise<void>;
}

/** The key level-session-store keeps its session count under, beside the sessions. */
const LENGTH_KEY = '__length__';
/** The prefix level-session-store puts on its keys in a database the app passed in (`ns` option). */
const SHARED_PREFIX = '_session/';
const PAGE_ENTRIES = 500;

/** Whether `error`, or an error it wraps, has `code`: classic-level wraps the real reason. */
function hasCode(error: unknown, code: string): boolean {
  for (let at = error; at instanceof Error; at = at.cause) {
    if ((at as { code?: unknown }).code === code) return true;
  }
  return false;
}

/** The deepest error `error` wraps: classic-level says only "Database failed to open" on top. */
function deepest(error: unknown): unknown {
  let at = error;
  while (at instanceof Error && at.cause instanceof Error) at = at.cause;
  return at;
}

/**
 * Why LevelDB would not open the peer's directory, naming it. Opening writes in it (its LOCK
 * file, and the log LevelDB replays), so a directory this process may not write cannot be read.
 */
async function openFailure(display: string, path: string, error: unknown): Promise<CliError> {
  const code = await access(path, constants.W_OK).then(
    () => undefined,
    (accessError: NodeJS.ErrnoException) => accessError.code,
  );
  const why =
    code === 'EROFS'
      ? 'it is on a read-only filesystem'
      : code === 'EACCES' || code === 'EPERM'
        ? `this process may not write in it (permission denied, ${code})`
        : undefined;
  if (why === undefined) {
    return peerIoError(display, `open ${path}`, deepest(error));
  }
  return new CliError(
    `${display}: cannot open ${path}: ${why}, and LevelDB writes in its directory (its LOCK file and log) even to read it. Copy the directory somewhere writable (cp -a) and import from the copy`,
    EXIT.failure,
    'ERR_STORE_IO',
    { cause: error },
  );
}

/**
 * level-session-store: one key per session in a LevelDB directory, the session's JSON as its
 * value, and a `__length__` counter beside them. Keys are `<sid>` in a database it opened from a
 * path, and `<ns>/<sid>` (`_session/` by default) in one the app passed in: `--prefix` says which.
 * It never expires a session itself; express-session's cookie does, so a session lives until its
 * cookie's `expires`.
 */
export async function openLevelSessionStore(
  path: string,
  display: string,
  options: PeerOptions,
): Promise<PeerSource> {
  const prefix = options.prefix ?? '';
  const problem = await peerPathProblem(path, 'directory');
  if (problem !== undefined) {
    throw notThePeer(display, `${problem}: no level-session-store data there`);
  }
  if (!existsSync(join(path, 'CURRENT'))) {
    throw notThePeer(display, `${path} is not a LevelDB directory (it has no CURRENT file)`);
  }
  const { ClassicLevel } = requireDriver<{
    ClassicLevel: new (path: string, options: object) => Database;
  }>('classic-level', ['@sessile/level'], 'Reading level-session-store data');
  const db = new ClassicLevel(path, {
    createIfMissing: false,
    keyEncoding: 'utf8',
    valueEncoding: 'utf8',
  });
  try {
    await db.open();
  } catch (error) {
    if (hasCode(error, 'LEVEL_LOCKED')) {
      throw new CliError(
        `${display}: ${path} is open in another process (LevelDB allows one at a time); stop the app that uses it, then import`,
        EXIT.failure,
        'ERR_STORE_BUSY',
        { cause: error },
      );
    }
    throw await openFailure(display, path, error);
  }
  try {
    if ((await db.get(`${prefix}${LENGTH_KEY}`)) === undefined) {
      const hint =
        prefix === '' && (await db.get(`${SHARED_PREFIX}${LENGTH_KEY}`)) !== undefined
          ? `; its sessions are under '${SHARED_PREFIX}', so give --prefix ${SHARED_PREFIX}`
          : '';
      throw notThePeer(
        display,
        `${path} has no '${prefix}${LENGTH_KEY}' key, so it is not level-session-store data${hint}`,
      );
    }
  } catch (error) {
    await db.close();
    if ((error as Error).name === 'CliError') throw error;
    throw peerIoError(display, 'read', error);
  }
  function toSession(key: string, value: string): PeerSession {
    const id = key.slice(prefix.length);
    const { session, problem } = parseSession(value);
    if (session === undefined) return { id, problem: problem as string };
    const expiresAt = cookieExpiry(session);
    return expiresAt === undefined ? { id, session } : { id, session, expiresAt };
  }
  return {
    display,
    async count() {
      // The counter counts writes, not sessions: level-session-store adds one on every `set`.
      return undefined;
    },
    async *sessions() {
      // Every key that starts with the prefix: '\u{10ffff}' sorts after any character a key holds.
      const entries = db.iterator({ gt: prefix, lt: `${prefix}\u{10ffff}` });
      try {
        for (;;) {
          let page: Array<[string, string]>;
          try {
            page = await entries.nextv(PAGE_ENTRIES);
          } catch (error) {
            throw peerIoError(display, 'read', error);
          }
          if (page.length === 0) return;
          for (const [key, value] of page) {
            if (key !== `${prefix}${LENGTH_KEY}`) yield toSession(key, value);
          }
        }
      } finally {
        await entries.close();
      }
    },
    async close() {
      await db.close();
    },
  };
}
