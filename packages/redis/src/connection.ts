import { isSessionError, SessionError } from '@sessile/core';
import {
  createClient,
  type createCluster,
  type createSentinel,
  RESP_TYPES,
  type RedisClientType,
  type RedisClusterType,
  type RedisSentinelType,
} from 'redis';
import { Deadlines, noAnswer } from './deadlines.js';

/**
 * Any node-redis 5 connection, whatever its modules, scripts, RESP version and type mapping.
 * A cluster's and a Sentinel's types are invariant in their generics, so the shapes that
 * `createCluster()` and `createSentinel()` return with the default modules are named too.
 */
export type RedisConnection =
  // biome-ignore lint/suspicious/noExplicitAny: the store accepts clients of every generic shape
  | RedisClientType<any, any, any, any, any>
  // biome-ignore lint/suspicious/noExplicitAny: as above
  | RedisClusterType<any, any, any, any, any>
  | ReturnType<typeof createCluster>
  // biome-ignore lint/suspicious/noExplicitAny: as above
  | RedisSentinelType<any, any, any, any, any>
  | ReturnType<typeof createSentinel>;

export type CommandArgument = string | Buffer;

/**
 * Sends one command, given as its words, to the primary that holds `firstKey`; bulk strings come
 * back as Buffers. Never to a replica, even where the app's client reads from them: a replica
 * may not have a session's last write yet, or still have a session that was signed out.
 */
export type Send = (firstKey: string, args: CommandArgument[]) => Promise<unknown>;

interface Connectable {
  readonly isOpen: boolean;
  readonly isReady?: boolean;
  connect(): Promise<unknown>;
  close?(): Promise<unknown>;
  destroy?(): void;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  sendCommand(...args: unknown[]): Promise<unknown>;
  subscribe(channel: string, listener: (message: string) => void): Promise<unknown>;
  unsubscribe(channel: string, listener: (message: string) => void): Promise<unknown>;
  duplicate?(): Connectable;
}

interface ClusterLike extends Connectable {
  readonly masters: unknown[];
  nodeClient(node: unknown): Promise<Connectable>;
}

/** The actions that read a record key, where a key of another type is a corrupt record. */
const READS_RECORD = new Set(['get', 'touch', 'lock acquire and get']);

/** How many times a first connect is retried before `open()` gives up. */
const FIRST_CONNECT_TRIES = 3;
const MAX_RECONNECT_DELAY_MS = 1000;
const SCAN_COUNT = '1000';

export interface ConnectionOptions {
  client?: RedisConnection;
  url?: string;
  commandTimeoutMs: number;
}

/**
 * One store's way to Redis: operations that give up after `commandTimeoutMs`, a fast refusal
 * while a standalone or Sentinel client is disconnected (so nothing waits in an offline queue),
 * SCAN over every master, and the release channel's subscription.
 */
export class Connection {
  /** Names the server in errors, without credentials. */
  readonly where: string;
  /**
   * The operations' commands, words as Redis reads them: node-redis's `sendCommand`, without
   * its per-command argument parser and reply transform, which cost a `GET` about as much CPU
   * in this process as everything else on its way.
   */
  readonly send: Send;
  /**
   * `send`, with bulk strings as strings, decoded from UTF-8 by node-redis as it reads them: a
   * reply then makes no Buffer, which a read of a session's JSON otherwise pays for in garbage
   * collection. Bytes that are not UTF-8 come back with U+FFFD in their place.
   */
  readonly #sendText: Send;
  /** True for a Redis Cluster, where keys in different hash slots live on different masters. */
  readonly isCluster: boolean;
  readonly #client: Connectable;
  readonly #owned: boolean;
  readonly #timeoutMs: number;
  readonly #deadlines: Deadlines;
  #subscriber: Connectable | undefined;
  #unsubscribe: (() => Promise<unknown>) | undefined;

  private constructor(client: Connectable, owned: boolean, where: string, timeoutMs: number) {
    this.#client = client;
    this.#owned = owned;
    this.where = where;
    this.#timeoutMs = timeoutMs;
    this.#deadlines = new Deadlines(timeoutMs, where, (action, error) =>
      this.#failure(action, error),
    );
    this.isCluster = isCluster(client);
    this.send = sender(client, this.#deadlines, BYTES);
    this.#sendText = sender(client, this.#deadlines, TEXT);
  }

