import { assertCodec, jsonCodec, type SessionCodec, type SessionData } from './codecs.js';
import { isSessionError, SessionError } from './errors.js';
import { assertOwner, generateSessionId, isReservedId, isSessionId } from './ids.js';
import {
  DEFAULT_LEASE_MS,
  DEFAULT_WAIT_MS,
  type InternalAcquireOptions,
  isLockLost,
  signalWhenWaiting,
} from './locks/lease.js';
import { LeaseLocks } from './locks/lease-locks.js';
import {
  checkDuration,
  checkOwnerLimit,
  DEFAULT_ABSOLUTE_TIMEOUT_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_SWEEP_INTERVAL_MS,
  defaultTouchAfterMs,
  MANAGER_OPTIONS,
  MAX_SESSION_TIMEOUT_MS,
  normalizeLockOptions,
  type SessionLockOptions,
  type SessionManagerOptions,
} from './manager-options.js';
import { lastAccessOf, OwnerSessions, type SessionSummary } from './owner-sessions.js';
import { manual, type Sweeper, type SweepRun, sweepEvery } from './policies.js';
import { expiryAt, fenceFor, Session, type SessionContext, type SessionInit } from './session.js';
import type { SessionLock, SessionRecord, SessionStore } from './types.js';
import {
  assertAbortSignal,
  assertKnownOptions,
  type ClosableResponse,
  connectionClosed,
  describeValue,
  hasMethods,
  MAX_SAME_NAME_COOKIES,
  storeHint,
} from './util.js';

export {
  DEFAULT_ABSOLUTE_TIMEOUT_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_SWEEP_INTERVAL_MS,
  MAX_SESSION_TIMEOUT_MS,
  type SessionLockOptions,
  type SessionManagerOptions,
} from './manager-options.js';

/**
 * The part of a `ServerResponse` (any EventEmitter) that `openForConnection` listens to; whether
 * it closed already is read as `connectionClosed` reads it.
 */
export interface ConnectionEvents extends ClosableResponse {
  once(event: 'close', listener: () => void): unknown;
  off(event: 'close', listener: () => void): unknown;
}

export interface OpenOptions {
  /** Aborting stops waiting for the lock; `open()` rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * What `session.setOwner(owner)` records as the session's `meta` when given none: adapters
   * pass their `loginMeta(request)` here. Called only at login.
   */
  loginMeta?: () => SessionData | undefined;
}

const OPEN_OPTIONS_PRESENT: Record<keyof OpenOptions, true> = { signal: true, loginMeta: true };
const OPEN_OPTIONS = Object.keys(OPEN_OPTIONS_PRESENT);
const CONNECTION_OPEN_OPTIONS = OPEN_OPTIONS.filter((name) => name !== 'signal');

/** `open()`'s or `openForConnection()`'s options, each of the `known` names and well typed. */
function checkOpenOptions(options: unknown, known: readonly string[], where: string): void {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`${where}: options must be an object, got ${describeValue(options)}`);
  }
  assertKnownOptions(options, known, where);
  const { loginMeta } = options as OpenOptions;
  if (loginMeta !== undefined && typeof loginMeta !== 'function') {
    throw new TypeError(`${where}: loginMeta must be a function, got ${describeValue(loginMeta)}`);
  }
}

export interface RevokeOwnerOptions {
  /** A session id to keep: the current one, for "sign out other devices". */
  except?: string;
}

/** A session id a client may name: reserved ids name sessile's own locks (cleanup, owners). */
function isClientId(id: unknown): id is string {
  return isSessionId(id) && !isReservedId(id);
}

function defaultOnError(error: unknown): void {
  console.error('[sessile] session error:', error);
}

/** The adapter that builds a manager from these options (`adapterManager`), for its errors. */
const builtBy = new WeakMap<object, string>();

/**
 * A manager an adapter builds from its options: every option error starts with `where`
 * (`sessile()`), as the adapter's own do.
 */
export function adapterManager<Data extends SessionData = SessionData>(
  options: SessionManagerOptions,
  where: string,
): SessionManager<Data> {
  builtBy.set(options, where);
  return new SessionManager<Data>(options);
}

/**
 * Opens and commits sessions over any `SessionStore`. Strict: `open()` never adopts an id it
 * did not issue; an unknown, expired, invalid or undecodable id gets a fresh session.
 */
