import { createHash } from 'node:crypto';
import type { SessionCodec, SessionData, SessionEnvelope } from './codecs.js';
import { isSessionError, SessionError } from './errors.js';
import { assertOwner, ownerLockId } from './ids.js';
import type { OwnedSession, SessionRecord, SessionStore } from './types.js';

/** What `#decoded` answers for a session a newer version of its codec wrote. */
const NEWER = Symbol('newer format');

/** How many of an owner's sessions `revokeOwner` deletes at once. */
const REVOKE_BATCH = 16;

/** What happens when a login would give its owner more than `maxSessionsPerOwner` sessions. */
export type OwnerLimitAction = 'evict-oldest' | 'refuse';

/** One session of an owner, as `SessionManager.sessionsOf` lists it. */
export interface SessionSummary {
  /** The session id. It is the session's credential: use it on the server, never show it. */
  id: string;
  /**
   * A stable digest of the id that reveals nothing of it: put this in a page (a revoke
   * button's value) and find the session again by it.
   */
  handle: string;
  /** When the session began (its login, or earlier if it was regenerated), ms since the epoch. */
  createdAt: number;
  /** Its last request as the store knows it (last save, or last touch), ms since the epoch. */
  lastSeenAt: number;
  /** When it ends unless used again, ms since the epoch. */
  expiresAt: number;
  /** What the app captured at login (`loginMeta`, or `setOwner(owner, meta)`); `{}` if nothing. */
  meta: SessionData;
  /** True for the session the list was asked from. */
  current: boolean;
}

/** The manager's settings that owner operations need. Internal to core. */
export interface OwnerContext {
  readonly store: SessionStore;
  readonly codec: SessionCodec;
  readonly idleTimeoutMs: number;
  readonly absoluteTimeoutMs: number;
  readonly maxSessionsPerOwner: number | undefined;
  readonly onLimit: OwnerLimitAction;
  readonly waitMs: number;
  readonly leaseMs: number;
  /** How often the owner's lock is extended while held. */
  readonly extendEveryMs: number;
  report(error: unknown): void;
}

/** A digest of a session id that is safe to show: `handle` in a `SessionSummary`. */
export function sessionHandle(id: string): string {
  return createHash('sha256').update(id).digest('base64url').slice(0, 22);
}

/**
 * The latest access a stored session shows: a touch moves only the record's expiry, so it may be
 * later than the envelope's last save. Never later than `now`.
 */
export function lastAccessOf(
  envelope: SessionEnvelope,
  expiresAt: number,
  idleTimeoutMs: number,
  now: number,
): number {
  return Math.min(now, Math.max(envelope.lastAccessedAt, expiresAt - idleTimeoutMs));
}

/** Owner look-ups, caps and revocation over a store with an owner index. */
export class OwnerSessions {
  readonly #context: OwnerContext;

  constructor(context: OwnerContext) {
    this.#context = context;
  }

  /**
   * Runs `write` (which stores the session `id` with `owner` and answers whether it did) holding
   * the owner's lock, within `maxSessionsPerOwner`: with `'refuse'`, a login that would exceed it
   * rejects with `ERR_OWNER_LIMIT` before writing; with `'evict-oldest'`, the owner's oldest
   * sessions are deleted once the new one is stored, so a login that fails (or finds its session
   * revoked) signs no other device out. Two logins of one owner never both see room for one.
   */
  async login(owner: string, id: string, write: () => Promise<boolean>): Promise<void> {
    const max = this.#context.maxSessionsPerOwner;
    await this.locked(owner, async () => {
      if (max === undefined) {
        await write();
        return;
      }
      const now = Date.now();
      const others = (await this.#ownedBy(owner)).flatMap((session) => {
        if (session.id === id) return [];
        const envelope = this.#decoded(session);
        if (envelope === NEWER) return [{ id: session.id, createdAt: Number.NaN }];
        if (!this.#takesPlace(envelope, session.record, now)) return [];
        return [{ id: session.id, createdAt: envelope?.createdAt ?? Number.NEGATIVE_INFINITY }];
      });
      const excess = others.length + 1 - max;
      if (excess > 0 && this.#context.onLimit === 'refuse') {
        throw new SessionError(
          'ERR_OWNER_LIMIT',
          `This owner already has ${others.length} sessions; maxSessionsPerOwner is ${max}`,
        );
      }
      if (!(await write()) || excess <= 0) return;
      // An undecodable session counts as the oldest, so a cap evicts it first. One a newer
      // version wrote (a rolling deploy) counts but is never evicted here: this host cannot
      // tell its age, and the newer hosts enforce the cap at their next login of the owner.
      const oldest = others
        .filter((session) => !Number.isNaN(session.createdAt))
        .sort((a, b) => a.createdAt - b.createdAt)
        .slice(0, excess);
      for (const session of oldest) await this.#context.store.delete(session.id);
    });
  }

