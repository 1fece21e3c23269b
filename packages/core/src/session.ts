import {
  isPlainObject,
  type SessionCodec,
  type SessionData,
  type SessionEnvelope,
} from './codecs.js';
import { SessionError } from './errors.js';
import { assertOwner, generateSessionId } from './ids.js';
import { Deadline, Deadlines } from './locks/deadlines.js';
import { isLockLost } from './locks/lease.js';
import type { OwnerSessions } from './owner-sessions.js';
import type { SessionLock, SessionStore, SetOptions } from './types.js';

/** `'modified'` when the data, or the id (after `regenerate()`), differ from what is stored. */
export type SessionStatus = 'unchanged' | 'modified' | 'destroyed';

/**
 * What `commit()` did. `'gone'`: the stored session had meanwhile been invalidated or had
 * expired, so nothing was written (a late save never brings a session back).
 */
export type CommitOutcome = 'saved' | 'touched' | 'unchanged' | 'destroyed' | 'gone';

/** The manager's settings a session needs. Internal to core. */
export interface SessionContext {
  readonly store: SessionStore;
  readonly codec: SessionCodec;
  readonly idleTimeoutMs: number;
  readonly absoluteTimeoutMs: number;
  readonly touchAfterMs: number;
  readonly regenerateGraceMs: number;
  readonly extendLockEveryMs: number;
  /** A locked session with less than this left before its stored expiry is renewed (see `manager.renewWithinMs`). */
  readonly renewWithinMs: number;
  readonly owners: OwnerSessions;
  report(error: unknown): void;
}

export interface SessionInit<Data extends SessionData> {
  id: string;
  isNew: boolean;
  createdAt: number;
  lastAccessedAt: number;
  /** The stored record's `expiresAt`, for a loaded session. */
  storedExpiresAt: number | undefined;
  data: Data;
  lock: SessionLock | undefined;
  /** The stored owner and login metadata, for a loaded session. */
  owner?: string;
  meta?: SessionData;
  /** The stored `retiredUntil`: the id was regenerated, and lives no longer than this. */
  retiredUntil?: number;
  /** What `setOwner(owner)` records when given no `meta`: an adapter's `loginMeta(request)`. */
  loginMeta?: () => SessionData | undefined;
}

const MAX_CREATE_ATTEMPTS = 3;
const OPEN_BRACE = 0x7b;

/** The next lease extension of every open locked session, on one timer. */
const lockExtensions = new Deadlines();

/**
 * One session for the length of one request, from `SessionManager.open()` to `commit()`.
 * Change `data` freely; `commit()` finds out whether it changed by comparing its JSON with
 * what was loaded. After `commit()` the session is finished: later changes are not saved.
 */
export class Session<Data extends SessionData = SessionData> {
  readonly #context: SessionContext;
  #id: string;
  #isNew: boolean;
  readonly #createdAt: number;
  #lastAccessedAt: number;
  #storedExpiresAt: number | undefined;
  #data: Data;
  #snapshot: string;
  /** The data as the store holds it under this id: loaded, then saved. */
  #storedJson: string;
  #retiredUntil: number | undefined;
  /** Set when the session must be written even if the data look unchanged (a new id). */
  #mustSave = false;
  #destroyed = false;
  /** Set with `#destroyed` when the store no longer held the session, rather than by `invalidate()`. */
  #revoked = false;
  #lock: SessionLock | undefined;
  #owner: string | undefined;
  #meta: SessionData | undefined;
  readonly #loginMeta: (() => SessionData | undefined) | undefined;
  #lockError: unknown;
  /** Extends the lock's lease, then books the next extension; booked while the session is open. */
  #extendLock: Deadline | undefined;
  /** The touch that keeps a long request's session from expiring under it, while it runs. */
  #renewal: Promise<void> | undefined;
  #commit: Promise<CommitOutcome> | undefined;
  #outcome: CommitOutcome | undefined;
  /** When the latest save happened. */
  #savedAt = 0;
  /** The new id `setOwner()` stored in this request, which `discard()` then deletes. */
  #storedByLogin: string | undefined;
  #regenerated = false;
  /** The error of a callback refused (see `refuseCallback`): `commit()` rejects with it. */
  #refused: TypeError | undefined;

