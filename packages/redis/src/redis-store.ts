import {
  type HeldLease,
  type OwnedSession,
  SessionError,
  type SessionRecord,
  type StoreCapabilities,
  type SweepResult,
} from '@sessile/core';
import {
  assertDuration,
  assertKnownOptions,
  assertPositiveInteger,
  BaseStore,
  type BaseStoreOptions,
  describeValue,
  lockLost,
  type SweepProgress,
  TAKES_TEXT,
} from '@sessile/core/store';
import { checkCommands, refusedBy } from './command-check.js';
import { Connection, type RedisConnection } from './connection.js';
import { expireAtMs, indexedUntilFor, KeyLayout, redisTimeMs, timeText } from './keys.js';
import { RedisLocks } from './locks.js';
import { OwnedCreates } from './owned-creates.js';
import { OwnerIndex } from './owner-index.js';
import {
  cutShortInOwner,
  decodeOwner,
  decodeRecord,
  decodeText,
  encodeRecord,
  headerFault,
  hexDouble,
  MAX_DATA_BYTES,
} from './record-format.js';
import { FENCED_DELETE, FENCED_SET, TOUCH, WRITE } from './scripts.js';

export type { RedisConnection } from './connection.js';

export interface RedisStoreOptions extends BaseStoreOptions {
  /**
   * A node-redis 5 client the app already has: `createClient()`, `createCluster()` or
   * `createSentinel()`. Connected if it is not yet; the store never closes it. Give `client` or `url`.
   */
  client?: RedisConnection;
  /** A `redis://` or `rediss://` URL; the store makes its own client and closes it on `close()`. */
  url?: string;
  /** Starts every key the store reads or writes. Well-formed Unicode, without `{` or `}` (the id is the hash tag). Default `'sessile:'`. */
  prefix?: string;
  /** How long one command may take, queued or sent, before it fails with `ERR_STORE_IO`. Default 5000. */
  commandTimeoutMs?: number;
}

const KNOWN_OPTIONS = ['client', 'url', 'prefix', 'commandTimeoutMs', 'maxRecordBytes'] as const;
const DEFAULT_PREFIX = 'sessile:';
const DEFAULT_COMMAND_TIMEOUT_MS = 5000;
/** How often `touch` follows a record to a new owner before it gives up. */
const MAX_TOUCH_TRIES = 4;

/**
 * Sessions in Redis, shared by every host that uses the same server (or cluster) and prefix.
 * Redis drops expired records itself at their exact `expiresAt`, so there is nothing to sweep.
 */
export class RedisStore extends BaseStore {
  readonly capabilities: StoreCapabilities = {
    shared: 'cluster',
    expiry: 'native',
    durable: true,
    expiryIndex: false,
    ownerIndex: true,
  };
  readonly locks: RedisLocks;
  readonly prefix: string;
  readonly #connection: Connection;
  readonly #keys: KeyLayout;
  readonly #owners: OwnerIndex;
  readonly #ownedCreates: OwnedCreates;

  private constructor(options: RedisStoreOptions, connection: Connection, keys: KeyLayout) {
    super(options);
    this.#connection = connection;
    this.#keys = keys;
    this.#owners = new OwnerIndex(connection, keys);
    this.#ownedCreates = new OwnedCreates(connection.send);
    this.prefix = keys.prefix;
    this.locks = new RedisLocks(connection, keys);
  }

  /**
   * The store's `set` takes core's library adapters' records as their JSON text, sent as one
   * string with the header (see `encodeRecord`).
   */
  static [TAKES_TEXT](store: object): boolean {
    return #connection in store;
  }

