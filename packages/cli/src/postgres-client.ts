import type { StoreAddress } from './addresses.js';
import { CliError, EXIT } from './exit-codes.js';
import { requireDriver } from './resolve.js';

export interface PostgresClient {
  connect(): Promise<void>;
  query(sql: string, params?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
  on(event: string, listener: (error: unknown) => void): void;
  end(): Promise<void>;
}

/**
 * Runs `work` on one connection to the server of a `postgres:` address, for a question asked
 * before the store's `open()`, which creates what is missing; a failure names the address.
 */
export async function withPostgresClient<T>(
  address: StoreAddress,
  work: (client: PostgresClient) => Promise<T>,
): Promise<T> {
  const pg = requireDriver<{ Client: new (options: object) => PostgresClient }>(
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
    return await work(client);
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
