import { requireDriver } from '../resolve.js';
import { quoteIdentifier } from '../sql.js';
import {
  notThePeer,
  type PeerOptions,
  type PeerSession,
  type PeerSource,
  parseSession,
  peerIoError,
} from './peer.js';

interface Pool {
  query(sql: string, params?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
  on(event: string, listener: (error: unknown) => void): void;
  end(): Promise<void>;
}

const COLUMNS = ['sid', 'sess', 'expire'];
/** connect-pg-simple's default `schemaName` and `tableName`. */
export const CONNECT_PG_SIMPLE_SCHEMA = 'public';
export const CONNECT_PG_SIMPLE_TABLE = 'session';
const PAGE_ROWS = 1000;
/**
 * `expire` in ms since the epoch, converted by the server: connect-pg-simple writes a timestamp
 * without time zone in the session's TimeZone, which the cast reads back, whatever the CLI's zone.
 */
const EXPIRES_AT_MS = 'floor(extract(epoch FROM expire::timestamptz) * 1000)';

/** connect-pg-simple: the `session` table, `sess` as json, `expire` as a timestamp. */
export async function openConnectPgSimple(
  url: string,
  display: string,
  options: PeerOptions,
): Promise<PeerSource> {
  const schema = options.schema ?? CONNECT_PG_SIMPLE_SCHEMA;
  const table = options.table ?? CONNECT_PG_SIMPLE_TABLE;
  const pg = requireDriver<{ Pool: new (options: object) => Pool }>(
    'pg',
    ['@sessile/postgres'],
    'Reading connect-pg-simple data',
  );
  const pool = new pg.Pool({ connectionString: url, max: 2, connectionTimeoutMillis: 5000 });
  pool.on('error', () => {});
  /** `pool.query`, its failure naming the peer. */
  async function query(sql: string, params?: unknown[]) {
    try {
      return await pool.query(sql, params);
    } catch (error) {
      throw peerIoError(display, 'query', error);
    }
  }
  let columns: string[];
  try {
    const result = await query(
      'SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position',
      [schema, table],
    );
    columns = result.rows.map((row) => String(row.column_name));
  } catch (error) {
    await pool.end().catch(() => {});
    throw error;
  }
  const missing = COLUMNS.filter((column) => !columns.includes(column));
  if (missing.length > 0) {
    await pool.end().catch(() => {});
    throw notThePeer(
      display,
      columns.length === 0
        ? `has no table ${schema}.${table}, so it is not connect-pg-simple data`
        : `table ${schema}.${table} has columns (${columns.join(', ')}), not connect-pg-simple's (${COLUMNS.join(', ')})`,
    );
  }
  const name = `${quoteIdentifier(schema)}.${quoteIdentifier(table)}`;
  function toSession(row: Record<string, unknown>): PeerSession {
    const id = String(row.sid);
    const { session, problem } = parseSession(row.sess, `sess in ${schema}.${table}`);
    if (session === undefined) return { id, problem: problem as string };
    const expiresAt = Number(row.expires_at_ms ?? Number.NaN);
    // '-infinity' is before every time, so the peer never serves it: it counts as expired.
    if (expiresAt === Number.NEGATIVE_INFINITY) return { id, session, expiresAt };
    return Number.isFinite(expiresAt) ? { id, session, expiresAt } : { id, session };
  }
  return {
    display,
    async count() {
      const result = await query(`SELECT COUNT(*)::int AS n FROM ${name}`);
      return Number(result.rows[0]?.n);
    },
    async *sessions() {
      let after = '';
      for (;;) {
        const { rows } = await query(
          // As text: pg would hand a json string value over parsed, as if it were the JSON.
          `SELECT sid, sess::text AS sess, ${EXPIRES_AT_MS} AS expires_at_ms FROM ${name} WHERE sid > $1 ORDER BY sid LIMIT ${PAGE_ROWS}`,
          [after],
        );
        if (rows.length === 0) return;
        for (const row of rows) yield toSession(row);
        after = String(rows[rows.length - 1]?.sid);
      }
    },
    async close() {
      await pool.end().catch(() => {});
    },
  };
}
