import { isSessionId, type SessionCodec, type SessionStore } from '@sessile/core';
import { openStoreAdapter } from '@sessile/core/store';

/** A session as hono-sessions hands it to its store: `_data`, `_expire` (an ISO date or null) and flags. */
export type HonoSessionsData = {
  _data: Record<string, { value: unknown; flash: boolean }>;
  _expire: string | null;
  _delete: boolean;
  _accessed: string | null;
  _id?: string;
};

/**
 * hono-sessions' `Store` interface over a sessile store. Every method returns a promise and
 * rejects with core's `SessionError`s.
 */
export interface HonoSessionsStore {
  /** The sessile store underneath. */
  readonly store: SessionStore;
  /** Resolves to the session, or `null` when absent, expired or not a valid sessile id. */
  getSessionById(sessionId?: string): Promise<HonoSessionsData | null>;
  /** Stores a new session; never overwrites one that exists. */
  createSession(sessionId: string, initialData: HonoSessionsData): Promise<void>;
  /** Updates a session that still exists: a late save never brings a deleted session back. */
  persistSessionData(sessionId: string, sessionData: HonoSessionsData): Promise<void>;
  deleteSession(sessionId: string): Promise<void>;
}

export interface ToHonoSessionsStoreOptions {
  /** Encodes each session for storage. Default `jsonCodec()`; `aesGcmCodec()` encrypts at rest. */
  codec?: SessionCodec;
  /**
   * Lifetime of a session without `_expire` (hono-sessions without `expireAfterSeconds`).
   * Default 24 hours. It arms no timer; any duration up to `MAX_SESSION_TIMEOUT_MS` (4.32e15)
   * is accepted.
   */
  defaultTtlMs?: number;
}

/**
 * Wraps any sessile store as a hono-sessions `Store`. hono-sessions' ids (UUIDs) are valid
 * sessile ids; an id that is not reads as absent. The session's `_expire` becomes the record's
 * `expiresAt`. It does not lock: use `sessile()` for locking.
 */
export function toHonoSessionsStore(
  store: SessionStore,
  options: ToHonoSessionsStoreOptions = {},
): HonoSessionsStore {
  const { defaultTtlMs, read, record } = openStoreAdapter(store, options, 'toHonoSessionsStore()');

  const write = async (
    sessionId: string,
    session: HonoSessionsData,
    only: 'absent' | 'present',
  ): Promise<void> => {
    const now = Date.now();
    const expire = session._expire === null ? Number.NaN : Date.parse(session._expire);
    const expiresAt = Number.isFinite(expire) ? expire : now + defaultTtlMs;
    if (expiresAt <= now) {
      if (isSessionId(sessionId)) await store.delete(sessionId);
      return;
    }
    // The id travels in the key, not in the record.
    const { _id, ...rest } = session;
    await store.set(sessionId, record(sessionId, rest, now, expiresAt), { only });
  };

  return {
    store,
    async getSessionById(sessionId) {
      // read() answers undefined for anything that is not a sessile id, a missing one included.
      const session = await read(sessionId as string);
      return (session as HonoSessionsData | undefined) ?? null;
    },
    createSession: (sessionId, initialData) => write(sessionId, initialData, 'absent'),
    persistSessionData: (sessionId, sessionData) => write(sessionId, sessionData, 'present'),
    async deleteSession(sessionId) {
      if (isSessionId(sessionId)) await store.delete(sessionId);
    },
  };
}