  /**
   * Connects, checks that the server is Redis 7.0 or newer (every master of a cluster) and takes
   * every command the store needs, subscribes to lock releases, and resolves once the store can
   * serve.
   */
  static async open(options: RedisStoreOptions): Promise<RedisStore> {
    const { prefix, commandTimeoutMs } = checkOptions(options);
    const keys = new KeyLayout(prefix);
    const connection = await Connection.open({
      client: options.client,
      url: options.url,
      commandTimeoutMs,
    });
    try {
      await connection.checkServerVersion();
      await checkCommands(connection, keys);
      const store = new RedisStore(options, connection, keys);
      await connection
        .subscribe(keys.releaseChannel, (key) => store.locks.released(key))
        .catch((error: unknown) => {
          throw refusedBy(error, connection.where) ?? error;
        });
      return store;
    } catch (error) {
      connection.abandon();
      throw error;
    }
  }

  protected _get(id: string, now: number): Promise<SessionRecord | undefined> {
    return this.#read(id, now, false, keep);
  }

  /** Hands `read` a view into the reply rather than a copy of its data, or its text for a reader of text. */
  protected override _lend<T>(
    id: string,
    now: number,
    read: (record: Readonly<SessionRecord>, id: string) => T,
    readsText = false,
  ): Promise<T | undefined> {
    return this.#read(id, now, true, read, readsText);
  }

