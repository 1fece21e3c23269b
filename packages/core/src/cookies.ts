import { createHmac, timingSafeEqual } from 'node:crypto';
import type { SessionData } from './codecs.js';
import type { ExpressSessionCookie } from './express-session.js';
import type { CommitOutcome, Session } from './session.js';
import {
  assertDuration,
  assertKnownOptions,
  COOKIE_NAME_PATTERN,
  cookieValues,
  describeValue,
  MAC_CHARS,
  MAX_SAME_NAME_COOKIES,
} from './util.js';

export interface SessionCookieOptions {
  /**
   * Signing secrets, each at least `MIN_SECRET_LENGTH` (32) characters. The first signs; every
   * one verifies, so rotate by putting a new secret first.
   */
  secrets: string | readonly string[];
  /** Cookie name. Default `'sid'`. */
  name?: string;
  /** Default true: scripts cannot read the session id. */
  httpOnly?: boolean;
  /**
   * Send only over HTTPS. Default false. `'auto'`: `Secure` only on responses to a request the
   * adapter finds secure (HTTPS, or a trusted proxy's `X-Forwarded-Proto: https`). `sameSite:
   * 'none'` needs true or `'auto'`.
   */
  secure?: boolean | 'auto';
  /** Default `'lax'`. `'none'` needs `secure: true` or `'auto'`. */
  sameSite?: 'strict' | 'lax' | 'none' | false;
  /**
   * CHIPS: the `Partitioned` attribute, so that a browser keeps the cookie of an embedded
   * (third-party) site apart per top-level site. Default false. Needs `secure: true` or
   * `'auto'`; under `'auto'` it goes out only with `Secure`, on a secure request.
   */
  partitioned?: boolean;
  /** Default `'/'`. */
  path?: string;
  domain?: string;
  /**
   * Cookie lifetime, at most `MAX_COOKIE_AGE_MS` (400 days). Default `undefined`: a
   * browser-session cookie; the server-side timeouts still apply.
   */
  maxAgeMs?: number;
}

/** The cookie's attributes: every option but `secrets`. */
export type SessionCookieAttributes = Omit<SessionCookieOptions, 'secrets'>;

/**
 * How option errors name the options, for a wrapper whose users spell them differently: an
 * adapter taking `{ secret, cookie: { sameSite } }` passes
 * `{ where: 'sessile()', secrets: 'secret', attributesIn: 'cookie' }`.
 */
export interface SessionCookieNaming {
  /** What is being configured; every message starts with it. */
  where: string;
  /** The option that carries the secrets. */
  secrets: string;
  /** The option the attributes (`name`, `sameSite`...) sit in; absent when they sit beside the secrets. */
  attributesIn?: string;
}

/** A cookie from a request whose signature one of the secrets verified. */
export interface VerifiedCookie {
  /** The value inside: the session id. */
  value: string;
  /** Signed with a secret other than the first: the response re-signs it, so the old secret can be retired. */
  signedWithOldSecret: boolean;
  /** Read from express-session's cookie: the response sets this cookie instead and clears that one. */
  fromExpressSession?: boolean;
  /**
   * Every validly signed id of the request's cookies of this name, in the order sent (`value`
   * first), when there are several: one left under an old `path` or `domain` comes first, and
   * `manager.open(values)` then opens the first that is a live session.
   */
  values?: readonly string[];
}

/**
 * The shortest secret accepted. An attacker holding one signed cookie can test guesses of the
 * secret offline, so it must be unguessable; HMAC-SHA256 keys should be at least as long as its
 * 32-byte output (RFC 2104, section 3).
 */
export const MIN_SECRET_LENGTH = 32;

/** The longest `maxAgeMs`: browsers cap a cookie's lifetime at 400 days (RFC 6265bis). */
export const MAX_COOKIE_AGE_MS = 400 * 24 * 60 * 60_000;