export class SessionManager<Data extends SessionData = SessionData> {
  readonly store: SessionStore;
  readonly codec: SessionCodec;
  readonly idleTimeoutMs: number;
  readonly absoluteTimeoutMs: number;
  readonly touchAfterMs: number;
  readonly regenerateGraceMs: number;
  /**
   * A session opened with less than this left of its idle time has its expiry pushed back at
   * once, so that its request's own commit still finds it: `lock.leaseMs` (30 s without
   * locking), at most `idleTimeoutMs - touchAfterMs`.
   */
  readonly renewWithinMs: number;
  /** The lock settings, or `undefined` when locking is off. */
  readonly lock: Required<SessionLockOptions> | undefined;
  readonly #sweeper: Sweeper;
  readonly #onError: (error: unknown) => void;
  /** Reports an error that does not fail a request to the configured `onError`. Adapters use it too. */
  readonly reportError = (error: unknown): void => this.#report(error);
  readonly #context: SessionContext;
  readonly #owners: OwnerSessions;
  #closed = false;

  /** The manager an adapter was given (`{ manager }`), or a new one built from the options. */
  static from<Data extends SessionData = SessionData>(
    options: { manager: SessionManager<Data> } | SessionManagerOptions,
  ): SessionManager<Data> {
    if ('manager' in options && options.manager !== undefined) return options.manager;
    return new SessionManager<Data>(options as SessionManagerOptions);
  }

