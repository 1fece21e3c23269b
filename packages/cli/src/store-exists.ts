import { stat } from 'node:fs/promises';
import type { StoreAddress } from './addresses.js';
import { CliError, EXIT } from './exit-codes.js';
import { requireDriver } from './resolve.js';
import { quoteIdentifier } from './sql.js';

interface Client {
  connect(): Promise<void>;
  query(sql: string, params?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
  on(event: string, listener: (error: unknown) => void): void;
  end(): Promise<void>;
}

/** Whether the sessions table is there; asked before the store's `open()`, which creates it. */
async function tableExists(
  address: StoreAddress,
  table: { schema: string; name: string },
): Promise<boolean> {
  const pg = requireDriver<{ Client: new (options: object) => Client }>(
    'pg',
    ['@sessile/postgres'],
    'The postgres: store',
  );
  const client = new pg.Client({
    connectionString: address.options.connectionString,
    connectionTimeoutMillis: 5000,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    const { rows } = await client.query('SELECT to_regclass($1) IS NOT NULL AS present', [
      `${quoteIdentifier(table.schema)}.${quoteIdentifier(table.name)}`,
    ]);
    return rows[0]?.present === true;
  } catch (error) {
    throw new CliError(
      `${address.display}: cannot query (${(error as Error).message})`,
      EXIT.failure,
      'ERR_STORE_IO',
      { cause: error },
    );
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * What of the store is not there, or `undefined` when it is. A Redis store is always there: a
 * prefix without keys is an empty store, and opening one creates nothing.
 */
async function whatIsMissing(
  address: StoreAddress,
): Promise<{ what: string; cause?: unknown } | undefined> {
  if (address.path !== undefined) {
    try {
      await stat(address.path);
      return undefined;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
      return { what: `${address.path} (${code})`, cause: error };
    }
  }
  const table = address.table;
  if (table !== undefined && !(await tableExists(address, table))) {
    return { what: `table ${table.schema}.${table.name} (it does not exist)` };
  }
  return undefined;
}

export async function storeExists(address: StoreAddress): Promise<boolean> {
  return (await whatIsMissing(address)) === undefined;
}

/** Refuses a store that is not there, so a command that only reads one never creates it. */
export async function requireExistingStore(address: StoreAddress): Promise<void> {
  const missing = await whatIsMissing(address);
  if (missing === undefined) return;
  throw new CliError(
    `${address.display}: no store at ${missing.what}`,
    EXIT.failure,
    'ERR_STORE_IO',
    { cause: missing.cause },
  );
}
