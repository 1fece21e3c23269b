import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import {
  isSessionError,
  isSessionId,
  jsonCodec,
  type SessionCodec,
  type SessionStore,
} from '@sessile/core';
import { describeValue, encodeLibrarySession, openStoreAdapter } from '@sessile/core/store';

/** A session as express-session, @fastify/session and connect hand it over: JSON data with a `cookie`. */
export interface ExpressSessionData {
  /** `expires` null, false or absent: a browser-session cookie, kept for `defaultTtlMs`. */
  cookie?: { expires?: Date | string | false | null } | null;
  // biome-ignore lint/suspicious/noExplicitAny: the app's own (augmented) session fields
  [field: string]: any;
}

type Callback<T = void> = (error?: unknown, value?: T) => void;

/**
 * The callback-style store interface of express-session (and of @fastify/session and connect).
 * With express-session installed it is an instance of express-session's own `Store`, so
 * `req.session.regenerate()`, `reload()` and `load()` work as with any other store.
 */
export interface ExpressSessionStore extends EventEmitter {
  /** The sessile store underneath. */
  readonly store: SessionStore;
  /** Calls back with the session, or `null` when absent, expired or not a valid sessile id. */
  // biome-ignore lint/suspicious/noExplicitAny: the app's own (augmented) session data type
  get(sid: string, callback: (error: unknown, session?: any) => void): void;
  set(sid: string, session: ExpressSessionData, callback?: (error?: unknown) => void): void;
  touch(sid: string, session: ExpressSessionData, callback?: (error?: unknown) => void): void;
  destroy(sid: string, callback?: (error?: unknown) => void): void;
  /** Every live session, each with its `id` property set. Records that cannot be decoded are left out. */
  // biome-ignore lint/suspicious/noExplicitAny: the app's own (augmented) session data type
  all(callback: (error: unknown, sessions?: any[] | null) => void): void;
  length(callback: (error: unknown, length?: number) => void): void;
  clear(callback?: (error?: unknown) => void): void;
  // Provided by express-session's Store base class when express-session is installed.
  // biome-ignore lint/suspicious/noExplicitAny: express-session's request and session types
  regenerate(req: any, callback: (error?: any) => any): void;
  // biome-ignore lint/suspicious/noExplicitAny: express-session's session type
  load(sid: string, callback: (error: any, session?: any) => any): void;
  // biome-ignore lint/suspicious/noExplicitAny: express-session's request and session types
  createSession(req: any, session: any): any;
  /** Closes the sessile store and emits `disconnect`. */
  close(): Promise<void>;
}

export interface ToExpressStoreOptions {
  /** Encodes each session for storage. Default `jsonCodec()`; `aesGcmCodec()` encrypts at rest. */
  codec?: SessionCodec;
  /**
   * Lifetime of a session whose cookie has no expiry (a browser-session cookie). Default 24
   * hours. It arms no timer; any duration up to `MAX_SESSION_TIMEOUT_MS` (4.32e15) is accepted.
   */
  defaultTtlMs?: number;
}

type StoreBase = new () => EventEmitter;

let expressSessionStore: StoreBase | undefined | null = null;

/** express-session's `Store` class when it is installed, so our store inherits `load`, `regenerate` and `createSession`. */
function storeBase(): StoreBase {
  if (expressSessionStore === null) {
    try {
      const required = createRequire(import.meta.url)('express-session') as { Store?: StoreBase };
      expressSessionStore = typeof required.Store === 'function' ? required.Store : undefined;
    } catch {
      expressSessionStore = undefined;
    }
  }
  return expressSessionStore ?? EventEmitter;
}

function expiresAtOf(session: ExpressSessionData, defaultTtlMs: number, now: number): number {
  const expires: unknown = session.cookie?.expires;
  // `false` is express-session's documented browser-session cookie, like null; as a Date it
  // would be the epoch, an expiry long past.
  if (expires !== undefined && expires !== null && typeof expires !== 'boolean') {
    // express-session hands over a Date; a session read back from JSON has its ISO string.
    const time =
      expires instanceof Date ? expires.getTime() : new Date(expires as string).getTime();
    if (Number.isFinite(time)) return time;
  }
  return now + defaultTtlMs;
}

/**
 * The bytes `toExpressStore` stores for an express-session session, which its `get` reads back
 * as the same session. Importers use it so that imported sessions read back identically.
 */
export function encodeExpressSession(
  sid: string,
  session: ExpressSessionData,
  codec: SessionCodec = jsonCodec(),
  now: number = Date.now(),
): Uint8Array {
  // JSON round trip: the cookie's toJSON and the session's own fields, nothing else.
  return encodeLibrarySession(codec, sid, session, now);
}

/**
 * Throws a `TypeError` for a `callback` that is neither a function nor absent, before the call
 * does anything: called later, from a settled promise, it would end the process instead.
 * express-session always passes a function.
 */
function assertCallback(callback: unknown, method: string): void {
  if (callback === undefined || typeof callback === 'function') return;
  throw new TypeError(
    `toExpressStore(): ${method}'s callback must be a function, got ${describeValue(callback)}`,
  );
}

