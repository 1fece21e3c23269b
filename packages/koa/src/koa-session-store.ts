import { isSessionId, type SessionCodec, type SessionStore } from '@sessile/core';
import { describeValue, openStoreAdapter } from '@sessile/core/store';

/** A session as koa-session hands it to its external store: JSON with `_expire` and `_maxAge`. */
// biome-ignore lint/suspicious/noExplicitAny: the app's own session fields
export type KoaSessionData = Record<string, any>;

/**
 * koa-session's external `store` option, over a sessile store. Every method returns a promise
 * and rejects with core's `SessionError`s.
 */
export interface KoaSessionStore {
  /** The sessile store underneath. */
  readonly store: SessionStore;
  /** Resolves to the session, or `undefined` when absent, expired or not a valid sessile id. */
  get(
    key: string,
    maxAge?: number | 'session',
    options?: object,
  ): Promise<KoaSessionData | undefined>;
  /** Stores the session for `maxAge` ms (koa-session adds 10 s to its cookie's), or `defaultTtlMs` for `'session'`. */
  set(
    key: string,
    session: KoaSessionData,
    maxAge?: number | 'session',
    options?: object,
  ): Promise<void>;
  destroy(key: string, options?: object): Promise<void>;
}

export interface ToKoaSessionStoreOptions {
  /** Encodes each session for storage. Default `jsonCodec()`; `aesGcmCodec()` encrypts at rest. */
  codec?: SessionCodec;
  /**
   * Lifetime of a session koa-session stores with `maxAge: 'session'` (a browser-session
   * cookie). Default 24 hours. It arms no timer; any duration up to
   * `MAX_SESSION_TIMEOUT_MS` (4.32e15) is accepted.
   */
  defaultTtlMs?: number;
}

/**
 * Wraps any sessile store as koa-session's external store. koa-session's keys must be valid
 * sessile ids: its default `genid` (a UUID) is, and so is any `prefix` in `[A-Za-z0-9_-]`. A key
 * that is not reads as absent and is refused on `set` with `ERR_INVALID_SESSION_ID`. It does not
 * lock: use `sessile()` for locking and late-save protection.
 */
export function toKoaSessionStore(
  store: SessionStore,
  options: ToKoaSessionStoreOptions = {},
): KoaSessionStore {
  const { defaultTtlMs, read, record } = openStoreAdapter(store, options, 'toKoaSessionStore()');

  return {
    store,
    get: (key) => read(key) as Promise<KoaSessionData | undefined>,
    async set(key, session, maxAge) {
      // A NaN or infinite age would reach the store as an expiry it refuses without naming maxAge.
      const bad =
        maxAge !== undefined &&
        maxAge !== 'session' &&
        !(typeof maxAge === 'number' && Number.isFinite(maxAge));
      if (bad) {
        throw new TypeError(
          `toKoaSessionStore(): set's maxAge must be a finite number of milliseconds or 'session', got ${describeValue(maxAge)}`,
        );
      }
      const now = Date.now();
      const ttlMs = typeof maxAge === 'number' ? maxAge : defaultTtlMs;
      if (ttlMs <= 0) {
        if (isSessionId(key)) await store.delete(key);
        return;
      }
      // The JSON round trip keeps what koa-session's own cookie mode would keep, nothing else.
      await store.set(key, record(key, session, now, now + ttlMs));
    },
    async destroy(key) {
      if (isSessionId(key)) await store.delete(key);
    },
  };
}