  /** Use `SessionManager.open()`. */
  constructor(context: SessionContext, init: SessionInit<Data>) {
    this.#context = context;
    this.#id = init.id;
    this.#isNew = init.isNew;
    this.#createdAt = init.createdAt;
    this.#lastAccessedAt = init.lastAccessedAt;
    this.#storedExpiresAt = init.storedExpiresAt;
    this.#data = init.data;
    this.#snapshot = JSON.stringify(init.data);
    this.#storedJson = this.#snapshot;
    this.#retiredUntil = init.retiredUntil;
    this.#lock = init.lock;
    this.#owner = init.owner;
    this.#meta = init.meta;
    this.#loginMeta = init.loginMeta;
    if (this.#lock !== undefined) this.#keepLockAlive(this.#lock);
    // express-session's `req.session.userId = 42` would be a property nobody saves: the data
    // belongs in `data`, and in strict code (every ES module) such an assignment throws.
    Object.preventExtensions(this);
  }

  /** The session id. It changes on `regenerate()`. */
  get id(): string {
    return this.#id;
  }

  /** True until this id is first stored: a fresh session, or one just regenerated. */
  get isNew(): boolean {
    return this.#isNew;
  }

  /** When the session began, in ms since the epoch; kept across `regenerate()`. */
  get createdAt(): number {
    return this.#createdAt;
  }

  /** The previous access as the store knows it (last save or touch), in ms since the epoch. */
  get lastAccessedAt(): number {
    return this.#lastAccessedAt;
  }

  /**
   * True when another request regenerated this session's id under `regenerateGraceMs`: the id
   * lives only until its grace ends, and its cookie is never sent again, since the client may
   * already hold the id that replaced it.
   */
  get retired(): boolean {
    return this.#retiredUntil !== undefined;
  }

  /**
   * True once this request's `regenerate()` removed (or retired) the id the session was stored
   * under: the client's cookie for that id names nothing any more.
   */
  get regenerated(): boolean {
    return this.#regenerated;
  }

  /** Who the session belongs to (a user id), set by `setOwner()`; `undefined` before login. */
  get owner(): string | undefined {
    return this.#owner;
  }

  /**
   * What was captured at login (`setOwner`'s `meta`, or the adapter's `loginMeta`): `{}` when
   * neither gave anything, `undefined` before login.
   */
  get meta(): SessionData | undefined {
    return this.#meta;
  }

  /** The session's data, a plain JSON object. Mutate it, or assign a new object. */
  get data(): Data {
    return this.#data;
  }

  set data(value: Data) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new TypeError('session data must be a plain object');
    }
    this.#data = value;
  }

  get status(): SessionStatus {
    if (this.#destroyed) return 'destroyed';
    return this.#mustSave || JSON.stringify(this.#data) !== this.#snapshot
      ? 'modified'
      : 'unchanged';
  }

  /** True once `commit()` or `discard()` has been called. */
  get committed(): boolean {
    return this.#commit !== undefined;
  }

  /** True while this session holds its lock and the lock's lease has not been lost. */
  get locked(): boolean {
    return this.#lock !== undefined && !isLockLost(this.#lock) && this.#commit === undefined;
  }

  /**
   * Moves the data to a new id, against session fixation: call it on login. The old id is
   * deleted now, or, with the manager's `regenerateGraceMs`, stays readable that long for
   * requests already in flight. The new id is stored by `commit()`, or at once for a session
   * that has an owner, holding the owner's lock, so that signing the owner out everywhere or
   * capping its sessions finds it under one id or the other, never between the two. `createdAt`
   * is kept, so regenerating never extends the absolute timeout. If the stored session was
   * revoked or had expired meanwhile, the session ends instead (`status` `'destroyed'`), so that
   * nothing brings its data back under the new id. Rejects with `ERR_LOCK_LOST`, changing
   * nothing, once the lock was lost: the old id may by then be another request's to save.
   * A callback is refused: await the promise instead.
   */
  regenerate(): Promise<void>;
  regenerate(callback?: unknown): Promise<void> {
    return this.#refuseCallback('regenerate', callback) ?? this.#regenerate();
  }

  async #regenerate(): Promise<void> {
    this.#assertActive('regenerate');
    if (this.#revoked) return;
    const owner = this.#owner;
    if (owner === undefined || this.#isNew) {
      await this.#moveToNewId();
      return;
    }
    await this.#context.owners.locked(owner, async () => {
      if (!(await this.#moveToNewId())) return;
      if ((await this.#write(false)) === 'gone') {
        this.#end();
        return;
      }
      // As after a login: discard() drops the new id, and commit() saves it again.
      this.#storedByLogin = this.#id;
      this.#lastAccessedAt = this.#savedAt;
      this.#storedExpiresAt = this.expiresAtFor(this.#savedAt);
    });
  }

  /**
   * Retires (or deletes) the stored id and takes a fresh one, not yet stored. False, and the
   * session ends, when the store no longer held the old id.
   */
  async #moveToNewId(): Promise<boolean> {
    const { store, regenerateGraceMs } = this.#context;
    let stillStored = true;
    if (!this.#isNew) {
      this.#assertLockHeld();
      // A renewal's touch landing after the retire would keep the old id past its grace.
      if (this.#renewal !== undefined) await this.#renewal;
      // An id this request stored at login has not reached any client: nothing needs its grace.
      const graced =
        regenerateGraceMs > 0 &&
        this.#storedExpiresAt !== undefined &&
        this.#storedByLogin !== this.#id;
      stillStored = graced
        ? await this.#retire(Date.now() + regenerateGraceMs)
        : await store.delete(this.#id, await this.#fence(false, undefined));
      this.#regenerated = true;
    }
    this.#id = generateSessionId();
    this.#isNew = true;
    this.#mustSave = true;
    this.#storedExpiresAt = undefined;
    this.#retiredUntil = undefined;
    // Revoked (or expired) while this request held it: moving its data to a new id would bring
    // it back, so the session ends instead, as a save would find it gone.
    if (!stillStored) this.#end();
    return stillStored;
  }

  /**
   * Keeps the old id's record as the store holds it (never this request's changes) until
   * `until` at the latest, marked so that no later save or touch through that id, by a request
   * already in flight with it, keeps it any longer. False when the store no longer held it.
   */
  async #retire(until: number): Promise<boolean> {
    const { store, codec } = this.#context;
    const retiredUntil = Math.min(until, this.#retiredUntil ?? until);
    const envelope: SessionEnvelope = {
      createdAt: this.#createdAt,
      lastAccessedAt: this.#lastAccessedAt,
      data: JSON.parse(this.#storedJson) as SessionData,
      retiredUntil,
    };
    if (this.#owner !== undefined) {
      envelope.owner = this.#owner;
      if (this.#meta !== undefined) envelope.meta = this.#meta;
    }
    const expiresAt = Math.min(this.#storedExpiresAt ?? retiredUntil, retiredUntil);
    const data = codec.encode(envelope, this.#id);
    const record =
      this.#owner === undefined ? { data, expiresAt } : { data, expiresAt, owner: this.#owner };
    const fenced = this.#fence(false, 'present');
    return store.set(this.#id, record, fenced instanceof Promise ? await fenced : fenced);
  }

  /**
   * Gives the session an owner at login, usually right after `regenerate()`. Holding the
   * owner's lock, it keeps the owner within the manager's `maxSessionsPerOwner` (rejecting with
   * `ERR_OWNER_LIMIT` and changing nothing with `onLimit: 'refuse'`; with `'evict-oldest'`,
   * deleting the owner's oldest sessions once this one is stored, so a failed login evicts
   * nobody), storing the session at once with its owner, so the owner's list shows it; `commit()` saves it again with the request's later changes. `meta`
   * (a plain JSON object: user agent, IP, a label) is what `sessionsOf` lists; without it, the
   * adapter's `loginMeta(request)` is recorded. Rejects with `ERR_INVALID_OWNER` for a malformed
   * owner, and `TypeError` for meta that is not a plain JSON object, changing nothing. If the
   * stored session was revoked while this request held it, nothing is written and the session
   * ends (`status` `'destroyed'`); then, and after such a `regenerate()`, this does nothing.
   */
  async setOwner(owner: string, meta?: SessionData): Promise<void> {
    this.#assertActive('setOwner');
    assertOwner(owner);
    if (this.#revoked) return;
    const captured = meta ?? this.#loginMeta?.();
    if (captured !== undefined && !isPlainObject(captured)) {
      // An async loginMeta (a geo-IP look-up) returns a promise: say so, not just "not an object".
      const promised = typeof (captured as { then?: unknown }).then === 'function';
      throw new TypeError(
        promised
          ? 'session meta must be a plain JSON object, got a promise: loginMeta is called synchronously, so await the look-up in the route and pass it as setOwner(owner, meta)'
          : 'session meta must be a plain JSON object',
      );
    }
    // Copied before anything changes, so meta that JSON cannot hold (a BigInt, a cycle) refuses
    // the login with the session as it was.
    const copied: SessionData =
      captured === undefined ? {} : (JSON.parse(JSON.stringify(captured)) as SessionData);
    await this.#context.owners.login(owner, this.#id, async () => {
      const previous = { owner: this.#owner, meta: this.#meta, mustSave: this.#mustSave };
      this.#owner = owner;
      this.#meta = copied;
      this.#mustSave = true;
      let outcome: CommitOutcome;
      try {
        this.#assertLockHeld();
        const creates = this.#isNew;
        outcome = await this.#write(false);
        if (creates && outcome === 'saved') this.#storedByLogin = this.#id;
      } catch (error) {
        this.#owner = previous.owner;
        this.#meta = previous.meta;
        this.#mustSave = previous.mustSave;
        throw error;
      }
      if (outcome === 'gone') {
        this.#end();
        return false;
      }
      // Still 'modified': commit() saves again, which is what tells an adapter to send the
      // new id's cookie.
      this.#lastAccessedAt = this.#savedAt;
      this.#storedExpiresAt = this.expiresAtFor(this.#savedAt);
      return true;
    });
  }

  /**
   * Ends the session now: its record is deleted and `commit()` only releases the lock. Idempotent.
   * When the delete fails, it rejects with the store's error and the session goes on as before,
   * so a retry can end it. A callback is refused: await the promise instead.
   */
  invalidate(): Promise<void>;
  invalidate(callback?: unknown): Promise<void> {
    return this.#refuseCallback('invalidate', callback) ?? this.#invalidate();
  }

  async #invalidate(): Promise<void> {
    if (this.#destroyed) return;
    this.#assertActive('invalidate');
    this.#destroyed = true;
    if (this.#isNew) return;
    try {
      await this.#context.store.delete(this.#id);
    } catch (error) {
      // Still stored: the session goes on, so its cookie is kept and a retry can delete it.
      if (!this.#revoked) this.#destroyed = false;
      throw error;
    }
  }

  /**
   * Saves the session if modified (a new id with `only: 'absent'`, an existing one with
   * `only: 'present'`). Otherwise it touches the record's expiry, only once `touchAfterMs` has
   * passed since the last access. Then it releases the lock, whatever happened. Idempotent:
   * later calls return the first call's result. Rejects with `ERR_LOCK_LOST` without writing
   * when the lock was lost while the request ran, and, writing nothing, with the `TypeError`
   * of a callback given to any of this session's methods.
   */
  commit(): Promise<CommitOutcome>;
  commit(callback?: unknown): Promise<CommitOutcome> {
    const refused = this.#refuseCallback('commit', callback);
    if (refused !== undefined) return refused;
    this.#commit ??= this.#settled(this.#commitOnce());
    return this.#commit;
  }

  /**
   * Finishes the session without writing: changes to `data`, and a new id from `regenerate()`,
   * are dropped, and the lock is released. A new id that `setOwner()` already stored is deleted,
   * so a failed login leaves no session behind. What `regenerate()` and `invalidate()` already
   * did to the store stands, and so do the sessions a `setOwner()` under `'evict-oldest'`
   * evicted: call it last in a login that may still fail. Resolves `'destroyed'` after
   * `invalidate()`, else `'unchanged'`. The first of `commit()` and `discard()` decides; later
   * calls of either return its result. A callback is refused: await the promise instead.
   */
  discard(): Promise<CommitOutcome>;
  discard(callback?: unknown): Promise<CommitOutcome> {
    const refused = this.#refuseCallback('discard', callback);
    if (refused !== undefined) return refused;
    this.#commit ??= this.#settled(this.#discardOnce());
    return this.#commit;
  }

  /** What `commit()` or `discard()` did, once it resolved; `undefined` before. */
  get outcome(): CommitOutcome | undefined {
    return this.#outcome;
  }

  async #settled(finishing: Promise<CommitOutcome>): Promise<CommitOutcome> {
    this.#outcome = await finishing;
    return this.#outcome;
  }

  /** The `expiresAt` a save or touch at `now` writes: the earlier of the idle and absolute limits. */
  expiresAtFor(now: number): number {
    return expiryAt(this.#context, this.#createdAt, this.#retiredUntil, now);
  }

  async #commitOnce(): Promise<CommitOutcome> {
    this.#stopExtending();
    try {
      // Its touch goes first, so the commit's write is the last, and frees the lock after it;
      // awaited only when there is one, so the write otherwise goes out in the call's own turn.
      if (this.#renewal !== undefined) await this.#renewal;
      if (this.#refused !== undefined) throw this.#refused;
      if (this.#destroyed) return 'destroyed';
      this.#assertLockHeld();
      return await this.#write(true);
    } finally {
      await this.#releaseLock();
    }
  }

  async #discardOnce(): Promise<CommitOutcome> {
    this.#stopExtending();
    try {
      if (this.#renewal !== undefined) await this.#renewal;
      // A login that stored a new id and then failed leaves no session that no client can name.
      const stored = this.#storedByLogin;
      if (stored !== undefined && !this.#destroyed) await this.#context.store.delete(stored);
    } finally {
      await this.#releaseLock();
    }
    return this.#destroyed ? 'destroyed' : 'unchanged';
  }

  /** `unlocking`: the lock is released right after, so a store that can frees it with the write. */
  async #write(unlocking: boolean): Promise<CommitOutcome> {
    const { store, codec, touchAfterMs } = this.#context;
    const now = Date.now();
    const json = JSON.stringify(this.#data) as string | undefined;
    // Data whose toJSON gives no object (a Date's string) would be stored as a record that every
    // later load refuses as corrupt, signing the user out.
    if (json === undefined || json.charCodeAt(0) !== OPEN_BRACE) {
      throw new TypeError(
        `session data must be saved as a JSON object, got ${json === undefined ? 'nothing' : `JSON ${json.slice(0, 40)}`} from its toJSON()`,
      );
    }
    const modified = this.#mustSave || json !== this.#snapshot;
    const expiresAt = this.expiresAtFor(now);
    if (expiresAt <= now) {
      // The absolute timeout passed during this request.
      if (!this.#isNew) await store.delete(this.#id, await this.#fence(unlocking, undefined));
      return 'gone';
    }
    if (!modified) {
      if (this.#isNew || now - this.#lastAccessedAt < touchAfterMs) return 'unchanged';
      // Near the absolute timeout a touch could not move the expiry any later.
      if (this.#storedExpiresAt !== undefined && expiresAt <= this.#storedExpiresAt) {
        return 'unchanged';
      }
      return (await store.touch(this.#id, expiresAt, await this.#fence(unlocking, undefined)))
        ? 'touched'
        : 'gone';
    }
    // Round-tripping through JSON stores exactly what a later load will see.
    const data = JSON.parse(json) as SessionData;
    const owner = this.#owner;
    const envelope: SessionEnvelope = { createdAt: this.#createdAt, lastAccessedAt: now, data };
    if (owner !== undefined) {
      envelope.owner = owner;
      if (this.#meta !== undefined) envelope.meta = this.#meta;
    }
    if (this.#retiredUntil !== undefined) envelope.retiredUntil = this.#retiredUntil;
    const recordOf = (bytes: Uint8Array) =>
      owner === undefined ? { data: bytes, expiresAt } : { data: bytes, expiresAt, owner };
    if (!this.#isNew) {
      const record = recordOf(codec.encode(envelope, this.#id));
      const fenced = this.#fence(unlocking, 'present');
      const options = fenced instanceof Promise ? await fenced : fenced;
      if (!(await store.set(this.#id, record, options))) return 'gone';
      this.#savedAt = now;
      this.#storedJson = json;
      return 'saved';
    }
    for (let attempt = 0; attempt < MAX_CREATE_ATTEMPTS; attempt++) {
      const record = recordOf(codec.encode(envelope, this.#id));
      // Only the first id is the locked one; a fresh id after a collision has no other holder.
      let options: SetOptions = { only: 'absent' };
      if (attempt === 0) {
        // Awaited only when it is a promise: the write then goes out in the call's own turn,
        // before a call made after this commit (a revoke) can reach the store.
        const fenced = this.#fence(unlocking, 'absent');
        options = fenced instanceof Promise ? await fenced : fenced;
      }
      if (await store.set(this.#id, record, options)) {
        this.#isNew = false;
        this.#savedAt = now;
        this.#storedJson = json;
        return 'saved';
      }
      // A 256-bit id collided, or a broken generator: never overwrite someone else's session.
      this.#id = generateSessionId();
    }
    throw new SessionError('ERR_STORE_IO', 'Could not store a new session under a fresh id');
  }

  /** This session's fenced write options (see `fenceFor`). */
  #fence(unlocking: boolean, only: SetOptions['only']): SetOptions | Promise<SetOptions> {
    return fenceFor(this.#context.store, this.#lock, this.#id, unlocking, only);
  }

  #keepLockAlive(lock: SessionLock): void {
    const everyMs = this.#context.extendLockEveryMs;
    // Renewed before it could expire ahead of the next extension, however short renewWithinMs is.
    const renewWithinMs = Math.max(this.#context.renewWithinMs, 2 * everyMs);
    const extendLock = new Deadline(() => {
      lockExtensions.set(extendLock, Date.now() + everyMs);
      lock.extend().then(
        () => {
          const stored = this.#storedExpiresAt;
          if (stored !== undefined && stored - Date.now() < renewWithinMs) {
            this.#renewal ??= this.#renew(lock, stored).finally(() => {
              this.#renewal = undefined;
            });
          }
        },
        (error: unknown) => {
          this.#lockError = error;
          lockExtensions.delete(extendLock);
        },
      );
    });
    this.#extendLock = extendLock;
    lockExtensions.set(extendLock, Date.now() + everyMs);
  }

  /**
   * A request still running as its stored session nears its expiry is activity: the expiry moves
   * on as `open()` moves it, with a touch fenced by the lock. A failure is reported, not thrown:
   * the commit still decides, and finds the session `'gone'` if it did expire.
   */
  async #renew(lock: SessionLock, stored: number): Promise<void> {
    const now = Date.now();
    const expiresAt = this.expiresAtFor(now);
    // A new or regenerated id is not stored under the lock, and the absolute timeout caps the rest.
    if (this.#commit !== undefined || this.#isNew || this.#destroyed || lock.id !== this.#id)
      return;
    if (expiresAt <= stored) return;
    try {
      const fenced = this.#fence(false, undefined);
      const options = fenced instanceof Promise ? await fenced : fenced;
      if (await this.#context.store.touch(this.#id, expiresAt, options)) {
        this.#storedExpiresAt = Math.max(expiresAt, this.#storedExpiresAt ?? expiresAt);
        this.#lastAccessedAt = Math.max(now, this.#lastAccessedAt);
      }
    } catch (error) {
      this.#context.report(error);
    }
  }

  #stopExtending(): void {
    if (this.#extendLock !== undefined) lockExtensions.delete(this.#extendLock);
  }

  #assertLockHeld(): void {
    const lock = this.#lock;
    if (lock === undefined) return;
    if (this.#lockError !== undefined) throw this.#lockError;
    if (isLockLost(lock)) {
      const reason = lock.signal.reason;
      throw reason instanceof SessionError
        ? reason
        : new SessionError('ERR_LOCK_LOST', 'The session lock was lost before commit');
    }
  }

  async #releaseLock(): Promise<void> {
    const lock = this.#lock;
    if (lock === undefined) return;
    this.#lock = undefined;
    if (isLockLost(lock)) return;
    try {
      await lock.release();
    } catch (error) {
      // The write (if any) already happened; a lease lost during it is worth knowing about.
      this.#context.report(error);
    }
  }

  /**
   * Ends a session found revoked or expired in the store: nothing is written for it again, and
   * `regenerate()` and `setOwner()` do nothing, since the request could not have known.
   */
  #end(): void {
    this.#destroyed = true;
    this.#revoked = true;
  }

  /**
   * express-session's callback idiom (`req.session.regenerate(err => …)`, as passport calls it)
   * refused: `undefined` when `callback` is no function. These methods return promises, and one
   * given a callback would never call it, so the route waiting for it would hang holding the
   * lock. Instead the promise rejects with a `TypeError` saying to await the call, the callback
   * gets that error (so the route answers it through its framework's error handling), and the
   * session's `commit()` rejects with it too, writing nothing: a login whose `regenerate()` was
   * refused is never saved under the old id, even by a callback that ignores its error.
   */
  #refuseCallback(method: string, callback: unknown): Promise<never> | undefined {
    if (typeof callback !== 'function') return undefined;
    const error = new TypeError(
      `session.${method}() takes no callback: it returns a promise; use await session.${method}() instead`,
    );
    this.#refused ??= error;
    queueMicrotask(() => callback(error));
    const refused = Promise.reject(error);
    // The callback already has the error: a caller that drops the promise must not crash the process.
    refused.catch(() => {});
    return refused;
  }

  #assertActive(action: string): void {
    if (this.#commit !== undefined) throw new TypeError(`Cannot ${action} a committed session`);
    if (this.#destroyed && !this.#revoked) {
      throw new TypeError(`Cannot ${action} an invalidated session`);
    }
  }
}

/**
 * The `expiresAt` a save or touch at `now` writes for a session that began at `createdAt`: the
 * earliest of its idle limit, its absolute limit and, for a retired id, the end of its grace.
 */
export function expiryAt(
  context: Pick<SessionContext, 'idleTimeoutMs' | 'absoluteTimeoutMs'>,
  createdAt: number,
  retiredUntil: number | undefined,
  now: number,
): number {
  return Math.min(
    now + context.idleTimeoutMs,
    createdAt + context.absoluteTimeoutMs,
    retiredUntil ?? Number.POSITIVE_INFINITY,
  );
}

/**
 * The write options for the session `id` holding `lock` that keep a stalled holder from
 * overwriting the next one: the lock itself, which the store checks atomically with the write.
 * A lock manager that cannot fence is asked right before the write instead, and its fresh lease
 * covers the write.
 */
export function fenceFor(
  store: SessionStore,
  lock: SessionLock | undefined,
  id: string,
  unlocking: boolean,
  only: SetOptions['only'],
): SetOptions | Promise<SetOptions> {
  // `only` is set for `set` alone: `touch` and `delete` refuse it as an unknown option.
  const unfenced: SetOptions = only === undefined ? {} : { only };
  // After regenerate() the lock still names the old id; the new id has no other holder.
  if (lock === undefined || lock.id !== id) return unfenced;
  if (store.locks.fence === undefined) return lock.extend().then(() => unfenced);
  if (only === undefined) return unlocking ? { lock, release: true } : { lock };
  return unlocking ? { lock, release: true, only } : { lock, only };
}
