import { requireDriver } from '../resolve.js';
import { quoteIdentifier } from '../sql.js';
import {
  cookieExpiry,
  type ExpressSessionData,
  notThePeer,
  type PeerOptions,
  type PeerSession,
  type PeerSource,
  parseSession,
  peerPathProblem,
} from './peer.js';

interface Statement {
  all(...params: unknown[]): unknown[];
  get(...params: unknown[]): unknown;
}

interface Database {
  prepare(sql: string): Statement;
  close(): void;
}

type Row = Record<string, unknown> & { row: number; sid: unknown; sess: unknown };

/** How one SQLite peer lays out its table, and where its expiry is. */
interface SqlitePeerLayout {
  columns: readonly string[];
  expiresAt(row: Row, session: ExpressSessionData): number | undefined;
}

const LAYOUTS: Record<string, SqlitePeerLayout> = {
  // `expired` is ms since the epoch.
  'connect-sqlite3': {
    columns: ['sid', 'expired', 'sess'],
    expiresAt: (row) => (typeof row.expired === 'number' ? row.expired : Number(row.expired)),
  },
  // `expire` is an ISO date, the one its own `get` checks: its `touch` moves it and leaves the
  // cookie inside `sess` as it was, so the cookie's expiry may be long past for a live session.
  'better-sqlite3-session-store': {
    columns: ['sid', 'sess', 'expire'],
    expiresAt: (row, session) => {
      const expire = typeof row.expire === 'string' ? Date.parse(row.expire) : Number.NaN;
      return Number.isFinite(expire) ? expire : cookieExpiry(session);
    },
  },
};

export const SQLITE_PEERS = Object.keys(LAYOUTS);
/** The table both SQLite peers keep their sessions in by default. */
export const SQLITE_PEER_TABLE = 'sessions';

const PAGE_ROWS = 500;

/**
 * The SQLite peer whose columns the table `table` of the file at `path` has, read only, or
 * `undefined` for none, or for a file or driver that cannot be read.
 */
export function sqlitePeerOf(path: string, table = SQLITE_PEER_TABLE): string | undefined {
  let db: Database | undefined;
  try {
    const Driver = requireDriver<new (path: string, options: object) => Database>(
      'better-sqlite3',
      ['@sessile/sqlite'],
      'Reading SQLite data',
    );
    db = new Driver(path, { readonly: true, fileMustExist: true });
    const columns = (
      db.prepare('SELECT name FROM pragma_table_info(?)').all(table) as { name: string }[]
    ).map((column) => column.name);
    return SQLITE_PEERS.find((peer) =>
      (LAYOUTS[peer] as SqlitePeerLayout).columns.every((column) => columns.includes(column)),
    );
  } catch {
    return undefined;
  } finally {
    db?.close();
  }
}

/** connect-sqlite3 and better-sqlite3-session-store: a `sessions` table in one SQLite file, read only. */
export async function openSqlitePeer(
  peer: string,
  path: string,
  display: string,
  options: PeerOptions,
): Promise<PeerSource> {
  const layout = LAYOUTS[peer] as SqlitePeerLayout;
  const table = options.table ?? SQLITE_PEER_TABLE;
  const Driver = requireDriver<new (path: string, options: object) => Database>(
    'better-sqlite3',
    ['@sessile/sqlite'],
    `Reading ${peer} data`,
  );
  const problem = await peerPathProblem(path, 'file');
  if (problem !== undefined) throw notThePeer(display, `${problem}: no ${peer} database there`);
  let db: Database;
  try {
    db = new Driver(path, { readonly: true, fileMustExist: true });
  } catch (error) {
    throw notThePeer(display, `cannot open ${path}: ${(error as Error).message}`, error);
  }
  let page: Statement;
  let total: number;
  try {
    const columns = (
      db.prepare('SELECT name FROM pragma_table_info(?)').all(table) as {
        name: string;
      }[]
    ).map((column) => column.name);
    if (columns.length === 0)
      throw notThePeer(display, `has no table '${table}', so it is not ${peer} data`);
    const missing = layout.columns.filter((column) => !columns.includes(column));
    if (missing.length > 0) {
      throw notThePeer(
        display,
        `table '${table}' has columns (${columns.join(', ')}), not ${peer}'s (${layout.columns.join(', ')})`,
      );
    }
    const quoted = quoteIdentifier(table);
    page = db.prepare(
      `SELECT rowid AS row, ${layout.columns.join(', ')} FROM ${quoted} WHERE rowid > ? ORDER BY rowid LIMIT ${PAGE_ROWS}`,
    );
    total = (db.prepare(`SELECT COUNT(*) AS n FROM ${quoted}`).get() as { n: number }).n;
  } catch (error) {
    db.close();
    if ((error as Error).name === 'CliError') throw error;
    throw notThePeer(display, `cannot read ${path}: ${(error as Error).message}`, error);
  }
  function toSession(row: Row): PeerSession {
    const id = String(row.sid);
    const { session, problem } = parseSession(row.sess, `sess in table '${table}'`);
    if (session === undefined) return { id, problem: problem as string };
    const expiresAt = layout.expiresAt(row, session);
    // -Infinity (an `expired` of -9e999) is before every time: the peer never serves it.
    return expiresAt === undefined ||
      !(Number.isFinite(expiresAt) || expiresAt === Number.NEGATIVE_INFINITY)
      ? { id, session }
      : { id, session, expiresAt };
  }
  return {
    display,
    async count() {
      return total;
    },
    async *sessions() {
      let after = 0;
      for (;;) {
        let rows: Row[];
        try {
          rows = page.all(after) as Row[];
        } catch (error) {
          throw notThePeer(display, `cannot read ${path}: ${(error as Error).message}`, error);
        }
        if (rows.length === 0) return;
        for (const row of rows) yield toSession(row);
        after = (rows[rows.length - 1] as Row).row;
      }
    },
    async close() {
      db.close();
    },
  };
}