  constructor(options: SessionManagerOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new TypeError('SessionManager needs { store }');
    }
    // An adapter's name (`sessile()`) before every option error, when an adapter builds it.
    const where = builtBy.get(options);
    const prefix = where === undefined ? '' : `${where}: `;
    assertKnownOptions(options, MANAGER_OPTIONS, where ?? 'SessionManager');
    checkCallables(options, where);
    this.store = options.store;
    this.codec = options.codec ?? jsonCodec();
    this.idleTimeoutMs = checkDuration(
      options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      `${prefix}idleTimeoutMs`,
      false,
      MAX_SESSION_TIMEOUT_MS,
    );
    this.absoluteTimeoutMs = checkDuration(
      options.absoluteTimeoutMs ?? DEFAULT_ABSOLUTE_TIMEOUT_MS,
      `${prefix}absoluteTimeoutMs`,
      false,
      MAX_SESSION_TIMEOUT_MS,
    );
    this.touchAfterMs = checkDuration(
      options.touchAfterMs ?? defaultTouchAfterMs(this.idleTimeoutMs),
      `${prefix}touchAfterMs`,
      true,
    );
    if (this.touchAfterMs >= this.idleTimeoutMs) {
      throw new TypeError(
        `${prefix}touchAfterMs must be less than idleTimeoutMs (${this.idleTimeoutMs}), got ${this.touchAfterMs}: a session read but not saved is touched only once touchAfterMs has passed, so an active user's session would expire between touches`,
      );
    }
    this.regenerateGraceMs = checkDuration(
      options.regenerateGraceMs ?? 0,
      `${prefix}regenerateGraceMs`,
      true,
    );
    this.lock = normalizeLockOptions(options.lock, prefix);
    // At most idle - touchAfterMs, so a renewal only ever moves a touch the commit would make.
    this.renewWithinMs = Math.min(
      this.lock?.leaseMs ?? DEFAULT_LEASE_MS,
      this.idleTimeoutMs - this.touchAfterMs,
    );
    const { maxSessionsPerOwner, onLimit } = checkOwnerLimit(options, this.store, prefix);
    this.#onError = options.onError ?? defaultOnError;
    const cleanup =
      options.cleanup ??
      (this.store.capabilities.expiry === 'sweep'
        ? sweepEvery(DEFAULT_SWEEP_INTERVAL_MS)
        : manual());
    this.#sweeper = cleanup.start(this.store, {
      onError: (error) => this.#report(error),
      onSweep: options.onSweep,
    });
    this.#owners = new OwnerSessions({
      store: this.store,
      codec: this.codec,
      idleTimeoutMs: this.idleTimeoutMs,
      absoluteTimeoutMs: this.absoluteTimeoutMs,
      maxSessionsPerOwner,
      onLimit,
      waitMs: this.lock?.waitMs ?? DEFAULT_WAIT_MS,
      leaseMs: this.lock?.leaseMs ?? DEFAULT_LEASE_MS,
      extendEveryMs: this.lock?.extendEveryMs ?? Math.floor(DEFAULT_LEASE_MS / 3),
      report: (error) => this.#report(error),
    });
    this.#context = {
      store: this.store,
      owners: this.#owners,
      codec: this.codec,
      idleTimeoutMs: this.idleTimeoutMs,
      absoluteTimeoutMs: this.absoluteTimeoutMs,
      touchAfterMs: this.touchAfterMs,
      regenerateGraceMs: this.regenerateGraceMs,
      extendLockEveryMs: this.lock?.extendEveryMs ?? 0,
      renewWithinMs: this.renewWithinMs,
      report: (error) => this.#report(error),
    };
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * The session for `idFromClient` (typically from a cookie), locked first when locking is on.
   * Anything but a live session this manager's store holds yields a fresh session with a new
   * id, which is stored only once it is modified. Rejects with `ERR_LOCK_TIMEOUT` when the lock
   * is not free within `waitMs`, and with `ERR_STORE_CLOSED` after `close()`.
   */
  async open(
    idFromClient?: string | readonly string[] | null,
    options: OpenOptions = {},
  ): Promise<Session<Data>> {
    checkOpenOptions(options, OPEN_OPTIONS, 'manager.open');
    assertAbortSignal(options.signal, 'manager.open: signal');
    return this.#open(idFromClient, options, options.signal);
  }

  /** `stop`: the signal that ends a wait for the lock, or a function making it when one starts. */
  async #open(
    idFromClient: string | readonly string[] | null | undefined,
    options: Omit<OpenOptions, 'signal'>,
    stop: AbortSignal | (() => AbortSignal) | undefined,
  ): Promise<Session<Data>> {
    if (this.#closed) throw new SessionError('ERR_STORE_CLOSED', 'The session manager is closed');
    if (Array.isArray(idFromClient)) {
      const session = await this.#openFirstLive(idFromClient, options, stop);
      if (session !== undefined) return session;
    } else if (isClientId(idFromClient)) {
      const session = await this.#openExisting(idFromClient, options, stop);
      if (session !== undefined) return session;
    }
    const now = Date.now();
    return new Session<Data>(this.#context, {
      id: generateSessionId(),
      isNew: true,
      createdAt: now,
      lastAccessedAt: now,
      storedExpiresAt: undefined,
      data: {} as Data,
      lock: undefined,
      loginMeta: options.loginMeta,
    });
  }

  /**
   * The first of a request's cookie ids, in the order sent, that is a live session. An id
   * retired by a login counts only when no later one is live: the login's new id is in a later
   * cookie when the retired one sits under an old path or domain.
   */
  async #openFirstLive(
    ids: readonly unknown[],
    options: Omit<OpenOptions, 'signal'>,
    stop: AbortSignal | (() => AbortSignal) | undefined,
  ): Promise<Session<Data> | undefined> {
    let retired: string | undefined;
    for (const id of ids.slice(0, MAX_SAME_NAME_COOKIES)) {
      if (!isClientId(id) || id === retired) continue;
      const session = await this.#openExisting(id, options, stop);
      if (session === undefined) continue;
      if (!session.retired) return session;
      retired ??= id;
      await session.discard();
    }
    return retired === undefined ? undefined : this.#openExisting(retired, options, stop);
  }

  /**
   * `open()` for an HTTP request: a client that closes `connection` (its `ServerResponse`)
   * while the request waits for the session's lock stops the wait.
   */
  async openForConnection(
    idFromClient: string | readonly string[] | null | undefined,
    connection: ConnectionEvents,
    options: Omit<OpenOptions, 'signal'> = {},
  ): Promise<Session<Data>> {
    // The connection's close is what stops the wait: a signal given here would be ignored.
    checkOpenOptions(options, CONNECTION_OPEN_OPTIONS, 'manager.openForConnection');
    if (!hasMethods(connection, ['once', 'off'])) {
      throw new TypeError(
        `manager.openForConnection: response must be an HTTP response (once and off of 'close'), got ${describeValue(connection)}`,
      );
    }
    // Listens for the hang-up only once the acquire has to wait: most never do.
    let onClose: (() => void) | undefined;
    const hangUpSignal = () => {
      const hangUp = new AbortController();
      // Node's convention for an operation given up on: an `AbortError`, which an app can tell
      // from a failure (the client is gone; there is nobody to answer).
      onClose = () =>
        hangUp.abort(new DOMException('The client closed the connection', 'AbortError'));
      if (connectionClosed(connection)) onClose();
      else connection.once('close', onClose);
      return hangUp.signal;
    };
    try {
      return await this.#open(idFromClient, options, hangUpSignal);
    } finally {
      if (onClose !== undefined) connection.off('close', onClose);
    }
  }

  /**
   * The live sessions of `owner`, most recently seen first, each with its id, a `handle` safe to
   * show, `createdAt`, `lastSeenAt`, `expiresAt` and login `meta`. Given a session, lists its
   * owner's sessions (none for an anonymous session) and marks that one `current`. Rejects with
   * `ERR_UNSUPPORTED` when the store keeps no owner index, `ERR_INVALID_OWNER` for a bad owner.
   */
  async sessionsOf(ownerOrSession: string | Session<Data>): Promise<SessionSummary[]> {
    // Not instanceof: a session from another copy of core is a session too. Any other object
    // is a bad owner.
    if (
      typeof ownerOrSession === 'object' &&
      ownerOrSession !== null &&
      isSessionId(ownerOrSession.id)
    ) {
      const { owner, id } = ownerOrSession;
      if (owner === undefined) return [];
      return this.#owners.list(owner, id);
    }
    assertOwner(ownerOrSession);
    return this.#owners.list(ownerOrSession);
  }

  /**
   * Ends the session `id` now, whoever holds it: a request already in it, or waiting for its
   * lock, finds it gone, and its commit writes nothing (a late save never brings it back).
   * Resolves whether a live session was there. Works on every store.
   */
  async revoke(id: string): Promise<boolean> {
    return this.store.delete(id);
  }

  /**
   * Ends every session of `owner` ("sign out everywhere"), or all but `except` ("sign out other
   * devices"), holding the owner's lock so a login racing it is either revoked or after it.
   * Resolves how many were ended. Rejects with `ERR_UNSUPPORTED` when the store keeps no owner
   * index.
   */
  async revokeOwner(owner: string, options: RevokeOwnerOptions = {}): Promise<number> {
    assertOwner(owner);
    if (typeof options !== 'object' || options === null) {
      throw new TypeError('revokeOwner options must be an object { except }');
    }
    assertKnownOptions(options, ['except'], 'revokeOwner');
    // A cookie's value (id.mac) or a typo would match no session, and sign out the one to keep.
    const except: unknown = options.except;
    if (except !== undefined && !isSessionId(except)) {
      // Ids are never quoted in messages.
      const shown =
        typeof except === 'string' ? `a string of length ${except.length}` : describeValue(except);
      throw new TypeError(
        `revokeOwner: except must be a session id (session.id, not the cookie's value), got ${shown}`,
      );
    }
    return this.#owners.revokeAll(owner, options.except);
  }

  /** Tell the cleanup policy a response went out (`sweepByChance` rolls its dice here). Never waits. */
  afterResponse(): void {
    this.#sweeper.afterResponse();
  }

  /** Runs cleanup now, whatever the policy: for `manual()` from cron or a CLI. */
  sweep(): Promise<SweepRun> {
    return this.#sweeper.run();
  }

  /** Stops the cleanup policy, then `open()` rejects. The store stays open: close it yourself. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#sweeper.close();
  }

  async #openExisting(
    id: string,
    options: Omit<OpenOptions, 'signal'>,
    stop: AbortSignal | (() => AbortSignal) | undefined,
  ): Promise<Session<Data> | undefined> {
    let lock: SessionLock | undefined;
    try {
      let record: SessionRecord | undefined;
      if (this.lock === undefined) {
        record = await this.store.get(id);
      } else {
        const { locks } = this.store;
        const acquire: InternalAcquireOptions = {
          waitMs: this.lock.waitMs,
          leaseMs: this.lock.leaseMs,
        };
        if (typeof stop !== 'function') acquire.signal = stop;
        else if (locks instanceof LeaseLocks) acquire[signalWhenWaiting] = stop;
        else acquire.signal = stop();
        if (locks.acquireAndGet === undefined) {
          lock = await locks.acquire(id, acquire);
          record = await this.store.get(id);
        } else {
          ({ lock, record } = await locks.acquireAndGet(id, acquire));
        }
      }
      const loaded = record === undefined ? undefined : this.#load(id, record, lock, options);
      if (loaded === 'ended') {
        // Stored under longer timeouts than this manager's: it has ended now.
        await this.store.delete(id);
      } else if (
        loaded !== undefined &&
        // A session with time left, the usual case, costs this comparison and no write.
        ((loaded.storedExpiresAt as number) - Date.now() >= this.renewWithinMs ||
          (await this.#renew(loaded)))
      ) {
        return this.#session(loaded);
      }
    } catch (error) {
      await this.#release(lock);
      if (!isSessionError(error, 'ERR_CORRUPT_RECORD')) throw error;
      // The client gets a fresh session; the bad record is left to expire and be swept.
      this.#report(error);
      return undefined;
    }
    await this.#release(lock);
    return undefined;
  }

  /**
   * The session of data that decoded. Data nested deeper than `JSON.stringify` can recurse (from
   * another writer, or a process with a larger stack) decodes but can never be saved again: it
   * counts as a damaged record, so the client gets a fresh session instead of an error each time.
   */
  #session(loaded: SessionInit<Data>): Session<Data> {
    try {
      return new Session<Data>(this.#context, loaded);
    } catch (error) {
      if (!(error instanceof RangeError)) throw error;
      throw new SessionError(
        'ERR_CORRUPT_RECORD',
        'Session data is nested too deeply to be saved again',
        { cause: error },
      );
    }
  }

  /** The session `record` holds, or `'ended'` when this manager's timeouts have ended it. */
  #load(
    id: string,
    record: SessionRecord,
    lock: SessionLock | undefined,
    options: Omit<OpenOptions, 'signal'>,
  ): SessionInit<Data> | 'ended' {
    const envelope = this.codec.decode(record.data, id);
    const { expiresAt } = record;
    const now = Date.now();
    const lastAccessedAt = lastAccessOf(envelope, expiresAt, this.idleTimeoutMs, now);
    if (
      envelope.createdAt + this.absoluteTimeoutMs <= now ||
      lastAccessedAt + this.idleTimeoutMs <= now
    ) {
      return 'ended';
    }
    return {
      id,
      isNew: false,
      createdAt: envelope.createdAt,
      lastAccessedAt,
      storedExpiresAt: expiresAt,
      data: envelope.data as Data,
      owner: envelope.owner,
      // An owned session's meta is {} when the login recorded nothing, as `sessionsOf` lists it.
      meta: envelope.meta ?? (envelope.owner === undefined ? undefined : {}),
      retiredUntil: envelope.retiredUntil,
      lock,
      loginMeta: options.loginMeta,
    };
  }

  /**
   * Pushes back the expiry of a session about to end (a touch, fenced by its lock), so that a
   * request slower than the idle time left commits to a record that is still there: the request
   * was activity within the idle window. Never past the absolute timeout. False when the store
   * no longer held the session (revoked or expired meanwhile).
   */
  async #renew(loaded: SessionInit<Data>): Promise<boolean> {
    const now = Date.now();
    const storedExpiresAt = loaded.storedExpiresAt as number;
    const expiresAt = expiryAt(this, loaded.createdAt, loaded.retiredUntil, now);
    // Capped by the absolute timeout (or a retired id's grace): a touch could not move it later.
    if (expiresAt <= storedExpiresAt) return true;
    const fenced = fenceFor(this.store, loaded.lock, loaded.id, false, undefined);
    const options = fenced instanceof Promise ? await fenced : fenced;
    if (!(await this.store.touch(loaded.id, expiresAt, options))) return false;
    loaded.lastAccessedAt = now;
    loaded.storedExpiresAt = expiresAt;
    return true;
  }

  async #release(lock: SessionLock | undefined): Promise<void> {
    if (lock === undefined || isLockLost(lock)) return;
    await lock.release().catch((error: unknown) => this.#report(error));
  }

  #report(error: unknown): void {
    try {
      this.#onError(error);
    } catch {
      // A throwing error handler must not turn a handled condition into a failed request.
    }
  }
}

