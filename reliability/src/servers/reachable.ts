import { PG_URL, REDIS_URL } from '../stores.js';

/** Why the store's server cannot be reached, or undefined when it can. */
export async function serverUnavailable(store: string): Promise<string | undefined> {
  try {
    if (store === 'redis') {
      const { createClient } = await import('redis');
      const client = createClient({
        url: REDIS_URL,
        socket: { connectTimeout: 2000, reconnectStrategy: false },
      });
      client.on('error', () => {});
      await client.connect();
      await client.close();
    } else if (store === 'postgres') {
      const pg = await import('pg');
      const client = new pg.default.Client({
        connectionString: PG_URL,
        connectionTimeoutMillis: 2000,
      });
      await client.connect();
      await client.end();
    }
    return undefined;
  } catch (error) {
    return `${store === 'redis' ? REDIS_URL : PG_URL} not reachable (${String(error)})`;
  }
}