  /**
   * Connects within `commandTimeoutMs`: node-redis bounds only the TCP connect, and its
   * handshake waits forever on a server that accepts the connection and never answers.
   */
  static async open(options: ConnectionOptions): Promise<Connection> {
    const timeoutMs = options.commandTimeoutMs;
    if (options.client !== undefined) {
      const client = options.client as unknown as Connectable;
      const where = describeClient(client);
      if (isSubscriber(client)) {
        throw new TypeError(
          `options.client (${where}) is subscribed to channels over RESP2, where Redis refuses every other command; pass a client that is not subscribed`,
        );
      }
      // On failure the app's client is left as it is, perhaps still reconnecting: it is the app's to close.
      if (!client.isOpen) await withinTimeout(client.connect(), timeoutMs, where, 'connect');
      return new Connection(client, false, where, timeoutMs);
    }
    const url = options.url as string;
    let connected = false;
    const client = createClient({
      url,
      disableOfflineQueue: true,
      socket: {
        connectTimeout: timeoutMs,
        reconnectStrategy: (retries, cause) => {
          if (!connected && retries >= FIRST_CONNECT_TRIES) return cause;
          return Math.min(50 * 2 ** retries, MAX_RECONNECT_DELAY_MS);
        },
      },
    }) as unknown as Connectable;
    // Failures reach the caller of each operation; the event would crash a process without a listener.
    client.on('error', () => {});
    const where = describeUrl(url);
    try {
      await withinTimeout(client.connect(), timeoutMs, where, 'connect');
    } catch (error) {
      // A reconnect strategy that gives up has closed the client already; one still trying stops here.
      destroyQuietly(client);
      throw error;
    }
    connected = true;
    return new Connection(client, true, where, timeoutMs);
  }

