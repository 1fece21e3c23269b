import { isSessionError, SessionError } from '@sessile/core';
import {
  KeyedQueue,
  lostSocket,
  MAX_POLL_DELAY_MS,
  MIN_POLL_DELAY_MS,
  REDACTED,
  sleep,
} from '@sessile/core/store';
import {
  createClient,
  type createCluster,
  type createSentinel,
  ErrorReply,
  RESP_TYPES,
  type RedisClientType,
  type RedisClusterType,
  type RedisSentinelType,
} from 'redis';
import { Deadlines, noAnswer } from './deadlines.js';
import { ReadBatches } from './read-batches.js';
import {
  MIN_REDIS_VERSION,
  versionFault,
  versionFromHello,
  versionFromInfo,
} from './server-version.js';

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
  off?(event: string, listener: (...args: unknown[]) => void): unknown;
  sendCommand(...args: unknown[]): Promise<unknown>;
  subscribe(channel: string, listener: (message: string) => void): Promise<unknown>;
  unsubscribe(channel: string, listener: (message: string) => void): Promise<unknown>;
  duplicate?(): Connectable;
}

/** A node of a cluster, with its client once node-redis has made one. */
interface ClusterNode {
  host?: unknown;
  port?: unknown;
  client?: Connectable;
}

interface ClusterLike extends Connectable {
  readonly masters: ClusterNode[];
  readonly replicas?: ClusterNode[];
  nodeClient(node: unknown): Promise<Connectable>;
}

/** A server the store talks to, named without credentials, and a way to send it one command. */
interface ServerNode {
  readonly where: string;
  send(words: CommandArgument[], replies: Replies): Promise<unknown>;
}

/** Commands `command` sends that change nothing, so that nothing is lost if one lands late. */
const READ_ONLY = new Set(['GET', 'EXISTS', 'ZRANGE']);

/** The actions that read a record key, where a key of another type is a corrupt record. */
const READS_RECORD = new Set(['get', 'touch', 'lock acquire and get']);

