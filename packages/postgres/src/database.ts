import { SessionError } from '@sessile/core';
import { lostSocket, toStoreIoError } from '@sessile/core/store';
import pg from 'pg';
import { STORE_TYPES } from './types.js';

/**
 * The store's way to the server: every statement goes through the pool, one checkout per
 * statement, never held between them, and fails with `ERR_STORE_IO` naming the server once
 * `timeoutMs` passes, waiting for a connection included.
 */
export class Database {
  readonly pool: pg.Pool;
  /** `host:port/database`, for error messages. */
  readonly server: string;
  /** How long one statement may take, waiting for a connection included (`queryTimeoutMs`). */
  readonly timeoutMs: number;
  /** What `query`'s errors name beside the server: ` of "schema"."table"`, or nothing. */
  readonly of: string;

  /** `table`, when given, is named in the errors of `query`'s statements. */
  constructor(pool: pg.Pool, timeoutMs: number, table?: string) {
    this.pool = pool;
    this.server = describeServer(pool);
    this.timeoutMs = timeoutMs;
    this.of = table === undefined ? '' : ` of ${table}`;
  }

  /**
   * Runs one statement. `name` makes it a prepared statement on each connection, so the server
   * plans it once per connection instead of once per call. A call that gave up waiting for a
   * connection is never sent: it has rejected already, and would land after calls made since.
   */
  query<R extends pg.QueryResultRow>(
    name: string,
    text: string,
    values: unknown[],
  ): Promise<pg.QueryResult<R>> {
    const config = { name, text, values, query_timeout: this.timeoutMs, types: STORE_TYPES };
    const action = `${actionOf(name)}${this.of}`;
    let gaveUp = false;
    const send = () =>
      this.pool.connect().then((client) => {
        if (gaveUp) {
          client.release();
          throw this.timedOut(action);
        }
        return checkedOut(client, () => client.query<R>(config));
      });
    // A connection the server ended for idling never ran the statement, and the pool has
    // dropped it: the statement goes again, on another connection (each idle one may be ended).
    const sent = (async () => {
      for (;;) {
        try {
          return await send();
        } catch (error) {
          if (gaveUp || !endedForIdling(error)) throw error;
        }
      }
    })();
    return this.#withDeadline(sent, action, undefined, () => {
      gaveUp = true;
    });
  }

  /** Runs `body` on one checked-out connection, released (and dropped after an error) at the end. */
  async withClient<T>(action: string, body: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    // A connection that arrives after the deadline goes back to the pool, not to nobody.
    const client = await this.#withDeadline(this.pool.connect(), action, (late) => late.release());
    try {
      return await checkedOut(client, () => body(client));
    } catch (error) {
      throw this.ioError(error, action);
    }
  }

  /** The error of `action` when it outlived `timeoutMs`. */
  timedOut(action: string): SessionError {
    return new SessionError(
      'ERR_STORE_IO',
      `${action} on PostgreSQL ${this.server} did not finish within ${this.timeoutMs} ms`,
    );
  }

  ioError(error: unknown, action: string): SessionError {
    return toStoreIoError(error, `${action} on PostgreSQL ${this.server}`);
  }

  /**
   * `work`, or a rejection once the timeout passes: `gaveUp` is then called at once, and
   * `abandoned` gets what `work` brings later.
   */
  #withDeadline<T>(
    work: Promise<T>,
    action: string,
    abandoned?: (late: T) => void,
    gaveUp?: () => void,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let timedOut = false;
      // The pool's own timeouts bound the query on the wire; this bounds the wait for a connection too.
      const timer = setTimeout(() => {
        timedOut = true;
        gaveUp?.();
        reject(this.timedOut(action));
      }, this.timeoutMs);
      work.then(
        (value) => {
          clearTimeout(timer);
          if (timedOut) abandoned?.(value);
          else resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(this.ioError(error, action));
        },
      );
    });
  }
}

/**
 * Whether the server ended the connection for idling (`idle_session_timeout`, SQLSTATE 57P05)
 * before the statement sent on it reached the server: it ends only an idle session.
 */
function endedForIdling(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === '57P05';
}

/**
 * Whether `error`, as `query` rejects, is a connection lost or refused (a network drop, a server
 * restart or failover, a backend terminated), which the same statement on a fresh connection may
 * get past. Never a timeout, nor an error of the statement itself. A statement sent before the
 * loss may still have run with its answer lost, so only a statement safe to run twice is retried.
 */
export function lostConnection(error: unknown): boolean {
  const cause = error instanceof SessionError ? error.cause : error;
  if (!(cause instanceof Error)) return false;
  if (lostSocket(cause)) return true;
  const { code } = cause as { code?: unknown };
  if (typeof code === 'string') {
    // SQLSTATE class 08 (connection exception), the server shutting down, crashed or starting,
    // and a connection it ended for idling (idle_session_timeout) before the statement reached it.
    return (
      code.startsWith('08') ||
      code === '57P01' ||
      code === '57P02' ||
      code === '57P03' ||
      code === '57P05'
    );
  }
  return (
    cause.message === 'Connection terminated unexpectedly' ||
    cause.message === 'Client has encountered a connection error and is not queryable'
  );
}

