import { createHmac, timingSafeEqual } from 'node:crypto';
import type { SessionCodec, SessionData } from './codecs.js';
import {
  assertKnownOptions,
  COOKIE_NAME_PATTERN,
  cookieValues,
  describeValue,
  MAC_CHARS,
  MAX_SAME_NAME_COOKIES,
} from './util.js';

/**
 * Reading what express-session left behind, for a transition period: its signed cookie and the
 * session data it stored through `toExpressStore`.
 */
export interface AcceptExpressSessionOptions {
  /** express-session's cookie name. Default `'connect.sid'`. */
  name?: string;
  /**
   * express-session's `secret`: one, or its list (every entry verifies). Default the adapter's
   * own `secret`. Only verifies, never signs, so a shorter legacy secret is accepted here.
   */
  secret?: string | readonly string[];
}

/**
 * express-session's cookie: the URI-encoded value `s:<id>.<mac>`, where the mac is HMAC-SHA256
 * of the id in base64 with the padding removed (cookie-signature's format).
 */
export class ExpressSessionCookie {
  readonly name: string;
  readonly #secrets: readonly string[];

  /** `where` starts every error message; `defaultSecret` is used when `options.secret` is absent. */
  constructor(
    options: AcceptExpressSessionOptions,
    defaultSecret: string | readonly string[],
    where: string,
  ) {
    assertKnownOptions(options, ['name', 'secret'], `${where} acceptExpressSession`);
    this.name = options.name ?? 'connect.sid';
    if (typeof this.name !== 'string' || !COOKIE_NAME_PATTERN.test(this.name)) {
      throw new TypeError(
        `${where}: acceptExpressSession.name must be a cookie name token, got ${describeValue(this.name)}`,
      );
    }
    const given = options.secret ?? defaultSecret;
    const secrets = typeof given === 'string' ? [given] : given;
    if (
      !Array.isArray(secrets) ||
      secrets.length === 0 ||
      !secrets.every((secret) => typeof secret === 'string' && secret.length > 0)
    ) {
      // The secrets' text never goes into a message: messages end up in logs.
      throw new TypeError(
        `${where}: acceptExpressSession.secret must be a non-empty string or a non-empty list of them`,
      );
    }
    this.#secrets = [...secrets];
  }

  /** `id` as express-session signs it with its first secret, before URI encoding. */
  sign(id: string): string {
    return `s:${id}.${mac(id, this.#secrets[0] as string)}`;
  }

  /** The session id in this cookie of a `Cookie` request header, when a secret verifies it. */
  verify(cookieHeader: string | string[] | undefined): string | undefined {
    for (const decoded of cookieValues(cookieHeader, this.name, MAX_SAME_NAME_COOKIES)) {
      const id = this.#unsign(decoded);
      if (id !== undefined) return id;
    }
    return undefined;
  }

  #unsign(signed: string): string | undefined {
    if (!signed.startsWith('s:')) return undefined;
    const dot = signed.lastIndexOf('.');
    if (dot <= 2 || signed.length - dot - 1 !== MAC_CHARS) return undefined;
    const id = signed.slice(2, dot);
    const given = Buffer.from(signed.slice(dot + 1));
    let verified = false;
    for (const secret of this.#secrets) {
      const expected = Buffer.from(mac(id, secret));
      // Every secret is checked so the time taken does not reveal which one matched.
      if (expected.length === given.length && timingSafeEqual(expected, given)) verified = true;
    }
    return verified ? id : undefined;
  }
}

function mac(value: string, secret: string): string {
  return createHmac('sha256', secret).update(value).digest('base64').replace(/=+$/, '');
}

function isExpressCookie(value: unknown): boolean {
  return typeof value === 'object' && value !== null && 'originalMaxAge' in value;
}

/**
 * `codec`, reading sessions that express-session stored through `toExpressStore` too: their
 * data comes without express-session's `cookie` object, which sessile keeps in its own cookie
 * and timeouts. Sessions it writes are `codec`'s own.
 */
export function readingExpressSessions(codec: SessionCodec): SessionCodec {
  return {
    name: codec.name,
    encode: (envelope, id) => codec.encode(envelope, id),
    decode(bytes, id) {
      const envelope = codec.decode(bytes, id);
      if (!isExpressCookie(envelope.data.cookie)) return envelope;
      const { cookie: _cookie, ...data } = envelope.data;
      return { ...envelope, data: data as SessionData };
    },
  };
}