/** Why a call waiting behind another on its session was never sent. */
const DROPPED_BEHIND =
  'not sent: it waited behind another call on the session while an operation got no answer in time';

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
  /** `send` and `#sendText` for the commands that change nothing (`READ_ONLY`; see `sender`). */
  readonly #read: Send;
  readonly #readText: Send;
  /** True for a Redis Cluster, where keys in different hash slots live on different masters. */
  readonly isCluster: boolean;
  /** The record reads of a turn as one `MGET`, replies as text and as bytes; none on a cluster. */
  readonly #textReads: ReadBatches | undefined;
  readonly #byteReads: ReadBatches | undefined;
  readonly #client: Connectable;
  readonly #owned: boolean;
  readonly #timeoutMs: number;
  readonly #deadlines: Deadlines;
  /** The calls on each record key that may take more than one command, and those made after them. */
  readonly #order = new KeyedQueue();
  #subscriber: Connectable | undefined;
  #unsubscribe: (() => Promise<unknown>) | undefined;
  /** Stops the standalone client's reconnects from expiring these deadlines (see the constructor). */
  #unwatch: (() => void) | undefined;
  /** True while the client cannot take a command: refused at once then (see `unreadyCheck`). */
  readonly #unready: () => boolean;

  private constructor(client: Connectable, owned: boolean, where: string, timeoutMs: number) {
    this.#client = client;
    this.#owned = owned;
    this.where = where;
    this.#timeoutMs = timeoutMs;
    this.#deadlines = new Deadlines(timeoutMs, where, (action, error) =>
      this.#failure(action, error),
    );
    this.isCluster = isCluster(client);
    const unready = unreadyCheck(client);
    this.#unready = unready;
    const read = sender(client, this.#deadlines, BYTES, unready, false);
    const readText = sender(client, this.#deadlines, TEXT, unready, false);
    const sends = {
      send: sender(client, this.#deadlines, BYTES, unready),
      sendText: sender(client, this.#deadlines, TEXT, unready),
      read,
      readText,
    };
    if (!this.isCluster) {
      const textReads = new ReadBatches(readText);
      const byteReads = new ReadBatches(read);
      this.#textReads = textReads;
      this.#byteReads = byteReads;
      // The batched reads go first, so every command reaches Redis in the order it was called.
      for (const [name, send] of Object.entries(sends)) {
        sends[name as keyof typeof sends] = (firstKey, words) => {
          textReads.flush();
          byteReads.flush();
          return send(firstKey, words);
        };
      }
    }
    this.send = sends.send;
    this.#sendText = sends.sendText;
    this.#read = sends.read;
    this.#readText = sends.readText;
    // A client that reconnects writes what waited in its queue as soon as the new connection is
    // up, within the turn after its 'connect' event. Operations past their deadline by then fail
    // first, and their commands are dropped, however recently the deadlines' timer last looked:
    // a write reported failed never lands after the outage. A cluster's are its nodes' clients.
    if (isCluster(client)) {
      const unwatch = watchNodeReconnects(client, this.#deadlines);
      const unfollow = followFailovers(client);
      this.#unwatch = () => {
        unwatch();
        unfollow();
      };
    } else if (!isSentinel(client)) this.#unwatch = watchReconnects(client, this.#deadlines);
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
      // One the app is still connecting (its connect() not awaited) is waited for as well.
      await connectWithin(client, timeoutMs, where);
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
      await connectWithin(client, timeoutMs, where);
    } catch (error) {
      // A reconnect strategy that gives up has closed the client already; one still trying stops here.
      destroyQuietly(client);
      throw error;
    }
    connected = true;
    return new Connection(client, true, where, timeoutMs);
  }

  /** `commandTimeoutMs`. */
  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  /**
   * Runs one operation's commands: refused at once while a standalone or Sentinel client is
   * reconnecting, failed after `commandTimeoutMs`, and every failure an `ERR_STORE_IO` naming
   * the server (a `SessionError` from the operation itself passes through). `map` turns the
   * operation's value into the answer, as `Deadlines.run` does.
   */
  call<T, R = T>(action: string, operation: () => Promise<T>, map?: (value: T) => R): Promise<R> {
    if (this.#unready()) return this.#refused();
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
    if (this.#unready()) return this.#refused();
    const reads = READ_ONLY.has(words[0] as string);
    const send = text ? (reads ? this.#readText : this.#sendText) : reads ? this.#read : this.send;
    // One connection runs its commands in the order they were sent: while no call on this key
    // takes more than one, a command needs no queue to follow the calls made before it. The size
    // first: a lookup hashes the key, which a call with no call queued at all need not pay.
    if (this.#order.size === 0 || !this.#order.has(firstKey)) {
      return this.#deadlines.run(action, send(firstKey, words), map);
    }
    return this.#deadlines.run(
      action,
      this.#queued(firstKey, () => send(firstKey, words)),
      map,
    );
  }

  /**
   * `command` for `GET key`, the read of a record: where the server is one (not a cluster), the
   * reads started in one turn go as one `MGET` (see `ReadBatches`), unless a call on `key` is
   * still queued, which the read then follows as `command`'s does.
   */
  get<R = unknown>(
    action: string,
    key: string,
    map: (reply: unknown) => R,
    text: boolean,
  ): Promise<R> {
    const reads = text ? this.#textReads : this.#byteReads;
    if (reads === undefined || (this.#order.size !== 0 && this.#order.has(key))) {
      return this.command(action, key, ['GET', key], map, text);
    }
    if (this.#unready()) return this.#refused();
    return this.#deadlines.run(action, reads.get(key), map);
  }

  /**
   * `call`, for an operation on the record at `key` that may take more than one command (a
   * script Redis answers `NOSCRIPT` and is sent again, an owner's entry on another master, a
   * create that waits for its turn's batch): it starts once every call on `key` made before it
   * has settled, and every call on `key` made after it, `command`'s included, waits for it. So
   * calls on one session apply in the order they were made.
   */
  inOrder<T, R = T>(
    key: string,
    action: string,
    operation: () => Promise<T>,
    map?: (value: T) => R,
  ): Promise<R> {
    if (this.#unready()) return this.#refused();
    return this.#deadlines.run(action, this.#queued(key, operation), map);
  }

  /**
   * Runs `operation` after the calls on `key` before it. Its deadline runs from the call, so a
   * call left waiting behind one that got no answer fails with it, and is then never sent: an
   * operation that timed out has dropped every command still waiting (see `Deadlines.signal`).
   */
  #queued<T>(key: string, operation: () => Promise<T>): Promise<T> {
    const signal = this.#deadlines.signal;
    return this.#order.run(key, () =>
      signal.aborted ? Promise.reject(new Error(DROPPED_BEHIND)) : operation(),
    );
  }

  #refused(): Promise<never> {
    const what = isSentinel(this.#client) ? `${this.where}: the primary` : this.where;
    return Promise.reject(
      new SessionError('ERR_STORE_IO', `${what} is not connected`, { cause: new NotConnected() }),
    );
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
   * Refuses a server older than Redis 7.0 with `ERR_UNSUPPORTED` naming it and the version it
   * reports: every master of a cluster, a Sentinel's current primary, or the one server. Reads
   * `redis_version` from `INFO server`, or, where INFO is refused (an ACL without `@dangerous`,
   * a renamed command), the `version` of `HELLO`, which Redis answers without arguments from
   * 6.2 on, to every user whatever its ACL. Each server's check is one operation, bounded by
   * `commandTimeoutMs`.
   */
  async checkServerVersion(): Promise<void> {
    const nodes = await this.call('version check', () => this.#serverNodes());
    await Promise.all(
      nodes.map(async (node) => {
        const version = await this.call('version check', () => serverVersion(node));
        if (version === IN_TRANSACTION) {
          throw new TypeError(
            `options.client (${this.where}) is inside a MULTI transaction, where Redis only queues each command until EXEC; pass a client that is not (node-redis's client.multi() sends MULTI and EXEC together)`,
          );
        }
        if (typeof version !== 'string') {
          throw new SessionError(
            'ERR_UNSUPPORTED',
            `${node.where} refused both INFO and HELLO, so its version is unknown (INFO: ${version.info}; HELLO: ${version.hello}); @sessile/redis needs Redis ${MIN_REDIS_VERSION} or newer, which answers HELLO`,
          );
        }
        const fault = versionFault(node.where, version);
        if (fault !== undefined) throw new SessionError('ERR_UNSUPPORTED', fault);
      }),
    );
  }

  /** The servers the store writes to, as `checkServerVersion` checks them. */
  async #serverNodes(): Promise<ServerNode[]> {
    const client = this.#client;
    const deadlines = this.#deadlines;
    if (isCluster(client)) {
      return Promise.all(
        client.masters.map(async (master) => {
          const node = await client.nodeClient(master);
          return {
            where: `Redis Cluster master at ${describeNode(master)}`,
            send: (words, replies) => node.sendCommand(words, abortable(deadlines, replies)),
          };
        }),
      );
    }
    if (isSentinel(client)) {
      const primary = (client as unknown as { getMasterNode(): unknown }).getMasterNode();
      return [
        {
          where:
            primary === undefined
              ? this.where
              : `Redis Sentinel primary at ${describeNode(primary)}`,
          send: (words, replies) => client.sendCommand(false, words, abortable(deadlines, replies)),
        },
      ];
    }
    return [
      {
        where: this.where,
        send: (words, replies) => client.sendCommand(words, abortable(deadlines, replies)),
      },
    ];
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
    this.#detach();
    this.#unsubscribe?.().catch(() => {});
    this.#unsubscribe = undefined;
    destroyQuietly(this.#subscriber);
    this.#subscriber = undefined;
    if (this.#owned) destroyQuietly(this.#client);
  }

  /**
   * Closes the connections this store opened, and ends its subscription on an app's client
   * within `commandTimeoutMs`, once the operations in flight have settled. A connection still waiting for an answer that came too late, or
   * whose server does not answer a PING in that time (a hung server), is dropped rather than
   * closed, since a close waits for every answer.
   */
  async close(): Promise<void> {
    // Operations still in flight settle first, each by its deadline at the latest: a lock's
    // release() made just before the store's close() would otherwise be dropped unsent below,
    // and that lock held for its whole lease.
    while (this.#deadlines.busy) await sleep(MIN_POLL_DELAY_MS);
    const hung = this.#deadlines.overdue > 0;
    this.#detach();
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

  /**
   * Stops the deadlines' timer, drops whatever of this store's still waits to be written (the
   * operations that sent it have settled: nothing of theirs may land later), and stops
   * listening to the app's client.
   */
  #detach(): void {
    this.#deadlines.close();
    this.#deadlines.dropWaiting();
    this.#unwatch?.();
    this.#unwatch = undefined;
  }

  /**
   * A way to send a command, replies as text, to each master: the client itself but on a
   * cluster, whose slots are read again first.
   */
  async #masters(): Promise<Array<(words: CommandArgument[]) => Promise<unknown>>> {
    const client = this.#client;
    if (!isCluster(client)) return [(words) => this.#sendText('', words)];
    // A master added since the cluster last answered MOVED is not among its masters yet.
    await rediscover(client).catch(() => {});
    return Promise.all(
      client.masters.map(async (master) => {
        const node = await client.nodeClient(master);
        return (words: CommandArgument[]) =>
          node.sendCommand(words, abortable(this.#deadlines, TEXT));
      }),
    );
  }
}

/** What the store refuses a command with while its client is not connected: nothing was sent. */
class NotConnected extends Error {
  constructor(message = 'not connected') {
    super(message);
    this.name = 'NotConnected';
  }
}

/**
 * node-redis's errors for a connection that broke or could not be made, by name: an app's client
 * may come from another copy of node-redis. `DisconnectsClientError` is a cluster's client of a
 * node that a new reading of the slots dropped (a master replaced by its replica).
 */
const LOST_CONNECTION_ERRORS = new Set([
  'SocketClosedUnexpectedlyError',
  'ClientOfflineError',
  'ConnectionTimeoutError',
  'DisconnectsClientError',
]);

/**
 * Replies of a server that ran nothing because it cannot serve writes yet: loading its data
 * after a restart, a replica whose primary is away, a primary demoted by a failover, or a
 * cluster that is down (a master marked failed, or a restarted master before it rejoins).
 */
const NOT_SERVING_REPLIES = /^(LOADING|MASTERDOWN|READONLY|CLUSTERDOWN) /;

/**
 * Whether `error`, as an operation rejects, is a connection lost or refused (the client
 * reconnecting, a Sentinel's primary away, a socket that broke with the command in flight, a
 * server still loading or demoted, a cluster down), which the same command on the connection
 * that comes back may get past. Never `commandTimeoutMs` running out (an outage that long fails
 * the operation as it fails every other), nor an error of the command itself. A
 * command in flight when the connection broke may still have run with its answer lost, so only
 * a command safe to run twice may be sent again.
 */
export function lostConnection(error: unknown): boolean {
  const cause = isSessionError(error) ? error.cause : error;
  if (!(cause instanceof Error)) return false;
  if (cause instanceof NotConnected || LOST_CONNECTION_ERRORS.has(cause.constructor.name)) {
    return true;
  }
  return lostSocket(cause) || NOT_SERVING_REPLIES.test(cause.message);
}

export function ioError(where: string, action: string, error: unknown): SessionError {
  const cause = withoutArguments(error);
  const detail = cause instanceof Error ? cause.message || cause.name : String(cause);
  return new SessionError('ERR_STORE_IO', `${where}: ${action} failed: ${detail}`, { cause });
}

/** Where Redis starts to repeat the words of a command it does not know (`rename-command`). */
const ECHOED_ARGUMENTS = /, with args beginning with:.*/s;
/** A key's hash tag that holds a session id, as every record and lock key of the store does. */
const ID_TAG = /\{[A-Za-z0-9_-]{16,128}\}/g;

/**
 * `error` without what of the command Redis repeats in its reply: an unknown command's
 * arguments (a session's keys, so its id, and the start of its record), and any key naming a
 * session. Ids are bearer secrets and errors go to logs. A copy of the same class; the error
 * itself when there is nothing to remove.
 */
function withoutArguments(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const redact = (text: string) =>
    text.replace(ECHOED_ARGUMENTS, '').replace(ID_TAG, `{${REDACTED}}`);
  const message = redact(error.message);
  if (message === error.message) return error;
  const copy = Object.create(Object.getPrototypeOf(error)) as Error;
  Object.defineProperties(copy, Object.getOwnPropertyDescriptors(error));
  copy.message = message;
  if (error.stack !== undefined) copy.stack = error.stack.replace(error.message, () => message);
  return copy;
}

function isCluster(client: Connectable): client is ClusterLike {
  return 'masters' in client && typeof (client as ClusterLike).nodeClient === 'function';
}

/** Replies' bulk strings as Buffers, whatever the client's own type mapping: records are bytes. */
const BYTES = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } };
/** Replies' bulk strings as strings, whatever the client's own type mapping (see `#sendText`). */
const TEXT = { typeMapping: { [RESP_TYPES.BLOB_STRING]: String } };
/** As `TEXT`, and a RESP3 map as the flat array RESP2 gives: `HELLO`'s reply either way. */
const FLAT_TEXT = {
  typeMapping: { [RESP_TYPES.BLOB_STRING]: String, [RESP_TYPES.MAP]: Array },
};
type Replies = typeof BYTES | typeof TEXT | typeof FLAT_TEXT;

/**
 * Every command (but a read on a standalone client) goes out with `deadlines.signal`, so an
 * outage's first overdue operation drops it, with every other command of the store's still
 * waiting to be written, before anything can write it later. Commands do wait, whatever the store refuses up front: a cluster's node or a
 * Sentinel's primary can be away while the client reads as ready; a standalone client keeps, in
 * its offline queue (on by default in the app's clients), a command it took while ready and had
 * not written when the connection dropped, and holds any command behind a socket that a hung
 * server no longer reads (even with the queue off). Without the signal, those commands reach
 * Redis once it answers again, after their operations were reported failed.
 *
 * On a standalone client a command that changes nothing (`writes` false) goes without the
 * signal: written late, it changes nothing either, so it is spared node-redis's listener on the
 * signal and the objects that listener takes.
 *
 * A standalone client is refused while it reconnects, and a Sentinel client while its primary
 * is away (`unready`), every command of an operation and not only its first (`Connection.call`
 * checks before the first), so an operation's next step fails at once rather than waiting for
 * its deadline.
 */
function sender(
  client: Connectable,
  deadlines: Deadlines,
  replies: Replies,
  unready: () => boolean,
  writes = true,
): Send {
  const options = signalled(deadlines, replies);
  if (isCluster(client)) {
    return (firstKey, args) => {
      const sent = options();
      return client
        .sendCommand(firstKey, false, args, sent)
        .catch((error: unknown) =>
          resendOnTryAgain(error, sent.abortSignal, () =>
            client.sendCommand(firstKey, false, args, options()),
          ),
        );
    };
  }
  if (isSentinel(client)) {
    return (_firstKey, args) =>
      unready()
        ? Promise.reject(new NotConnected('the primary is not connected'))
        : client.sendCommand(false, args, options());
  }
  if (!writes) {
    return (_firstKey, args) =>
      unready() ? Promise.reject(new NotConnected()) : client.sendCommand(args, replies);
  }
  return (_firstKey, args) =>
    unready() ? Promise.reject(new NotConnected()) : client.sendCommand(args, options());
}

/**
 * Sends a cluster command again, with back-off, while its slot's master answers `TRYAGAIN`: its
 * keys are split between the two masters of a slot being moved (`redis-cli --cluster reshard`),
 * and Redis ran nothing. Until the operation fails for want of an answer (`signal` aborts).
 */
async function resendOnTryAgain(
  error: unknown,
  signal: AbortSignal,
  send: () => Promise<unknown>,
): Promise<unknown> {
  let delayMs = MIN_POLL_DELAY_MS;
  for (;;) {
    if (!(error instanceof Error && error.message.startsWith('TRYAGAIN ')) || signal.aborted) {
      throw error;
    }
    await sleep(delayMs);
    delayMs = Math.min(delayMs * 2, MAX_POLL_DELAY_MS);
    if (signal.aborted) throw error;
    try {
      return await send();
    } catch (next) {
      error = next;
    }
  }
}

/**
 * When the store refuses an operation at once, with `ERR_STORE_IO`, instead of leaving it to
 * wait for its deadline: while a standalone or Sentinel client is not ready, and while a
 * Sentinel client's primary is away. node-redis's Sentinel client reads as ready through a
 * primary outage and holds every command until a primary answers again (5.12 at least), so
 * the store asks `getMasterNode()`, which names the primary only while a client of it is
 * connected. A cluster's nodes are not checked: a command for a master that is away waits for
 * its deadline (see `sender`).
 *
 * Refusing leaves the Sentinel client nothing to send, and some of its ways back to a primary
 * start from a command that found the primary away (a primary client that does not reconnect
 * by itself, a failover whose announcement was missed). So while the primary is away, one
 * `PING` at a time waits for it in the store's place.
 */
function unreadyCheck(client: Connectable): () => boolean {
  if (!isSentinel(client)) return () => client.isReady === false;
  const sentinel = client as Connectable & { getMasterNode(): unknown };
  let pinging = false;
  const pinged = () => {
    pinging = false;
  };
  return () => {
    if (client.isReady === false) return true;
    if (sentinel.getMasterNode() !== undefined) return false;
    if (!pinging) {
      pinging = true;
      sentinel.sendCommand(false, ['PING']).then(pinged, pinged);
    }
    return true;
  };
}

type SignalledReplies = { typeMapping: Replies['typeMapping']; abortSignal: AbortSignal };

/**
 * `replies`, with the signal that drops a command an outage left waiting to be written: one
 * object for every command sent until the signal aborts (node-redis copies a command's options
 * before it adds to them), rather than one per command.
 */
function signalled(deadlines: Deadlines, replies: Replies): () => SignalledReplies {
  let options: SignalledReplies | undefined;
  return () => {
    const signal = deadlines.signal;
    if (options?.abortSignal !== signal)
      options = { typeMapping: replies.typeMapping, abortSignal: signal };
    return options;
  };
}

/** `replies` with the signal, for the few commands sent outside `send` (a new object each). */
function abortable(deadlines: Deadlines, replies: Replies): SignalledReplies {
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
 * Connects `client`, or waits for the connect already under way, within `timeoutMs`. A client
 * whose server refuses it keeps trying by its reconnect strategy and reports each failure only
 * as an 'error' event, so when time runs out the last of those is what failed, and the cause.
 */
async function connectWithin(client: Connectable, timeoutMs: number, where: string): Promise<void> {
  let lastError: unknown;
  const listener = (error: unknown) => {
    lastError = error;
  };
  client.on('error', listener);
  try {
    const failed = () => lastError;
    if (!client.isOpen) await withinTimeout(client.connect(), timeoutMs, where, 'connect', failed);
    else await untilReady(client, timeoutMs, where, failed);
  } finally {
    client.off?.('error', listener);
  }
}

/**
 * Settles as `step` does, or rejects once `timeoutMs` passed; every failure an `ERR_STORE_IO`
 * naming the server. For `open`'s steps, which node-redis's own timeouts do not all bound. A
 * timeout after `failed()` reported an error says the step failed, with that error as cause.
 */
function withinTimeout<T>(
  step: Promise<T>,
  timeoutMs: number,
  where: string,
  action: string,
  failed: () => unknown = () => undefined,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(timedOut(where, action, timeoutMs, failed())), timeoutMs);
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

/** A step of `open` out of time: failed, with the error it met last, or unanswered. */
function timedOut(where: string, action: string, timeoutMs: number, error: unknown): SessionError {
  return error === undefined ? noAnswer(where, action, timeoutMs) : ioError(where, action, error);
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

/** What `serverVersion` answers for a connection inside a MULTI transaction. */
const IN_TRANSACTION = Symbol('in a MULTI transaction');

/**
 * The version `node` reports: `redis_version` from `INFO server`, else `HELLO`'s `version`; where
 * Redis refuses both (an error reply, not a failed connection), what each answered.
 */
async function serverVersion(
  node: ServerNode,
): Promise<string | typeof IN_TRANSACTION | { info: string; hello: string }> {
  let info: string;
  try {
    const reply = await node.send(['INFO', 'server'], TEXT);
    // A connection the app left inside MULTI answers every command so, and runs none.
    if (reply === 'QUEUED') return IN_TRANSACTION;
    const version = versionFromInfo(String(reply));
    if (version !== undefined) return version;
    info = 'no redis_version';
  } catch (error) {
    if (!isErrorReply(error)) throw error;
    info = error.message;
  }
  let hello: string;
  try {
    const version = versionFromHello(await node.send(['HELLO'], FLAT_TEXT));
    if (version !== undefined) return version;
    hello = 'no version';
  } catch (error) {
    if (!isErrorReply(error)) throw error;
    hello = error.message;
  }
  return { info, hello };
}

/** An error reply from Redis (the command was refused), as against a failed connection. */
function isErrorReply(error: unknown): error is Error {
  if (error instanceof ErrorReply) return true;
  if (typeof error !== 'object' || error === null) return false;
  // The app's client may come from another copy of node-redis.
  for (
    let proto = Object.getPrototypeOf(error);
    proto !== null;
    proto = Object.getPrototypeOf(proto)
  ) {
    if ((proto as { constructor?: { name?: string } }).constructor?.name === 'ErrorReply')
      return true;
  }
  return false;
}

/**
 * Resolves once an open client can take commands: a standalone or Sentinel client ready, a
 * cluster that knows its masters. For an app's client whose connect() is still under way.
 */
async function untilReady(
  client: Connectable,
  timeoutMs: number,
  where: string,
  failed: () => unknown,
): Promise<void> {
  const ready = () => (isCluster(client) ? client.masters.length > 0 : client.isReady !== false);
  const started = performance.now();
  while (!ready()) {
    if (!client.isOpen) {
      throw new SessionError('ERR_STORE_IO', `${where}: connect failed: the client was closed`);
    }
    if (performance.now() - started >= timeoutMs) {
      throw timedOut(where, 'connect', timeoutMs, failed());
    }
    await sleep(10);
  }
}

/** The deadlines of each standalone client's open stores, and the client's one listener for them. */
const reconnectWatchers = new WeakMap<
  Connectable,
  { deadlines: Set<Deadlines>; listener: () => void }
>();

/**
 * Expires `deadlines`' overdue operations whenever `client` connects again, before it writes what
 * waited in its queue. One listener per client, however many stores share it: Node warns past 10.
 * Returns what stops it.
 */
function watchReconnects(client: Connectable, deadlines: Deadlines): () => void {
  let watch = reconnectWatchers.get(client);
  if (watch === undefined) {
    const all = new Set<Deadlines>();
    watch = {
      deadlines: all,
      listener: () => {
        for (const each of all) each.expireOverdue();
      },
    };
    reconnectWatchers.set(client, watch);
    client.on('connect', watch.listener);
  }
  const { deadlines: all, listener } = watch;
  all.add(deadlines);
  return () => {
    all.delete(deadlines);
    if (all.size > 0 || reconnectWatchers.get(client) !== watch) return;
    reconnectWatchers.delete(client);
    client.off?.('connect', listener);
  };
}

/**
 * `watchReconnects` on the client of each node of `cluster`: those it has now, and each it makes
 * later (a node it meets, or one it connects to again after a new topology), which it announces
 * with 'node-connect' before that client writes anything. A client the cluster dropped is let go.
 * Returns what stops it.
 */
function watchNodeReconnects(cluster: ClusterLike, deadlines: Deadlines): () => void {
  const watched = new Map<Connectable, () => void>();
  const watchNodes = () => {
    const current = new Set<Connectable>();
    for (const node of [...cluster.masters, ...(cluster.replicas ?? [])]) {
      if (node.client !== undefined) current.add(node.client);
    }
    for (const [client, stop] of watched) {
      if (current.has(client)) continue;
      stop();
      watched.delete(client);
    }
    for (const client of current) {
      if (!watched.has(client)) watched.set(client, watchReconnects(client, deadlines));
    }
  };
  watchNodes();
  cluster.on('node-connect', watchNodes);
  return () => {
    cluster.off?.('node-connect', watchNodes);
    for (const stop of watched.values()) stop();
    watched.clear();
  };
}

/**
 * Asks `cluster` to read its slots again each time one of its nodes' connections fails, as it
 * does itself only on a `MOVED` reply: a master that died never answers one, so node-redis 5
 * would send that master's slots to it for good, after a replica took its place. Through the
 * cluster's own `_slots.rediscover` (node-redis runs one at a time), from a master still ready.
 * Returns what stops it.
 */
function followFailovers(cluster: ClusterLike): () => void {
  const listener = () => {
    rediscover(cluster).catch(() => {});
  };
  cluster.on('node-error', listener);
  return () => cluster.off?.('node-error', listener);
}

/**
 * Has `cluster` read its slots again, from a master still ready, through node-redis 5's own
 * `_slots.rediscover` (what a `MOVED` reply runs; one at a time). Resolves at once where
 * there is no such method or no ready master.
 */
async function rediscover(cluster: ClusterLike): Promise<void> {
  const self = (cluster as { _self?: unknown })._self ?? cluster;
  const slots = (self as { _slots?: { rediscover?(startWith: unknown): Promise<unknown> } })._slots;
  if (typeof slots?.rediscover !== 'function') return;
  const ready = cluster.masters.find((master) => master.client?.isReady === true);
  if (ready !== undefined) await slots.rediscover(ready.client);
}

/** A cluster's or a Sentinel's node as `host:port`. */
function describeNode(node: unknown): string {
  const { host, port } = node as { host?: unknown; port?: unknown };
  return `${String(host)}:${String(port)}`;
}
