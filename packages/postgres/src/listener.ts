import { createHash } from 'node:crypto';
import pg from 'pg';
import { OwnSockets } from './sockets.js';

const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 5000;
/** Turns off `idle_session_timeout` where the server has it, and does nothing on one before 14. */
const IDLE_FOREVER = `SELECT set_config(name, '0', false) FROM pg_settings WHERE name = 'idle_session_timeout'`;

/**
 * What a release NOTIFYs for a key: its SHA-256 in hex, never the key. Every role that can
 * connect to the database may LISTEN on any channel, and a key is a session id, a bearer secret.
 */
export function notifyPayloadOf(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** `notifyPayloadOf` computed by the server, for the SQL expression `key` (a text value). */
export function notifyPayloadSql(key: string): string {
  return `encode(sha256(convert_to(${key}, 'UTF8')), 'hex')`;
}

/**
 * One dedicated connection per store that LISTENs on the store's lock channel and wakes the
 * local waiters of a key when another process releases it. It connects on the first watch, and
 * after losing the server it reconnects with back-off and wakes every waiter, since releases may
 * have been missed meanwhile; the waiters' bounded poll covers the gap.
 */
export class LockListener {
  readonly #config: pg.ClientConfig;
  readonly #channel: string;
  readonly #closeTimeoutMs: number;
  /** Wake-ups by the NOTIFY payload of their key. */
  readonly #watchers = new Map<string, Set<() => void>>();
  #client: pg.Client | undefined;
  /** The connection's socket, unless the app's config brings its own `stream`. */
  readonly #sockets = new OwnSockets();
  #connecting = false;
  #retryTimer: NodeJS.Timeout | undefined;
  #retryDelayMs = RECONNECT_MIN_MS;
  #closed = false;

  /** `closeTimeoutMs` bounds how long `close()` waits for the server to see the connection off. */
  constructor(config: pg.ClientConfig, channel: string, closeTimeoutMs: number) {
    this.#config = config;
    this.#channel = channel;
    this.#closeTimeoutMs = closeTimeoutMs;
  }

  /** True while the LISTEN connection is up. */
  get listening(): boolean {
    return this.#client !== undefined;
  }

  watch(key: string, wake: () => void): () => void {
    const payload = notifyPayloadOf(key);
    let set = this.#watchers.get(payload);
    if (set === undefined) {
      set = new Set();
      this.#watchers.set(payload, set);
    }
    set.add(wake);
    this.#connect();
    return () => {
      set.delete(wake);
      if (set.size === 0 && this.#watchers.get(payload) === set) this.#watchers.delete(payload);
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    const client = this.#client;
    this.#client = undefined;
    // `end()` waits for the server to close the connection, which a silent one never does.
    client?.end().catch(() => {});
    await this.#sockets.closeWithin(this.#closeTimeoutMs);
  }

  #connect(): void {
    if (this.#closed || this.#client !== undefined || this.#connecting) return;
    if (this.#retryTimer !== undefined) return;
    this.#connecting = true;
    const client = new pg.Client(
      this.#config.stream === undefined
        ? { ...this.#config, stream: this.#sockets.stream }
        : this.#config,
    );
    client.on('error', () => this.#lost(client));
    client.on('end', () => this.#lost(client));
    client.on('notification', (message) => {
      if (message.channel === this.#channel && message.payload !== undefined) {
        for (const wake of this.#watchers.get(message.payload) ?? []) wake();
      }
    });
    client
      .connect()
      // The connection idles by design: a server's idle_session_timeout (PostgreSQL 14+) would
      // end it over and over, each time waking every waiter, so it is turned off for this one.
      .then(() => client.query(IDLE_FOREVER))
      .then(() => client.query(`LISTEN "${this.#channel}"`))
      .then(
        () => {
          this.#connecting = false;
          if (this.#closed) {
            client.end().catch(() => {});
            return;
          }
          this.#client = client;
          this.#retryDelayMs = RECONNECT_MIN_MS;
          this.#wakeAll();
        },
        () => {
          this.#connecting = false;
          client.end().catch(() => {});
          this.#retryLater();
        },
      );
  }

  #lost(client: pg.Client): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    client.end().catch(() => {});
    this.#wakeAll();
    this.#retryLater();
  }

  #retryLater(): void {
    if (this.#closed || this.#retryTimer !== undefined) return;
    const delayMs = this.#retryDelayMs;
    this.#retryDelayMs = Math.min(RECONNECT_MAX_MS, this.#retryDelayMs * 2);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (this.#watchers.size > 0) this.#connect();
    }, delayMs);
    this.#retryTimer.unref();
  }

  #wakeAll(): void {
    for (const set of this.#watchers.values()) for (const wake of set) wake();
  }
}