const OWN_NAMING: SessionCookieNaming = { where: 'SessionCookie', secrets: 'secrets' };
/** The cookie's attribute options, which the HTTP adapters take inside `cookie`. */
export const COOKIE_ATTRIBUTE_NAMES = [
  'name',
  'httpOnly',
  'secure',
  'sameSite',
  'path',
  'domain',
  'maxAgeMs',
  'partitioned',
] as const satisfies readonly (keyof SessionCookieAttributes)[];
/** The name prefixes browsers enforce (RFC 6265bis), matched as they match them, in any case. */
const COOKIE_PREFIX_PATTERN = /^__(secure|host)-/i;
const SAME_SITE_VALUES = ['strict', 'lax', 'none', false] as const;

const COOKIE_ATTRIBUTE_PATTERN = /^[\u0021-\u003A\u003C-\u007E]+$/;

/**
 * The session id in a cookie, signed with HMAC-SHA256 (`<id>.<base64url mac>`) so a client can
 * never present an id the server did not give it. Verification uses a timing-safe compare.
 */
export class SessionCookie {
  readonly name: string;
  readonly #secrets: readonly string[];
  readonly #attributes: string;
  /** The attributes for a secure request: `#attributes` unless `secure` is `'auto'`. */
  readonly #secureAttributes: string;
  readonly #maxAgeMs: number | undefined;
  readonly #expressSession: ExpressSessionCookie | undefined;

  /**
   * `naming`: how errors name the options; see `SessionCookieNaming`. `expressSession`: also
   * accept express-session's cookie, for a transition period.
   */
  constructor(
    options: SessionCookieOptions,
    naming: SessionCookieNaming = OWN_NAMING,
    expressSession?: ExpressSessionCookie,
  ) {
    this.#expressSession = expressSession;
    const { where, attributesIn } = naming;
    if (typeof options !== 'object' || options === null) {
      throw new TypeError(`${where} needs options { ${naming.secrets} }`);
    }
    const { secrets, ...attributes } = options;
    if (attributesIn === undefined) {
      assertKnownOptions(options, [naming.secrets, ...COOKIE_ATTRIBUTE_NAMES], where);
    } else {
      assertKnownOptions(attributes, COOKIE_ATTRIBUTE_NAMES, `${where} ${attributesIn}`);
    }
    const option = (name: string) =>
      attributesIn === undefined ? name : `${attributesIn}.${name}`;
    const fail = (message: string) => new TypeError(`${where}: ${message}`);

    this.#secrets = checkSecrets(secrets, naming.secrets, fail);
    this.name = attributes.name ?? 'sid';
    if (typeof this.name !== 'string' || !COOKIE_NAME_PATTERN.test(this.name)) {
      throw fail(`${option('name')} must be a cookie name token, got ${describeValue(this.name)}`);
    }
    const httpOnly = checkBoolean(attributes.httpOnly ?? true, option('httpOnly'), fail);
    const secureOption = attributes.secure ?? false;
    if (secureOption !== 'auto' && typeof secureOption !== 'boolean') {
      throw fail(
        `${option('secure')} must be true, false or 'auto', got ${describeValue(secureOption)}`,
      );
    }
    const secure = secureOption !== false;
    const sameSite = attributes.sameSite ?? 'lax';
    if (!SAME_SITE_VALUES.includes(sameSite)) {
      throw fail(
        `${option('sameSite')} must be 'strict', 'lax', 'none' or false, got ${describeValue(sameSite)}`,
      );
    }
    if (sameSite === 'none' && !secure) {
      throw fail(
        `${option('sameSite')} 'none' needs ${option('secure')}: true or 'auto'; browsers reject a SameSite=None cookie without Secure`,
      );
    }
    const partitioned = checkBoolean(attributes.partitioned ?? false, option('partitioned'), fail);
    if (partitioned && !secure) {
      throw fail(
        `${option('partitioned')} needs ${option('secure')}: true or 'auto'; browsers reject a Partitioned cookie without Secure`,
      );
    }
    // Browsers drop a cookie whose name prefix promises what its attributes do not give.
    const prefix = COOKIE_PREFIX_PATTERN.exec(this.name)?.[0];
    if (prefix !== undefined && secureOption !== true) {
      throw fail(
        secureOption === 'auto'
          ? `${option('name')} '${this.name}' needs ${option('secure')}: true, not 'auto'; over plain HTTP 'auto' leaves out Secure, and browsers reject a ${prefix} cookie without it`
          : `${option('name')} '${this.name}' needs ${option('secure')}: true; browsers reject a ${prefix} cookie without Secure`,
      );
    }
    if (
      prefix?.toLowerCase() === '__host-' &&
      (attributes.domain !== undefined || (attributes.path ?? '/') !== '/')
    ) {
      throw fail(
        `${option('name')} '${this.name}' needs no ${option('domain')} and ${option('path')} '/'; browsers reject a __Host- cookie otherwise`,
      );
    }
    const maxAgeMs = attributes.maxAgeMs;
    if (maxAgeMs !== undefined) {
      if (typeof maxAgeMs === 'number' && maxAgeMs > MAX_COOKIE_AGE_MS) {
        throw fail(
          `${option('maxAgeMs')} must be at most ${MAX_COOKIE_AGE_MS} (400 days, the longest a browser keeps a cookie), got ${maxAgeMs}`,
        );
      }
      assertDuration(maxAgeMs, `${where}: ${option('maxAgeMs')}`, {
        zero: false,
        max: MAX_COOKIE_AGE_MS,
      });
    }
    this.#maxAgeMs = maxAgeMs;

    const path = checkAttribute(attributes.path ?? '/', option('path'), fail);
    // A browser takes any other path (an empty one too) for the request's directory instead.
    if (!path.startsWith('/')) {
      throw fail(`${option('path')} must start with /, got ${describeValue(path)}`);
    }
    const parts = [`Path=${path}`];
    if (attributes.domain !== undefined) {
      parts.push(`Domain=${checkAttribute(attributes.domain, option('domain'), fail)}`);
    }
    if (httpOnly) parts.push('HttpOnly');
    const withSecure = [...parts, 'Secure'];
    if (secureOption === true) parts.push('Secure');
    if (sameSite !== false) {
      const attribute = `SameSite=${sameSite[0]?.toUpperCase()}${sameSite.slice(1)}`;
      parts.push(attribute);
      withSecure.push(attribute);
    }
    if (partitioned) {
      // Under 'auto' a plain-HTTP response leaves out Secure, and Partitioned with it: browsers
      // would drop a Partitioned cookie without Secure, so that one still works (local development).
      withSecure.push('Partitioned');
      if (secureOption === true) parts.push('Partitioned');
    }
    this.#attributes = parts.join('; ');
    this.#secureAttributes = secureOption === 'auto' ? withSecure.join('; ') : this.#attributes;
  }