/**
 * Refuses a store, codec or callback of the wrong kind when the manager is made, where it would
 * otherwise fail every request (a codec factory passed uncalled) or drop every report (an
 * `onError` that is not a function).
 */
function checkCallables(options: SessionManagerOptions, where: string | undefined): void {
  const prefix = where === undefined ? '' : `${where}: `;
  const { store, codec, cleanup, onError, onSweep } = options as unknown as Record<string, unknown>;
  if (
    !hasMethods(store, ['get', 'set', 'delete']) ||
    typeof (store as { capabilities?: unknown }).capabilities !== 'object'
  ) {
    throw new TypeError(
      `${where ?? 'SessionManager'} needs { store }: a SessionStore, got ${describeValue(store)}${storeHint(store)}`,
    );
  }
  if (codec !== undefined) assertCodec(codec, `${prefix}codec`);
  if (cleanup !== undefined && !hasMethods(cleanup, ['start'])) {
    throw new TypeError(
      `${prefix}cleanup must be a cleanup policy (sweepEvery(), sweepByChance(), manual()), got ${describeValue(cleanup)}`,
    );
  }
  for (const [name, value] of [
    ['onError', onError],
    ['onSweep', onSweep],
  ] as const) {
    if (value !== undefined && typeof value !== 'function') {
      throw new TypeError(`${prefix}${name} must be a function, got ${describeValue(value)}`);
    }
  }
}
