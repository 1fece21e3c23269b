import { createHash } from 'node:crypto';
import { importOptional, type OpenTarget, type Target, Unavailable } from '../adapter.js';
import { decodeBody, encodeBody } from './engines.js';
import { type SessileStoreSpec, sessileStore, sessileViaExpress } from './sessile.js';

/** The server the connect-redis peer uses too. */
const REDIS_URL = 'redis://127.0.0.1:6379';

interface RawRedis {
  connect(): Promise<unknown>;
  on(event: string, listener: (error: unknown) => void): void;
  withTypeMapping(mapping: object): RawRedis;
  get(key: string): Promise<Uint8Array | null>;
  set(key: string, value: Uint8Array, options: object): Promise<unknown>;
  pExpireAt(key: string, at: number): Promise<unknown>;
  exists(keys: string[]): Promise<number>;
  scanIterator(options: object): AsyncIterable<string[]>;
  unlink(keys: string[]): Promise<number>;
  close(): Promise<unknown>;
}

type RedisModule = {
  createClient(options: object): RawRedis;
  RESP_TYPES: { BLOB_STRING: number };
};

/** A key prefix per run directory, so workers of one run share it and runs never meet. */
function prefixFor(dir: string, kind: string): string {
  return `sessile-bench:${kind}-${createHash('sha256').update(dir).digest('hex').slice(0, 12)}:`;
}

async function reachableClient(): Promise<{ client: RawRedis; module: RedisModule }> {
  const module = await importOptional<RedisModule>('redis');
  const client = module.createClient({
    url: REDIS_URL,
    socket: { connectTimeout: 2000, reconnectStrategy: false },
  });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    throw new Unavailable(`Redis not reachable at ${REDIS_URL} (${(error as Error).message})`);
  }
  return { client, module };
}

async function deleteKeys(client: RawRedis, prefix: string): Promise<void> {
  for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) {
    if (keys.length > 0) await client.unlink(keys);
  }
}

const redisSpec: SessileStoreSpec = {
  name: 'redis',
  description: '`RedisStore` on node-redis 5, Redis on 127.0.0.1:6379, pub/sub-woken lease locks',
  durability: "Redis's own persistence (this server: as configured; RDB or AOF)",
  packageName: '@sessile/redis',
  className: 'RedisStore',
  options: (dir) => ({ url: REDIS_URL, prefix: prefixFor(dir, 'store') }),
  engine: 'raw-redis',
  peers: ['connect-redis'],
  cleanupNote: 'none needed: Redis drops each record at its exact expiresAt (PXAT)',
};

/** `target` with the store's keys deleted when it closes. */
function deletingKeys(target: Target): Target {
  return {
    ...target,
    needsServer: true,
    async open(dir) {
      const { client } = await reachableClient();
      const opened = await target.open(dir).catch(async (error) => {
        await client.close();
        throw error;
      });
      return {
        ...opened,
        async close() {
          await opened.close();
          await deleteKeys(client, prefixFor(dir, 'store'));
          await client.close();
        },
      };
    },
  };
}

/** `RedisStore`, its keys deleted when the target closes. */
export const redisStore: Target = deletingKeys(sessileStore(redisSpec));

/** The same store through `toExpressStore`, driven like connect-redis. */
export const redisExpressStore: Target = deletingKeys(sessileViaExpress(redisSpec));

/** Bare node-redis GET and SET of the same bytes, with PXAT expiry: the floor under `redis`. */
export const redisEngine: Target = {
  name: 'raw-redis',
  kind: 'engine',
  description: 'bare node-redis 5 GET/SET PXAT of the encoded body, Redis on 127.0.0.1:6379',
  durability: "Redis's own persistence",
  needsServer: true,
  async open(dir) {
    const { client, module } = await reachableClient();
    const bytes = client.withTypeMapping({ [module.RESP_TYPES.BLOB_STRING]: Buffer });
    const prefix = prefixFor(dir, 'raw');
    return {
      async create(id, body, expiresAt) {
        await bytes.set(prefix + id, encodeBody(body), {
          expiration: { type: 'PXAT', value: Math.ceil(expiresAt) },
          condition: 'NX',
        });
      },
      async read(id) {
        const value = await bytes.get(prefix + id);
        return value === null ? undefined : decodeBody(value);
      },
      async update(id, body, expiresAt) {
        await bytes.set(prefix + id, encodeBody(body), {
          expiration: { type: 'PXAT', value: Math.ceil(expiresAt) },
          condition: 'XX',
        });
      },
      async touch(id, expiresAt) {
        await bytes.pExpireAt(prefix + id, Math.ceil(expiresAt));
      },
      cleanupNote: 'none needed: Redis expires keys itself',
      async expiredLeft(ids) {
        return ids.length === 0 ? 0 : client.exists(ids.map((id) => prefix + id));
      },
      async close() {
        await deleteKeys(client, prefix);
        await client.close();
      },
    } satisfies OpenTarget;
  },
};