  /**
   * Runs one operation's commands: refused at once while a standalone or Sentinel client is
   * reconnecting, failed after `commandTimeoutMs`, and every failure an `ERR_STORE_IO` naming
   * the server (a `SessionError` from the operation itself passes through). `map` turns the
   * operation's value into the answer, as `Deadlines.run` does.
   */
  call<T, R = T>(action: string, operation: () => Promise<T>, map?: (value: T) => R): Promise<R> {
    if (this.#client.isReady === false) return this.#refused();
    let started: Promise<T>;
    try {
      started = operation();
    } catch (error) {
      return Promise.reject(this.#failure(action, error));
    }
    return this.#deadlines.run(action, started, map);
  }

  /**
   * One command as `call` runs an operation: `send`, refused while disconnected, timed. `map`
   * turns the reply into the answer, as `Deadlines.run` does. With `text`, bulk strings come
   * back as strings (see `#sendText`).
   */
  command<R = unknown>(
    action: string,
    firstKey: string,
    words: CommandArgument[],
    map?: (reply: unknown) => R,
    text = false,
  ): Promise<R> {
    if (this.#client.isReady === false) return this.#refused();
    const send = text ? this.#sendText : this.send;
    return this.#deadlines.run(action, send(firstKey, words), map);
  }

  #refused(): Promise<never> {
    return Promise.reject(new SessionError('ERR_STORE_IO', `${this.where} is not connected`));
  }

  #failure(action: string, error: unknown): unknown {
    if (isSessionError(error)) return error;
    // A record key of another type (someone else's, under the prefix) holds no sessile record,
    // as `ids()`, which lists string keys only, also says: it reads as a corrupt record.
    if (
      READS_RECORD.has(action) &&
      error instanceof Error &&
      error.message.startsWith('WRONGTYPE')
    ) {
      return new SessionError('ERR_CORRUPT_RECORD', 'The Redis record is not a sessile record', {
        cause: error,
      });
    }
    return ioError(this.where, action, error);
  }

  /**
   * Every key of `type` matching `pattern` on every master, a SCAN page at a time. Each SCAN
   * goes out as `send` sends, so one left waiting for a master that is away is dropped when its
   * operation times out, instead of staying in the app's client until the master returns.
   */
  async *scan(pattern: string, type: 'string' | 'zset'): AsyncGenerator<string[]> {
    for (const master of await this.call('scan', () => this.#masters())) {
      let cursor = '0';
      do {
        const words = ['SCAN', cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT, 'TYPE', type];
        const [next, keys] = (await this.call('scan', () => master(words))) as [unknown, unknown[]];
        cursor = String(next);
        if (keys.length > 0) yield keys.map(String);
      } while (cursor !== '0');
    }
  }

  /**
   * Subscribes `onMessage` to `channel` on a connection of its own (a cluster keeps one itself),
   * within `commandTimeoutMs`. On failure, `abandon()` drops what it started.
   */
  async subscribe(channel: string, onMessage: (message: string) => void): Promise<void> {
    const client = this.#client;
    const listener = (message: string) => onMessage(message);
    // A cluster or a Sentinel client subscribes on a connection of its own.
    if (client.duplicate === undefined || isSentinel(client) || isCluster(client)) {
      this.#unsubscribe = () => client.unsubscribe(channel, listener);
      await withinTimeout(
        client.subscribe(channel, listener),
        this.#timeoutMs,
        this.where,
        'subscribe',
      );
      return;
    }
    const subscriber = client.duplicate();
    subscriber.on('error', () => {});
    this.#subscriber = subscriber;
    const subscribing = subscriber.connect().then(() => subscriber.subscribe(channel, listener));
    await withinTimeout(subscribing, this.#timeoutMs, this.where, 'subscribe');
  }

  /**
   * Drops at once every connection this store opened, for an `open` that failed: `close()`
   * would wait for the answers of a server that gives none.
   */
  abandon(): void {
    this.#deadlines.close();
    this.#unsubscribe?.().catch(() => {});
    this.#unsubscribe = undefined;
    destroyQuietly(this.#subscriber);
    this.#subscriber = undefined;
    if (this.#owned) destroyQuietly(this.#client);
  }

  /**
   * Closes the connections this store opened, and ends its subscription on an app's client
   * within `commandTimeoutMs`. A connection still waiting for an answer that came too late, or
   * whose server does not answer a PING in that time (a hung server), is dropped rather than
   * closed, since a close waits for every answer.
   */
  async close(): Promise<void> {
    const hung = this.#deadlines.overdue > 0;
    this.#deadlines.close();
    const subscriber = this.#subscriber;
    const unsubscribe = this.#unsubscribe;
    this.#subscriber = undefined;
    this.#unsubscribe = undefined;
    // Only a subscription on the app's client needs ending; a subscriber of the store's own just closes.
    if (unsubscribe !== undefined) await settlesWithin(unsubscribe(), this.#timeoutMs);
    await closeQuietly(subscriber);
    if (!this.#owned) return;
    // Replies come in order, so once a PING is answered nothing sent before it still waits, and
    // close() is prompt. A server that does not answer in time is hung: drop the connection.
    const answered =
      !hung &&
      (await settlesWithin(
        this.send('', ['PING']).catch(() => {}),
        this.#timeoutMs,
      ));
    if (answered) await closeQuietly(this.#client);
    else destroyQuietly(this.#client);
  }

  /** A way to send a command, replies as text, to each master: the client itself but on a cluster. */
  async #masters(): Promise<Array<(words: CommandArgument[]) => Promise<unknown>>> {
    const client = this.#client;
    if (!isCluster(client)) return [(words) => this.#sendText('', words)];
    return Promise.all(
      client.masters.map(async (master) => {
        const node = await client.nodeClient(master);
        return (words: CommandArgument[]) =>
          node.sendCommand(words, abortable(this.#deadlines, TEXT));
      }),
    );
  }
}

export function ioError(where: string, action: string, error: unknown): SessionError {
  const detail = error instanceof Error ? error.message || error.name : String(error);
  return new SessionError('ERR_STORE_IO', `${where}: ${action} failed: ${detail}`, {
    cause: error,
  });
}

function isCluster(client: Connectable): client is ClusterLike {
  return 'masters' in client && typeof (client as ClusterLike).nodeClient === 'function';
}

/** Replies' bulk strings as Buffers, whatever the client's own type mapping: records are bytes. */
const BYTES = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } };
/** Replies' bulk strings as strings, whatever the client's own type mapping (see `#sendText`). */
const TEXT = { typeMapping: { [RESP_TYPES.BLOB_STRING]: String } };
type Replies = typeof BYTES | typeof TEXT;

/**
 * A standalone client is refused while it reconnects (`Connection.call`), so nothing it is sent
 * waits to be written. A cluster's node or a Sentinel's primary can be away while the client
 * reads as ready, and the command then waits to be written for as long as that lasts: it is
 * sent with `deadlines.signal`, so an outage's first overdue operation drops it and every other
 * command still waiting (a listener on the signal per command, too dear for the standalone
 * path).
 */
function sender(client: Connectable, deadlines: Deadlines, replies: Replies): Send {
  if (isCluster(client)) {
    return (firstKey, args) =>
      client.sendCommand(firstKey, false, args, abortable(deadlines, replies));
  }
  if (isSentinel(client)) {
    return (_firstKey, args) => client.sendCommand(false, args, abortable(deadlines, replies));
  }
  return (_firstKey, args) => client.sendCommand(args, replies);
}

/** `replies`, with the signal that drops a command an outage left waiting to be written. */
function abortable(
  deadlines: Deadlines,
  replies: Replies,
): { typeMapping: Replies['typeMapping']; abortSignal: AbortSignal } {
  return { typeMapping: replies.typeMapping, abortSignal: deadlines.signal };
}

/** True for a standalone client in RESP2's subscriber mode; over RESP3 it still takes commands. */
function isSubscriber(client: Connectable): boolean {
  const standalone = client as { isPubSubActive?: boolean; options?: { RESP?: number } };
  return standalone.isPubSubActive === true && standalone.options?.RESP !== 3;
}

function isSentinel(client: Connectable): boolean {
  return typeof (client as { getSentinelNode?: unknown }).getSentinelNode === 'function';
}

/**
 * Settles as `step` does, or rejects once `timeoutMs` passed; every failure an `ERR_STORE_IO`
 * naming the server. For `open`'s steps, which node-redis's own timeouts do not all bound.
 */
function withinTimeout<T>(
  step: Promise<T>,
  timeoutMs: number,
  where: string,
  action: string,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(noAnswer(where, action, timeoutMs)), timeoutMs);
    step.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(isSessionError(error) ? error : ioError(where, action, error));
      },
    );
  });
}

/** True once `step` settled, false when `timeoutMs` passed first. */
function settlesWithin(step: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    step.then(
      () => {
        clearTimeout(timer);
        resolve(true);
      },
      () => {
        clearTimeout(timer);
        resolve(true);
      },
    );
  });
}

/** Stops a client at once, whatever state it is in; a closed one is left as it is. */
function destroyQuietly(client: Connectable | undefined): void {
  if (client === undefined || !client.isOpen) return;
  try {
    client.destroy?.();
  } catch {
    // Already closed underneath: nothing is left to stop.
  }
}

/**
 * Closes a client, waiting for its answers. One already closed (its reconnect strategy gave up)
 * is left as it is: node-redis's close() and destroy() both throw on it.
 */
async function closeQuietly(client: Connectable | undefined): Promise<void> {
  if (client === undefined || !client.isOpen) return;
  try {
    if (client.close !== undefined) await client.close();
    else client.destroy?.();
  } catch {
    destroyQuietly(client);
  }
}

function describeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `Redis at ${parsed.host}${parsed.pathname.length > 1 ? parsed.pathname : ''}`;
  } catch {
    return 'Redis';
  }
}

function describeClient(client: Connectable): string {
  if (isCluster(client)) return 'Redis Cluster';
  if (isSentinel(client)) return 'Redis Sentinel';
  const options = (
    client as {
      options?: { url?: string; socket?: { host?: string; port?: number; path?: string } };
    }
  ).options;
  const socket = options?.socket;
  // node-redis connects to a Unix socket's path whatever its url or host say.
  if (typeof socket?.path === 'string') return `Redis at ${socket.path}`;
  if (options?.url !== undefined) return describeUrl(options.url);
  return `Redis at ${socket?.host ?? 'localhost'}:${socket?.port ?? 6379}`;
}
