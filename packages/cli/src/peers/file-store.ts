import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  notThePeer,
  type PeerOptions,
  type PeerSession,
  type PeerSource,
  parseSession,
  peerPathProblem,
} from './peer.js';

const DEFAULT_EXTENSION = '.json';
const DEFAULT_TTL_SECONDS = 3600;

/**
 * session-file-store: one `<sid>.json` per session (its `fileExtension` in place of `.json`). It
 * expires a session at `__lastAccess` plus the cookie's `originalMaxAge`, or plus its `ttl`
 * option when the cookie has none.
 */
export async function openSessionFileStore(
  path: string,
  display: string,
  options: PeerOptions,
): Promise<PeerSource> {
  const ttlMs = (options.ttlSeconds ?? DEFAULT_TTL_SECONDS) * 1000;
  const extension = options.fileExtension ?? DEFAULT_EXTENSION;
  const problem = await peerPathProblem(path, 'directory');
  if (problem !== undefined) {
    throw notThePeer(display, `${problem}: no session-file-store directory there`);
  }
  let entries: string[];
  try {
    entries = await readdir(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    throw notThePeer(display, `cannot list the session directory ${path} (${code})`, error);
  }
  const names = entries.filter((name) => name.endsWith(extension));
  // Another directory (the app's own, one level up) would import nothing and exit 0. Hidden
  // files and the peer's own temp files (`<sid>.json.<n>`) may sit in one with no sessions left.
  const foreign = entries.filter(
    (name) => !name.startsWith('.') && !name.includes(`${extension}.`),
  );
  if (names.length === 0 && foreign.length > 0) {
    throw notThePeer(
      display,
      `${path} holds ${foreign.length} entries and no <sid>${extension} file, so it is not session-file-store data`,
    );
  }
  async function read(name: string): Promise<PeerSession> {
    const id = name.slice(0, -extension.length);
    let text: string;
    try {
      text = await readFile(join(path, name), 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // Listed, then gone: the app still running deleted it (a logout) or the peer reaped it.
      if (code === 'ENOENT') return { id };
      return { id, problem: `unreadable (${code ?? 'error'})` };
    }
    const { session, problem } = parseSession(text);
    if (session === undefined) return { id, problem: problem as string };
    const { __lastAccess: lastAccess, ...rest } = session;
    // session-file-store never expires a session without a last access, nor one whose lifetime
    // JSON could only write as a number too large to be finite (`1e999`): the default applies.
    if (typeof lastAccess !== 'number') return { id, session: rest };
    const maxAge = (rest.cookie as { originalMaxAge?: unknown } | null | undefined)?.originalMaxAge;
    const lifetimeMs = typeof maxAge === 'number' && maxAge !== 0 ? maxAge : ttlMs;
    const expiresAt = lastAccess + lifetimeMs;
    // -Infinity (`-1e999`) is before every time: the peer reads it as expired, as the import does.
    return Number.isFinite(expiresAt) || expiresAt === Number.NEGATIVE_INFINITY
      ? { id, session: rest, expiresAt }
      : { id, session: rest };
  }
  return {
    display,
    async count() {
      return names.length;
    },
    async *sessions() {
      for (const name of names) yield await read(name);
    },
    async close() {},
  };
}
