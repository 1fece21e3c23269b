import { escapeGlob } from '@sessile/core/store';
import { requireDriver } from '../resolve.js';
import {
  notThePeer,
  type PeerOptions,
  type PeerSession,
  type PeerSource,
  parseSession,
  peerIoError,
} from './peer.js';

interface RedisClient {
  connect(): Promise<unknown>;
  on(event: string, listener: (error: unknown) => void): void;
  scanIterator(options: { MATCH: string; COUNT: number }): AsyncIterable<string[] | string>;
  get(key: string): Promise<string | null>;
  pTTL(key: string): Promise<number>;
  pExpireTime(key: string): Promise<number>;
  close?(): Promise<unknown>;
  quit?(): Promise<unknown>;
}

const SCAN_COUNT = 500;
/** connect-redis's default `prefix`. */
export const CONNECT_REDIS_PREFIX = 'sess:';

/** connect-redis: one string key `<prefix><sid>` per session, JSON, expiring by its TTL. */
export async function openConnectRedis(
  url: string,
  display: string,
  options: PeerOptions,
): Promise<PeerSource> {
  const prefix = options.prefix ?? CONNECT_REDIS_PREFIX;
  const { createClient } = requireDriver<{ createClient(options: object): RedisClient }>(
    'redis',
    ['@sessile/redis'],
    'Reading connect-redis data',
  );
  const client = createClient({ url, socket: { connectTimeout: 5000, reconnectStrategy: false } });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    throw peerIoError(display, 'connect', error);
  }
  // Redis before 7.0 has no PEXPIRETIME; asked once, then left out.
  let hasExpireTime = true;
  /** The key's expiry as Redis keeps it (PEXPIRETIME), or `undefined` where Redis cannot tell. */
  async function storedExpiry(key: string): Promise<number | undefined> {
    if (!hasExpireTime) return undefined;
    try {
      return await client.pExpireTime(key);
    } catch (error) {
      if (!/unknown command/i.test((error as Error).message)) throw error;
      hasExpireTime = false;
      return undefined;
    }
  }
  async function read(key: string): Promise<PeerSession> {
    const id = key.slice(prefix.length);
    let text: string | null;
    let ttlMs: number;
    let stored: number | undefined;
    try {
      [text, ttlMs, stored] = await Promise.all([
        client.get(key),
        client.pTTL(key),
        storedExpiry(key),
      ]);
    } catch (error) {
      return { id, problem: `unreadable (${(error as Error).message.split('\n')[0]})` };
    }
    // -2: the key expired between the GET and the PTTL; read as gone, never kept for good.
    if (text === null || ttlMs === -2) return { id, expiresAt: 0 };
    const { session, problem } = parseSession(text);
    if (session === undefined) return { id, problem: problem as string };
    // -1: no TTL, kept until deleted.
    if (ttlMs < 0) return { id, session };
    const expiresAt = Date.now() + ttlMs;
    // Without PEXPIRETIME, now + PTTL to the second: it moves by the few ms a read takes.
    const storedExpiresAt =
      stored !== undefined && stored >= 0 ? stored : Math.round(expiresAt / 1000) * 1000;
    return { id, session, expiresAt, storedExpiresAt };
  }
  return {
    display,
    async count() {
      return undefined;
    },
    async *sessions() {
      try {
        const match = `${escapeGlob(prefix)}*`;
        for await (const batch of client.scanIterator({ MATCH: match, COUNT: SCAN_COUNT })) {
          // MATCH is a pattern: the prefix is matched literally, and only keys that start with
          // the prefix itself are read.
          const keys = (Array.isArray(batch) ? batch : [batch]).filter((key) =>
            key.startsWith(prefix),
          );
          // Issued together, node-redis pipelines them.
          for (const entry of await Promise.all(keys.map(read))) yield entry;
        }
      } catch (error) {
        if ((error as Error).name === 'CliError') throw error;
        throw notThePeer(display, `cannot scan (${(error as Error).message})`, error);
      }
    },
    async close() {
      await (client.close?.() ?? client.quit?.())?.catch(() => {});
    },
  };
}