/**
 * The store's statements need READ COMMITTED: a lock's claim reads its session in a second
 * statement, which must see the writes of the release the claim waited for, and fenced writes
 * recheck a lease row another transaction changed instead of failing to serialize. A role or
 * database may default to another level (`default_transaction_isolation`). A role's
 * `lock_timeout` would fail a claim or a commit that queues briefly behind another process's
 * on the same lease row; the pool's `statement_timeout` bounds that wait instead.
 */
const CONNECTION_SETTINGS =
  "SET default_transaction_isolation = 'read committed'; SET lock_timeout = 0";

/**
 * Sets each new connection of the store's own pool to READ COMMITTED, and no lock timeout of
 * its own, before the pool hands it out: a client runs its queries in the order given, and the
 * pool emits `connect` first.
 */
export function settingsOnConnect(pool: pg.Pool): void {
  pool.on('connect', (client) => {
    client.query(CONNECTION_SETTINGS).catch(() => {});
  });
}

/**
 * Refuses a connection whose transactions default to REPEATABLE READ or SERIALIZABLE: on one,
 * a claim's read could miss the previous holder's last write, and that update would be lost.
 */
export async function assertReadCommitted(
  client: pg.ClientBase,
  server: string,
  timeoutMs: number,
): Promise<void> {
  const { rows } = await client.query<{ level: string }>({
    text: "SELECT current_setting('default_transaction_isolation') AS level",
    query_timeout: timeoutMs,
    types: STORE_TYPES,
  } as pg.QueryConfig);
  const level = rows[0]?.level;
  // PostgreSQL runs READ UNCOMMITTED as READ COMMITTED.
  if (level !== 'read committed' && level !== 'read uncommitted') {
    throw new SessionError(
      'ERR_UNSUPPORTED',
      `The pool's connections to PostgreSQL ${server} default to ${level} transactions (default_transaction_isolation), where a lock's read may miss the last holder's write; set it to read committed on the pool's connections, or pass connectionString so the store has a pool of its own`,
    );
  }
}

/**
 * Runs `body` on a checked-out connection and releases it, dropping it after an error. The pool
 * listens for a checked-out connection's errors only inside `pool.query`; without a listener of
 * our own, a backend killed meanwhile (`pg_terminate_backend`, a failover) would emit an
 * unhandled `'error'` and end the process.
 */
async function checkedOut<T>(client: pg.PoolClient, body: () => Promise<T>): Promise<T> {
  let failure: Error | undefined;
  const onError = (error: Error) => {
    failure ??= error;
  };
  client.on('error', onError);
  try {
    return await body();
  } catch (error) {
    failure ??= error instanceof Error ? error : new Error(String(error));
    throw error;
  } finally {
    client.release(failure);
    client.removeListener('error', onError);
  }
}

/**
 * What a prepared statement does, as errors name it: its name without the table's channel
 * (`sessile_<digest>_sweep_batch` is `sweep batch`), which means nothing to a reader.
 */
function actionOf(name: string): string {
  return name.replace(/^sessile_[0-9a-f]{16}_/, '').replaceAll('_', ' ');
}

/**
 * `host:port/database` as the pool will connect, without credentials: read by node-postgres
 * itself, so a socket given as `?host=`, environment variables and defaults are named as it
 * uses them. Constructing a client only reads its options; nothing connects.
 */
export function describeServer(pool: pg.Pool): string {
  const { connectionString } = pool.options as pg.PoolConfig;
  // node-postgres reads any other string as a path, so its database name would be the whole
  // string, password and all.
  if (typeof connectionString === 'string' && !readsAsUrl(connectionString)) {
    return 'an unreadable connection string';
  }
  let target: pg.Client;
  try {
    // Without `stream`: a connection's socket is made with its client, and this one never connects.
    target = new pg.Client({ ...(pool.options as pg.ClientConfig), stream: undefined });
  } catch {
    return 'an unreadable connection string';
  }
  return `${target.host}:${target.port}/${target.database ?? ''}`;
}

/**
 * Whether `connectionString` is a socket directory or has a scheme node-postgres connects with.
 * It resolves anything else against a placeholder URL, so a libpq `host=… password=…` string
 * would send itself, password included, as the database name to a host that is not the app's.
 * Whether the rest is well formed is node-postgres's own reading (`assertReadable`).
 */
export function readsAsUrl(connectionString: string): boolean {
  return (
    connectionString.startsWith('/') || /^(postgres|postgresql|socket):/i.test(connectionString)
  );
}