  /** The cookie's lifetime, `undefined` for a browser-session cookie. */
  get maxAgeMs(): number | undefined {
    return this.#maxAgeMs;
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
    return this.#verifySigned(signed)?.value;
  }

  /** The verified value of this cookie in a `Cookie` request header, or `undefined`. */
  read(cookieHeader: string | string[] | undefined): string | undefined {
    return this.verify(cookieHeader)?.value;
  }

  /**
   * This cookie in a `Cookie` request header, verified: its value and whether an old secret
   * signed it. `undefined` when it is missing or no secret's signature matches. When
   * express-session's cookie is accepted, it is read if this one is missing or unverified.
   */
  verify(cookieHeader: string | string[] | undefined): VerifiedCookie | undefined {
    const own = this.#verifyOwn(cookieHeader);
    if (own !== undefined || this.#expressSession === undefined) return own;
    const value = this.#expressSession.verify(cookieHeader);
    return value === undefined
      ? undefined
      : { value, signedWithOldSecret: false, fromExpressSession: true };
  }

  #verifyOwn(cookieHeader: string | string[] | undefined): VerifiedCookie | undefined {
    let first: VerifiedCookie | undefined;
    let values: string[] | undefined;
    for (const decoded of cookieValues(cookieHeader, this.name, MAX_SAME_NAME_COOKIES)) {
      const verified = this.#verifySigned(decoded);
      if (verified === undefined) continue;
      if (first === undefined) first = verified;
      else if (!(values ?? [first.value]).includes(verified.value)) {
        values ??= [first.value];
        values.push(verified.value);
      }
    }
    if (first !== undefined && values !== undefined) first.values = values;
    return first;
  }

