import { SessionError } from '@sessile/core';
import { toStoreIoError } from '@sessile/core/store';
import type pg from 'pg';

/**
 * The store's way to the server: every statement goes through the pool, one checkout per
 * statement, never held between them, and fails with `ERR_STORE_IO` naming the server once
 * `timeoutMs` passes, waiting for a connection included.
 */
export class Database {
  readonly pool: pg.Pool;
  /** `host:port/database`, for error messages. */
  readonly server: string;
  readonly #timeoutMs: number;

  constructor(pool: pg.Pool, timeoutMs: number) {
    this.pool = pool;
    this.server = describeServer(pool);
    this.#timeoutMs = timeoutMs;
  }

  /**
   * Runs one statement. `name` makes it a prepared statement on each connection, so the server
   * plans it once per connection instead of once per call.
   */
  query<R extends pg.QueryResultRow>(
    name: string,
    text: string,
    values: unknown[],
  ): Promise<pg.QueryResult<R>> {
    const config = { name, text, values, query_timeout: this.#timeoutMs };
    return this.#withDeadline(this.pool.query<R>(config), actionOf(name));
  }

  /** Runs `body` on one checked-out connection, released (and dropped after an error) at the end. */
  async withClient<T>(action: string, body: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    // A connection that arrives after the deadline goes back to the pool, not to nobody.
    const client = await this.#withDeadline(this.pool.connect(), action, (late) => late.release());
    let failure: Error | undefined;
    try {
      return await body(client);
    } catch (error) {
      failure = error instanceof Error ? error : new Error(String(error));
      throw this.ioError(error, action);
    } finally {
      client.release(failure);
    }
  }

  /** The error of `action` when it outlived `timeoutMs`. */
  timedOut(action: string): SessionError {
    return new SessionError(
      'ERR_STORE_IO',
      `${action} on PostgreSQL ${this.server} did not finish within ${this.#timeoutMs} ms`,
    );
  }

  ioError(error: unknown, action: string): SessionError {
    return toStoreIoError(error, `${action} on PostgreSQL ${this.server}`);
  }

  /** `work`, or a rejection once the timeout passes; `abandoned` then gets what `work` brings later. */
  #withDeadline<T>(work: Promise<T>, action: string, abandoned?: (late: T) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let timedOut = false;
      // The pool's own timeouts bound the query on the wire; this bounds the wait for a connection too.
      const timer = setTimeout(() => {
        timedOut = true;
        reject(this.timedOut(action));
      }, this.#timeoutMs);
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
 * What a prepared statement does, as errors name it: its name without the table's channel
 * (`sessile_<digest>_sweep_batch` is `sweep batch`), which means nothing to a reader.
 */
function actionOf(name: string): string {
  return name.replace(/^sessile_[0-9a-f]{16}_/, '').replaceAll('_', ' ');
}

/** `host:port/database` as the pool will connect, without credentials. */
export function describeServer(pool: pg.Pool): string {
  const options = pool.options as pg.PoolConfig;
  let host = options.host;
  let port = options.port === undefined ? undefined : String(options.port);
  let database = options.database;
  if (options.connectionString !== undefined) {
    try {
      const url = new URL(options.connectionString);
      host ??= decodeURIComponent(url.hostname) || undefined;
      port ??= url.port || undefined;
      database ??= decodeURIComponent(url.pathname.slice(1)) || undefined;
    } catch {
      // A libpq keyword string is not a URL; the defaults below still say something useful.
    }
  }
  return `${host ?? process.env.PGHOST ?? 'localhost'}:${port ?? process.env.PGPORT ?? 5432}/${database ?? process.env.PGDATABASE ?? ''}`;
}
