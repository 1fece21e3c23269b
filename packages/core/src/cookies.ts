import { createHmac, timingSafeEqual } from 'node:crypto';
import type { SessionData } from './codecs.js';
import type { CommitOutcome, Session } from './session.js';

export interface SessionCookieOptions {
  /** Signing secrets. The first signs; every one verifies, so rotate by putting a new secret first. */
  secrets: string | readonly string[];
  /** Cookie name. Default `'sid'`. */
  name?: string;
  /** Default true: scripts cannot read the session id. */
  httpOnly?: boolean;
  /** Send only over HTTPS. Default false; set it in production. */
  secure?: boolean;
  /** Default `'lax'`. */
  sameSite?: 'strict' | 'lax' | 'none' | false;
  /** Default `'/'`. */
  path?: string;
  domain?: string;
  /** Cookie lifetime. Default `undefined`: a browser-session cookie; the server-side timeouts still apply. */
  maxAgeMs?: number;
}

const COOKIE_NAME_PATTERN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const COOKIE_ATTRIBUTE_PATTERN = /^[\u0021-\u003A\u003C-\u007E]*$/;

/**
 * The session id in a cookie, signed with HMAC-SHA256 (`<id>.<base64url mac>`) so a client can
 * never present an id the server did not give it. Verification uses a timing-safe compare.
 */
export class SessionCookie {
  readonly name: string;
  readonly #secrets: readonly string[];
  readonly #attributes: string;
  readonly #maxAgeMs: number | undefined;

  constructor(options: SessionCookieOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new TypeError('cookie options must be an object with { secrets }');
    }
    const secrets = typeof options.secrets === 'string' ? [options.secrets] : options.secrets;
    if (!Array.isArray(secrets) || secrets.length === 0) {
      throw new TypeError('secrets must be a non-empty string or a non-empty array of strings');
    }
    for (const secret of secrets) {
      if (typeof secret !== 'string' || secret.length === 0) {
        throw new TypeError('every secret must be a non-empty string');
      }
    }
    this.#secrets = [...secrets];
    this.name = options.name ?? 'sid';
    if (!COOKIE_NAME_PATTERN.test(this.name))
      throw new TypeError(`invalid cookie name ${this.name}`);
    const attributes = [`Path=${checkAttribute(options.path ?? '/', 'path')}`];
    if (options.domain !== undefined)
      attributes.push(`Domain=${checkAttribute(options.domain, 'domain')}`);
    if (options.httpOnly ?? true) attributes.push('HttpOnly');
    if (options.secure) attributes.push('Secure');
    const sameSite = options.sameSite ?? 'lax';
    if (sameSite !== false) {
      if (sameSite !== 'strict' && sameSite !== 'lax' && sameSite !== 'none') {
        throw new TypeError(`sameSite must be 'strict', 'lax', 'none' or false`);
      }
      attributes.push(`SameSite=${sameSite[0]?.toUpperCase()}${sameSite.slice(1)}`);
    }
    if (
      options.maxAgeMs !== undefined &&
      (typeof options.maxAgeMs !== 'number' || !(options.maxAgeMs > 0))
    ) {
      throw new TypeError('maxAgeMs must be a positive number');
    }
    this.#maxAgeMs = options.maxAgeMs;
    this.#attributes = attributes.join('; ');
  }

  /** True when the cookie carries an expiry, so each save or touch should resend it. */
  get persistent(): boolean {
    return this.#maxAgeMs !== undefined;
  }

  /** `value` signed with the first secret. */
  sign(value: string): string {
    return `${value}.${mac(value, this.#secrets[0] as string)}`;
  }

  /** The value inside a signed string, or `undefined` when no secret's signature matches. */
  unsign(signed: string): string | undefined {
    const dot = signed.lastIndexOf('.');
    if (dot <= 0) return undefined;
    const value = signed.slice(0, dot);
    const given = Buffer.from(signed.slice(dot + 1));
    let valid = false;
    for (const secret of this.#secrets) {
      const expected = Buffer.from(mac(value, secret));
      // Every secret is checked so the time taken does not reveal which one matched.
      if (expected.length === given.length && timingSafeEqual(expected, given)) valid = true;
    }
    return valid ? value : undefined;
  }

  /** The verified value of this cookie in a `Cookie` request header, or `undefined`. */
  read(cookieHeader: string | string[] | undefined): string | undefined {
    if (cookieHeader === undefined) return undefined;
    const header = Array.isArray(cookieHeader) ? cookieHeader.join('; ') : cookieHeader;
    for (const pair of header.split(';')) {
      const equals = pair.indexOf('=');
      if (equals === -1 || pair.slice(0, equals).trim() !== this.name) continue;
      let raw = pair.slice(equals + 1).trim();
      if (raw.startsWith('"') && raw.endsWith('"') && raw.length >= 2) raw = raw.slice(1, -1);
      let decoded: string;
      try {
        decoded = decodeURIComponent(raw);
      } catch {
        continue;
      }
      const value = this.unsign(decoded);
      if (value !== undefined) return value;
    }
    return undefined;
  }

  /** A `Set-Cookie` header value carrying `value`, signed. */
  serialize(value: string, now: number = Date.now()): string {
    let header = `${this.name}=${encodeURIComponent(this.sign(value))}; ${this.#attributes}`;
    if (this.#maxAgeMs !== undefined) {
      header += `; Max-Age=${Math.floor(this.#maxAgeMs / 1000)}; Expires=${new Date(now + this.#maxAgeMs).toUTCString()}`;
    }
    return header;
  }

  /**
   * The `Set-Cookie` value a response needs, or `undefined` for none. `requestId` is the id the
   * request's cookie carried. Pass `outcome` once the session is committed; before that (the
   * headers are going out first) the answer is predicted from the session's status.
   * - a new or changed id that is (or will be) stored: set it;
   * - a persistent cookie whose session was saved or touched: set it again, to roll its expiry;
   * - a destroyed session, or a cookie whose session no longer exists: clear it.
   */
  forResponse(
    session: Session<SessionData>,
    requestId: string | undefined,
    outcome: CommitOutcome | undefined,
    touchAfterMs: number,
  ): string | undefined {
    const predicted = outcome ?? predictOutcome(session, touchAfterMs);
    switch (predicted) {
      case 'saved':
        return session.id !== requestId || this.persistent ? this.serialize(session.id) : undefined;
      case 'touched':
        return this.persistent ? this.serialize(session.id) : undefined;
      case 'destroyed':
      case 'gone':
        return requestId !== undefined ? this.serializeClear() : undefined;
      case 'unchanged':
        // The client's cookie named a session that is gone (expired, invalid): drop it.
        return requestId !== undefined && session.id !== requestId
          ? this.serializeClear()
          : undefined;
    }
  }

  /** A `Set-Cookie` header value that deletes the cookie. */
  serializeClear(): string {
    return `${this.name}=; ${this.#attributes}; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT`;
  }
}

function predictOutcome(session: Session<SessionData>, touchAfterMs: number): CommitOutcome {
  const status = session.status;
  if (status === 'destroyed') return 'destroyed';
  if (status === 'modified') return 'saved';
  if (!session.isNew && Date.now() - session.lastAccessedAt >= touchAfterMs) return 'touched';
  return 'unchanged';
}

function mac(value: string, secret: string): string {
  return createHmac('sha256', secret).update(value).digest('base64url');
}

function checkAttribute(value: string, name: string): string {
  if (typeof value !== 'string' || !COOKIE_ATTRIBUTE_PATTERN.test(value)) {
    throw new TypeError(`invalid cookie ${name}`);
  }
  return value;
}