  #verifySigned(signed: string): VerifiedCookie | undefined {
    const dot = signed.lastIndexOf('.');
    // A signature of another length cannot match: no HMAC is spent on it.
    if (dot <= 0 || signed.length - dot - 1 !== MAC_CHARS) return undefined;
    const value = signed.slice(0, dot);
    const given = Buffer.from(signed.slice(dot + 1));
    let matched = -1;
    this.#secrets.forEach((secret, index) => {
      const expected = Buffer.from(mac(value, secret));
      // Every secret is checked so the time taken does not reveal which one matched.
      if (expected.length === given.length && timingSafeEqual(expected, given) && matched === -1) {
        matched = index;
      }
    });
    return matched === -1 ? undefined : { value, signedWithOldSecret: matched > 0 };
  }

  /**
   * A `Set-Cookie` header value carrying `value`, signed. `secure`: whether the request is
   * secure, which decides `Secure` under `secure: 'auto'`; default false.
   */
  serialize(value: string, now: number = Date.now(), secure = false): string {
    let header = `${this.name}=${encodeURIComponent(this.sign(value))}; ${this.#attributesFor(secure)}`;
    if (this.#maxAgeMs !== undefined) {
      // Rounded up: a Max-Age of 0 would delete the cookie.
      header += `; Max-Age=${Math.ceil(this.#maxAgeMs / 1000)}; Expires=${new Date(now + this.#maxAgeMs).toUTCString()}`;
    }
    return header;
  }

  /**
   * The `Set-Cookie` value a response needs, or `undefined` for none. `requestCookie` is what
   * `verify()` found in the request. Pass `outcome` once the session is committed; before that
   * (the headers are going out first) the answer is predicted from the session's status.
   * - a new or changed id that is (or will be) stored: set it;
   * - a persistent cookie whose session was saved or touched: set it again, to roll its expiry;
   * - a cookie an old secret signed, whose session lives on: set it again, signed with the first;
   * - a destroyed session, or a cookie whose session no longer exists: clear it;
   * - a retired id (regenerated by another request, in its grace window): nothing, ever, since
   *   the client may hold the new id by the time this response arrives.
   * `secure`: whether the request is secure (see `serialize`).
   */
  forResponse(
    session: Session<SessionData>,
    requestCookie: VerifiedCookie | undefined,
    outcome: CommitOutcome | undefined,
    touchAfterMs: number,
    secure = false,
  ): string | undefined {
    if (session.retired) return undefined;
    // The session of a later cookie of this name, where the first named none (one left under an
    // old path or domain): it is set again under this cookie's own.
    const fromLaterCookie =
      requestCookie?.values !== undefined &&
      session.id !== requestCookie.value &&
      requestCookie.values.includes(session.id);
    const requestId = fromLaterCookie ? session.id : requestCookie?.value;
    const fromExpressSession = requestCookie?.fromExpressSession === true;
    // Re-signing at once is what lets the old secret be dropped after one idle timeout; an
    // adopted express-session id gets this cookie at once, so that cookie can be cleared.
    const resign =
      requestCookie?.signedWithOldSecret === true || fromExpressSession || fromLaterCookie;
    const predicted = outcome ?? predictOutcome(session, touchAfterMs);
    switch (predicted) {
      case 'saved':
        return session.id !== requestId || this.persistent || resign
          ? this.serialize(session.id, Date.now(), secure)
          : undefined;
      case 'touched':
        return this.persistent || resign
          ? this.serialize(session.id, Date.now(), secure)
          : undefined;
      case 'destroyed':
        return requestId !== undefined && !fromExpressSession
          ? this.serializeClear(secure)
          : undefined;
      case 'gone':
        // Another request removed the session meanwhile: a login that regenerated its id may
        // already have sent the client the new one, which a clear would delete, signing the
        // user out. The old id names nothing; the client's next request starts afresh.
        return undefined;
      case 'unchanged':
        if (requestId === undefined) return undefined;
        if (session.id !== requestId) {
          // This request's own regenerate() removed the id the cookie names (a login that then
          // failed): drop the cookie. Otherwise the cookie named no live session (expired,
          // revoked, or regenerated by a login beside this request): left alone, as for 'gone'.
          return session.regenerated && !fromExpressSession
            ? this.serializeClear(secure)
            : undefined;
        }
        return resign ? this.serialize(session.id, Date.now(), secure) : undefined;
    }
  }

  /**
   * Every `Set-Cookie` value the response needs: `forResponse()`'s, and, when the request came
   * with express-session's cookie, one that deletes it (whether its session was adopted or not)
   * unless this cookie, under the same name, replaces it. `secure`: whether the request is
   * secure (see `serialize`).
   */
  responseHeaders(
    session: Session<SessionData>,
    requestCookie: VerifiedCookie | undefined,
    outcome: CommitOutcome | undefined,
    touchAfterMs: number,
    secure = false,
  ): string[] {
    // Not even a clear of express-session's cookie, which may share this cookie's name.
    if (session.retired) return [];
    const headers: string[] = [];
    const header = this.forResponse(session, requestCookie, outcome, touchAfterMs, secure);
    if (header !== undefined) headers.push(header);
    const replaced = this.#expressSession?.name;
    if (
      requestCookie?.fromExpressSession === true &&
      replaced !== undefined &&
      (replaced !== this.name || header === undefined)
    ) {
      headers.push(this.#clear(replaced, secure));
    }
    return headers;
  }

  /**
   * A `Set-Cookie` header value that deletes the cookie, with the attributes `serialize` gives
   * for the same `secure`.
   */
  serializeClear(secure = false): string {
    return this.#clear(this.name, secure);
  }

  #clear(name: string, secure: boolean): string {
    return `${name}=; ${this.#attributesFor(secure)}; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT`;
  }

  #attributesFor(secure: boolean): string {
    return secure === true ? this.#secureAttributes : this.#attributes;
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