  /**
   * `asText` asks for the reply as text, which node-redis decodes from UTF-8 as it reads it: no
   * Buffer for the reply or the data, for a lent reader that takes the text (core's library
   * adapters). Where the text may not be the bytes' own (`decodeText`), it reads the bytes.
   */
  #read<T>(
    id: string,
    now: number,
    lent: boolean,
    read: (record: SessionRecord, id: string) => T,
    asText = false,
  ): Promise<T | undefined> {
    const key = this.#keys.record(id);
    const answer = (value: unknown): T | undefined | Promise<T | undefined> => {
      if (value === null) return undefined;
      const record =
        typeof value === 'string' ? decodeText(value) : decodeRecord(value as Buffer, lent);
      if (record === undefined) return this.#read(id, now, lent, read, false);
      return record.expiresAt > now ? read(record, id) : undefined;
    };
    // A promise `answer` returns settles the read, as `then` would.
    return this.#connection.get('get', key, answer, asText) as Promise<T | undefined>;
  }

  protected _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
    lease: HeldLease | undefined,
  ): Promise<boolean> {
    const expireAt = expireAtMs(record.expiresAt, now);
    const owner = expireAt === undefined ? undefined : record.owner;
    const key = this.#keys.record(id);
    // Every locked commit of an anonymous session: a script no heavier than the fence needs.
    if (lease !== undefined && owner === undefined && expireAt !== undefined) {
      const keys = [key, this.#keys.lock(lease.key)];
      const condition = only === undefined ? '' : only === 'absent' ? 'NX' : 'XX';
      const value = encodeRecord(record);
      const args = [lease.token, value, timeText(expireAt), condition, ...this.#releaseArgs(lease)];
      return this.#connection.inOrder(
        key,
        'set',
        () => FENCED_SET.run(this.#connection.send, keys, args),
        fenced,
      );
    }
    if (lease !== undefined || owner !== undefined) {
      return this.#connection.inOrder(key, 'set', () =>
        this.#setChecked(id, key, record, only, now, lease, expireAt, owner),
      );
    }
    // A record written already expired leaves nothing behind, as if Redis had dropped it at once.
    if (expireAt === undefined) {
      if (only === 'absent') {
        return this.#connection.command('set', key, ['EXISTS', key], (n) => n === 0);
      }
      return this.#connection.command(
        'set',
        key,
        ['DEL', key],
        (deleted) => only !== 'present' || (deleted as number) > 0,
      );
    }
    const words = ['SET', key, encodeRecord(record), 'PXAT', timeText(expireAt)];
    if (only !== undefined) words.push(only === 'absent' ? 'NX' : 'XX');
    return this.#connection.command('set', key, words, written);
  }

  /**
   * A write that a script checks first: giving the record an owner, or fenced by a lock and
   * already expired. `expireAt` and `owner` are what `_set` derived from the record (no owner
   * once expired).
   */
  async #setChecked(
    id: string,
    key: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
    lease: HeldLease | undefined,
    expireAt: number | undefined,
    owner: string | undefined,
  ): Promise<boolean> {
    const indexedUntil = owner === undefined ? 0 : indexedUntilFor(record.expiresAt, now);
    // Where the record and its owner's index share a server, one script writes both.
    const together = owner !== undefined && !this.#connection.isCluster;
    // Otherwise a new record has no entry to keep: its entry goes in first, without asking the record.
    let indexed = owner !== undefined && only === 'absent' && !together;
    if (indexed) await this.#owners.add(owner as string, id, indexedUntil);
    const value = encodeRecord(record, indexedUntil);
    if (together && only === 'absent' && lease === undefined) {
      const index = this.#keys.ownerIndex(owner as string);
      return this.#ownedCreates.create(key, index, value, expireAt as number, id, indexedUntil);
    }
    if (indexed && lease === undefined) {
      const words = ['SET', key, value, 'PXAT', timeText(expireAt as number), 'NX'];
      return written(await this.#connection.send(key, words));
    }
    const keys = [key, this.#keys.lock(lease?.key ?? id)];
    if (together) keys.push(this.#keys.ownerIndex(owner as string));
    const args = [
      lease?.token ?? '',
      value,
      expireAt === undefined ? '' : timeText(expireAt),
      only ?? '',
      owner ?? '',
      String(redisTimeMs(record.expiresAt)),
      '',
      id,
      String(indexedUntil),
      ...this.#releaseArgs(lease),
    ];
    for (;;) {
      if (indexed) args[6] = '1';
      const reply = await WRITE.run(this.#connection.send, keys, args);
      if (!Array.isArray(reply) || indexed) return fenced(reply);
      await this.#owners.add(owner as string, id, indexedUntil);
      indexed = true;
    }
  }

  protected _touch(
    id: string,
    expiresAt: number,
    now: number,
    lease: HeldLease | undefined,
  ): Promise<boolean> {
    const expireAt = expireAtMs(expiresAt, now);
    // An unfenced touch names no lock and leaves the owner's arguments out: each word costs
    // node-redis an encoding step, and a touch has more of them than anything else it sends.
    const keys = [this.#keys.record(id)];
    const args = [
      lease?.token ?? '',
      hexDouble(expiresAt),
      expireAt === undefined ? '' : timeText(expireAt),
      timeText(redisTimeMs(expiresAt)),
    ];
    if (lease !== undefined) {
      keys.push(this.#keys.lock(lease.key));
      if (lease.release === true) args.push('', '', ...this.#releaseArgs(lease));
    }
    // What every touch of a record without an owner, or whose owner's entry already covers
    // it, takes: one script call. The owner's steps, when needed, come before the touch's
    // answer, so a later call on the session waits for them.
    return this.#connection.inOrder(
      keys[0] as string,
      'touch',
      () =>
        TOUCH.run(this.#connection.send, keys, args).then((reply) =>
          Array.isArray(reply) ? this.#touchOwned(id, expiresAt, now, keys, args, reply) : reply,
        ),
      touched,
    );
  }

  /**
   * `touch` of a record whose owner's entry must be raised first (the script answered
   * `{owner}`); another try is needed only when a concurrent write gave the record yet another
   * owner in between. Resolves with the last script's reply.
   */
  async #touchOwned(
    id: string,
    expiresAt: number,
    now: number,
    keys: string[],
    args: string[],
    firstReply: unknown[],
  ): Promise<unknown> {
    let reply: unknown = firstReply;
    for (let tries = 1; tries < MAX_TOUCH_TRIES; tries++) {
      const owner = decodeOwner((reply as Buffer[])[0] as Buffer);
      const indexedUntil = indexedUntilFor(expiresAt, now);
      await this.#owners.add(owner, id, indexedUntil);
      args[4] = owner;
      args[5] = hexDouble(indexedUntil);
      reply = await TOUCH.run(this.#connection.send, keys, args);
      if (!Array.isArray(reply)) return reply;
    }
    throw new SessionError(
      'ERR_STORE_IO',
      `${this.#connection.where}: touch gave up after the session changed owner ${MAX_TOUCH_TRIES} times`,
    );
  }

  protected _delete(id: string, _now: number, lease: HeldLease | undefined): Promise<boolean> {
    const key = this.#keys.record(id);
    if (lease === undefined) {
      return this.#connection.command('delete', key, ['DEL', key], isPositive);
    }
    const keys = [key, this.#keys.lock(lease.key)];
    const args = [lease.token, ...this.#releaseArgs(lease)];
    return this.#connection.inOrder(
      key,
      'delete',
      () => FENCED_DELETE.run(this.#connection.send, keys, args),
      fenced,
    );
  }

  /** Redis removes expired keys itself; a sweep has nothing to do. */
  protected async _sweep(progress: SweepProgress): Promise<SweepResult> {
    return progress.result(true);
  }

  protected override _ownedBy(owner: string, now: number): Promise<OwnedSession[]> {
    return this.#owners.list(owner, now, (id) => this._get(id, now));
  }

  protected async _count(now: number): Promise<number> {
    let count = 0;
    for await (const _ of this._ids(now)) count++;
    return count;
  }

  protected async *_ids(_now: number): AsyncIterable<string> {
    // SCAN may return a key twice while Redis resizes its table.
    const seen = new Set<string>();
    for await (const page of this.#connection.scan(this.#keys.recordPattern, 'string')) {
      for (const key of page) {
        const id = this.#keys.idOf(key);
        if (id === undefined || seen.has(id)) continue;
        seen.add(id);
        yield id;
      }
    }
  }

  protected async _clear(): Promise<void> {
    // Records first: an index entry without its record is skipped, a record without its entry is not.
    await this.#unlinkAll(this.#keys.recordPattern, 'string');
    await this.#unlinkAll(this.#keys.ownerIndexPattern, 'zset');
  }

  async #unlinkAll(pattern: string, type: 'string' | 'zset'): Promise<void> {
    for await (const page of this.#connection.scan(pattern, type)) {
      // Settled together: a page's failure is reported once none of its UNLINKs can still be
      // sent, else one left waiting could delete a session written after `clear` failed.
      await this.#io('clear', () =>
        allSettled(page.map((key) => this.#connection.send(key, ['UNLINK', key]))),
      );
    }
  }

  protected async _close(): Promise<void> {
    await this.#connection.close();
  }

  /** What a fenced script needs to free the lease with its write: the channel and the lock's key. */
  #releaseArgs(lease: HeldLease | undefined): string[] {
    return lease?.release === true ? [this.#keys.releaseChannel, lease.key] : [];
  }

  #io<T, R = T>(action: string, run: () => Promise<T>, map?: (value: T) => R): Promise<R> {
    return this.#connection.call(action, run, map);
  }
}

/** Resolves once every step settled, or rejects with the first failure, only once all have settled. */
async function allSettled(steps: Promise<unknown>[]): Promise<void> {
  for (const outcome of await Promise.allSettled(steps)) {
    if (outcome.status === 'rejected') throw outcome.reason;
  }
}

/** A `SET`'s answer: `null` when its `NX` or `XX` kept it from writing. */
function written(reply: unknown): boolean {
  return reply !== null;
}

/** A `DEL`'s answer: whether it removed a key. */
function isPositive(reply: unknown): boolean {
  return (reply as number) > 0;
}

/**
 * `touch`'s answer from its script's reply (not an owner): rejects, as `get` rejects those
 * bytes, where the script answered the header it left alone.
 */
function touched(reply: unknown): boolean {
  if (Buffer.isBuffer(reply)) throw headerFault(reply) ?? cutShortInOwner();
  return fenced(reply);
}

/** A fenced script's answer: -1 when the lock did not hold, else whether it wrote. */
function fenced(reply: unknown): boolean {
  if (reply === -1) throw lockLost();
  return reply === 1;
}

function checkOptions(options: RedisStoreOptions): { prefix: string; commandTimeoutMs: number } {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('RedisStore.open() needs an options object with client or url');
  }
  assertKnownOptions(options, KNOWN_OPTIONS, 'RedisStore.open()');
  const { client, url } = options;
  if ((client === undefined) === (url === undefined)) {
    throw new TypeError('RedisStore.open() needs exactly one of client or url');
  }
  if (url !== undefined) assertRedisUrl(url);
  if (client !== undefined && !isNodeRedisConnection(client)) {
    throw new TypeError(
      `client must be a node-redis 5 client from createClient(), createCluster() or createSentinel() (not a client pool, and not an ioredis client), got ${describeValue(client)}`,
    );
  }
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  // Keys go to Redis as UTF-8, where every lone surrogate becomes U+FFFD: two such prefixes
  // would name the same keys, and SCAN's replies would match neither.
  if (
    typeof prefix !== 'string' ||
    prefix.length === 0 ||
    /[{}]/.test(prefix) ||
    !prefix.isWellFormed()
  ) {
    throw new TypeError(
      `prefix must be a non-empty string of well-formed Unicode without { or }, got ${describeValue(prefix)}`,
    );
  }
  const commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  assertDuration(commandTimeoutMs, 'commandTimeoutMs', { zero: false });
  // BaseStore checks it too, but only once connected: a bad value should cost no connection.
  if (options.maxRecordBytes !== undefined) {
    assertPositiveInteger(options.maxRecordBytes, 'maxRecordBytes');
    if (options.maxRecordBytes > MAX_DATA_BYTES) {
      throw new TypeError(
        `maxRecordBytes must be at most ${MAX_DATA_BYTES} (the largest data a Redis string holds with the record's header and owner), got ${options.maxRecordBytes}`,
      );
    }
  }
  return { prefix, commandTimeoutMs };
}

/**
 * True for what the store can use as `client`: a node-redis 5 client, cluster or Sentinel client.
 * Anything else (a node-redis client pool, which takes no subscription, or an ioredis client,
 * whose `connect()` rejects once connected) would fail only once connected, and as `ERR_STORE_IO`.
 */
function isNodeRedisConnection(client: unknown): boolean {
  if (typeof client !== 'object' || client === null) return false;
  const methods = client as Record<string, unknown>;
  return (
    typeof methods.isOpen === 'boolean' &&
    ['connect', 'sendCommand', 'subscribe', 'unsubscribe', 'on'].every(
      (name) => typeof methods[name] === 'function',
    )
  );
}

/**
 * Refuses what node-redis could not connect to. The error never holds the URL: it may carry a
 * password, and Node's own "Invalid URL" error keeps the whole input.
 */
function assertRedisUrl(url: unknown): void {
  if (typeof url !== 'string') {
    throw new TypeError(`url must be a redis:// or rediss:// URL, got ${describeValue(url)}`);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError('url must be a redis:// or rediss:// URL, and cannot be parsed as a URL');
  }
  const { protocol, username, password, pathname } = parsed;
  if (protocol !== 'redis:' && protocol !== 'rediss:') {
    throw new TypeError(`url must be a redis:// or rediss:// URL, not ${protocol}//`);
  }
  // node-redis decodes them with decodeURIComponent, which throws a URIError on a stray '%'.
  for (const [part, text] of [
    ['user name', username],
    ['password', password],
  ]) {
    try {
      decodeURIComponent(text as string);
    } catch {
      throw new TypeError(
        `url has a ${part} that is not percent-encoded: write a '%' in it as %25`,
      );
    }
  }
  if (pathname.length > 1 && !/^\/\d+$/.test(pathname)) {
    throw new TypeError('url may have a database number as its path (/0, /1, …), and nothing else');
  }
}

/** `_get`'s reader: the record as it is, its data already a copy. */
function keep(record: SessionRecord): SessionRecord {
  return record;
}