  /** The owner's live sessions, most recently seen first; `currentId` is marked `current`. */
  async list(owner: string, currentId?: string): Promise<SessionSummary[]> {
    const { codec } = this.#context;
    const now = Date.now();
    const summaries: SessionSummary[] = [];
    for (const { id, record } of await this.#ownedBy(owner)) {
      let envelope: SessionEnvelope;
      try {
        envelope = codec.decode(record.data, id);
      } catch (error) {
        this.#context.report(error);
        continue;
      }
      // A regenerated id, readable for a grace period: its session is listed under its new id.
      if (envelope.retiredUntil !== undefined) continue;
      const lastSeenAt = this.#lastSeen(envelope, record, now);
      if (lastSeenAt === undefined) continue;
      summaries.push({
        id,
        handle: sessionHandle(id),
        createdAt: envelope.createdAt,
        lastSeenAt,
        expiresAt: record.expiresAt,
        meta: envelope.meta ?? {},
        current: id === currentId,
      });
    }
    return summaries.sort((a, b) => b.lastSeenAt - a.lastSeenAt);
  }

  /**
   * Deletes every session of `owner` but `exceptId`, holding the owner's lock; resolves how many
   * of them `list` would have shown (or could not decode): the old ids `regenerate()` keeps for a
   * grace period go too, uncounted.
   */
  revokeAll(owner: string, exceptId: string | undefined): Promise<number> {
    return this.locked(owner, async () => {
      const now = Date.now();
      const sessions = (await this.#ownedBy(owner)).filter(({ id }) => id !== exceptId);
      let revoked = 0;
      // A few deletes at a time: one at a time, 10 000 sessions over a network took minutes.
      for (let start = 0; start < sessions.length; start += REVOKE_BATCH) {
        const batch = sessions.slice(start, start + REVOKE_BATCH);
        const deleted = await Promise.allSettled(
          batch.map(({ id }) => this.#context.store.delete(id)),
        );
        for (const [index, outcome] of deleted.entries()) {
          if (outcome.status === 'rejected') throw outcome.reason;
          if (!outcome.value) continue;
          const session = batch[index] as OwnedSession;
          const envelope = this.#decoded(session);
          if (envelope === NEWER || this.#takesPlace(envelope, session.record, now)) revoked++;
        }
      }
      return revoked;
    });
  }

  async #ownedBy(owner: string): Promise<OwnedSession[]> {
    const { store } = this.#context;
    assertOwner(owner);
    if (!store.capabilities.ownerIndex || store.ownedBy === undefined) {
      throw new SessionError(
        'ERR_UNSUPPORTED',
        'This store keeps no owner index (capabilities.ownerIndex is false)',
      );
    }
    return store.ownedBy(owner);
  }

  /**
   * When a stored session was last seen, or `undefined` when it has ended under this manager's
   * timeouts (stored under longer ones), as `open()` would find it.
   */
  #lastSeen(envelope: SessionEnvelope, record: SessionRecord, now: number): number | undefined {
    const { idleTimeoutMs, absoluteTimeoutMs } = this.#context;
    const lastSeenAt = lastAccessOf(envelope, record.expiresAt, idleTimeoutMs, now);
    const ended =
      envelope.createdAt + absoluteTimeoutMs <= now || lastSeenAt + idleTimeoutMs <= now;
    return ended ? undefined : lastSeenAt;
  }

  /**
   * Whether a stored session is one of its owner's sessions, as the cap and `revokeOwner` count
   * them: one that cannot be decoded is (a cap evicts it first); a regenerated id kept readable
   * for a grace period is not a session of its own; nor is one ended under this manager's
   * timeouts, which `list` does not show.
   */
  #takesPlace(envelope: SessionEnvelope | undefined, record: SessionRecord, now: number): boolean {
    if (envelope === undefined) return true;
    return (
      envelope.retiredUntil === undefined && this.#lastSeen(envelope, record, now) !== undefined
    );
  }

  /** The session's envelope; `undefined` when it cannot be decoded, `NEWER` when a newer version wrote it. */
  #decoded(session: OwnedSession): SessionEnvelope | undefined | typeof NEWER {
    try {
      return this.#context.codec.decode(session.record.data, session.id);
    } catch (error) {
      return isSessionError(error, 'ERR_UNSUPPORTED') ? NEWER : undefined;
    }
  }

  /**
   * Runs `body` holding `owner`'s lock, the one logins, caps and revocations of that owner
   * take, so that nothing `body` does to the owner's sessions interleaves with theirs. The lock
   * is extended on a timer: revoking thousands of sessions can outlast one lease.
   */
  async locked<T>(owner: string, body: () => Promise<T>): Promise<T> {
    assertOwner(owner);
    const { store, waitMs, leaseMs, extendEveryMs, report } = this.#context;
    const lock = await store.locks.acquire(ownerLockId(owner), { waitMs, leaseMs });
    const extending = setInterval(() => {
      lock.extend().catch((error: unknown) => {
        clearInterval(extending);
        report(error);
      });
    }, extendEveryMs);
    extending.unref();
    try {
      return await body();
    } finally {
      clearInterval(extending);
      await lock.release().catch((error: unknown) => report(error));
    }
  }
}