type Fail = (message: string) => TypeError;

function checkSecrets(value: unknown, name: string, fail: Fail): string[] {
  const secrets = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(secrets) || secrets.length === 0) {
    throw fail(
      `${name} must be a string of at least ${MIN_SECRET_LENGTH} characters, or a non-empty list of them, got ${describeValue(value)}`,
    );
  }
  secrets.forEach((secret: unknown, index) => {
    const label = typeof value === 'string' ? name : `${name}[${index}]`;
    // A secret's text never goes into a message: messages end up in logs.
    if (typeof secret !== 'string') {
      throw fail(`${label} must be a string, got ${describeValue(secret)}`);
    }
    // A lone surrogate is signed as U+FFFD, so two different secrets of them are one key.
    if (!secret.isWellFormed()) {
      throw fail(
        `${label} must be well-formed Unicode: a lone surrogate signs as U+FFFD, whatever it was. Generate one with: node -p "crypto.randomBytes(32).toString('base64url')"`,
      );
    }
    if (secret.length < MIN_SECRET_LENGTH) {
      throw fail(
        `${label} must be at least ${MIN_SECRET_LENGTH} characters, got ${secret.length}; a short secret can be guessed offline from one signed cookie. Generate one with: node -p "crypto.randomBytes(32).toString('base64url')"`,
      );
    }
  });
  return [...secrets];
}

function checkBoolean(value: unknown, name: string, fail: Fail): boolean {
  if (typeof value !== 'boolean')
    throw fail(`${name} must be true or false, got ${describeValue(value)}`);
  return value;
}

function checkAttribute(value: unknown, name: string, fail: Fail): string {
  if (typeof value !== 'string' || !COOKIE_ATTRIBUTE_PATTERN.test(value)) {
    throw fail(
      `${name} must be cookie attribute text (not empty; no ';', spaces or control characters), got ${describeValue(value)}`,
    );
  }
  return value;
}