/** Hands a failure to `callback`, or to `'error'` listeners when there is no callback. */
function fail(store: EventEmitter, error: unknown, callback: Callback<never> | undefined): void {
  // express-session stops using a store that reports a disconnect until it reconnects.
  if (isSessionError(error, 'ERR_STORE_CLOSED')) store.emit('disconnect');
  if (callback !== undefined) callback(error);
  else if (store.listenerCount('error') > 0) store.emit('error', error);
}

function settle<T>(
  store: EventEmitter,
  operation: Promise<T>,
  callback: Callback<T> | undefined,
): void {
  operation.then(
    (value) => callback?.(null, value),
    (error: unknown) => fail(store, error, callback),
  );
}

/** Like `settle`, for the writes, whose callback gets no value. */
function settleWrite(
  store: EventEmitter,
  operation: Promise<unknown>,
  callback: Callback | undefined,
): void {
  operation.then(
    () => callback?.(null),
    (error: unknown) => fail(store, error, callback),
  );
}

const DONE: Promise<void> = Promise.resolve();

/**
 * Whether `session` is one express-session can load: every session it saves has a `cookie`
 * object. One that `sessile()` saved (after `acceptExpressSession` adopted it) has none, and
 * express-session would fail the request reading its `cookie.expires`; it reads as absent.
 */
function hasCookie(session: object | undefined): session is ExpressSessionData {
  const cookie = (session as ExpressSessionData | undefined)?.cookie;
  return typeof cookie === 'object' && cookie !== null;
}

/**
 * `run()`'s promise, with a synchronous throw as its rejection: a store not built on core's
 * `BaseStore` may throw at once, which must reach the callback, not express-session's caller.
 */
function attempt<T>(run: () => Promise<T>): Promise<T> {
  try {
    return run();
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * Wraps any sessile store as a drop-in store for express-session, @fastify/session and connect.
 * The session cookie's expiry becomes the record's `expiresAt`. An id that is not a valid
 * sessile id reads as absent. Failures reach the callback as `SessionError`s. It does not lock:
 * use `sessile()` for locking and late-save protection.
 */
export function toExpressStore(
  store: SessionStore,
  options: ToExpressStoreOptions = {},
): ExpressSessionStore {
  const { defaultTtlMs, read, record } = openStoreAdapter(store, options, 'toExpressStore()');

  // The callback methods below add one `then` to the store's own promise and none of their own.

  const write = (sid: string, session: ExpressSessionData): Promise<unknown> => {
    try {
      const now = Date.now();
      const expiresAt = expiresAtOf(session, defaultTtlMs, now);
      if (expiresAt > now) {
        return store.set(sid, record(sid, session, now, expiresAt));
      }
      return isSessionId(sid) ? store.delete(sid) : DONE;
    } catch (error) {
      return Promise.reject(error);
    }
  };

  const all = async (): Promise<ExpressSessionData[]> => {
    const sessions: ExpressSessionData[] = [];
    for await (const sid of store.ids()) {
      try {
        const session = await read(sid);
        if (hasCookie(session)) sessions.push({ ...session, id: sid });
      } catch (error) {
        // Left out, as `ownedBy` leaves them: a damaged record, and one a newer version wrote
        // (a rolling deploy's other hosts), which fails no listing here.
        const leftOut =
          isSessionError(error, 'ERR_CORRUPT_RECORD') || isSessionError(error, 'ERR_UNSUPPORTED');
        if (!leftOut) throw error;
      }
    }
    return sessions;
  };

  const Base = storeBase();
  class SessileExpressStore extends Base {
    readonly store = store;

    constructor() {
      super();
      // The sessile store is open already; tell express-session it may use us.
      queueMicrotask(() => this.emit('connect'));
    }

    get(sid: string, callback: Callback<ExpressSessionData | null>): void {
      assertCallback(callback, 'get');
      read(sid).then(
        (session) => callback?.(null, hasCookie(session) ? session : null),
        (error: unknown) => fail(this, error, callback),
      );
    }

    set(sid: string, session: ExpressSessionData, callback?: Callback): void {
      assertCallback(callback, 'set');
      settleWrite(this, write(sid, session), callback);
    }

    touch(sid: string, session: ExpressSessionData, callback?: Callback): void {
      assertCallback(callback, 'touch');
      let touched: Promise<unknown> = DONE;
      if (isSessionId(sid)) {
        try {
          touched = store.touch(sid, expiresAtOf(session, defaultTtlMs, Date.now()));
        } catch (error) {
          touched = Promise.reject(error);
        }
      }
      settleWrite(this, touched, callback);
    }

    destroy(sid: string, callback?: Callback): void {
      assertCallback(callback, 'destroy');
      settleWrite(
        this,
        attempt<unknown>(() => (isSessionId(sid) ? store.delete(sid) : DONE)),
        callback,
      );
    }

    all(callback: Callback<ExpressSessionData[]>): void {
      assertCallback(callback, 'all');
      settle(this, all(), callback);
    }

    length(callback: Callback<number>): void {
      assertCallback(callback, 'length');
      settle(
        this,
        attempt(() => store.count()),
        callback,
      );
    }

    clear(callback?: Callback): void {
      assertCallback(callback, 'clear');
      settleWrite(
        this,
        attempt(() => store.clear()),
        callback,
      );
    }

    async close(): Promise<void> {
      await store.close();
      this.emit('disconnect');
    }
  }
  return new SessileExpressStore() as unknown as ExpressSessionStore;
}
