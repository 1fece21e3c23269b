import { jsonCodec, type SessionData } from './codecs.js';
import {
  COOKIE_ATTRIBUTE_NAMES,
  SessionCookie,
  type SessionCookieAttributes,
  type VerifiedCookie,
} from './cookies.js';
import { isSessionError } from './errors.js';
import {
  type AcceptExpressSessionOptions,
  ExpressSessionCookie,
  readingExpressSessions,
} from './express-session.js';
import {
  adapterManager,
  type OpenOptions,
  type SessionManager,
  type SessionManagerOptions,
} from './manager.js';
import {
  DEFAULT_IDLE_TIMEOUT_MS,
  defaultTouchAfterMs,
  MANAGER_OPTIONS,
} from './manager-options.js';
import type { CommitOutcome, Session } from './session.js';
import type { SessionStore } from './types.js';
import {
  assertKnownOptions,
  type ClosableResponse,
  connectionClosed,
  describeValue,
  hasMethods,
} from './util.js';

/**
 * The options every HTTP adapter (`sessile()`, the Fastify plugin) takes beside either
 * `{ manager }` or the manager's own options. Each adapter adds `onCommitError`, typed with its
 * framework's request.
 */
export interface SessionAdapterOptions {
  /**
   * Cookie signing secrets, each at least 32 characters: one, or a list whose first entry signs
   * and every entry verifies (rotation).
   */
  secret: string | readonly string[];
  /** Name `'sid'`, httpOnly, sameSite `'lax'` and path `'/'` by default. */
  cookie?: SessionCookieAttributes;
  /**
   * Whether a request that failed (its response status is 500 or above, as when a handler
   * throws) still commits its session. `false` discards its changes instead (`session.discard()`),
   * so a half-done change is never saved. Default `true`: a session is committed whatever the status.
   */
  commitOnError?: boolean;
  /**
   * For a transition from express-session: a request with its signed cookie (`connect.sid`)
   * and no sessile cookie keeps its session when the store holds that id, and gets sessile's
   * cookie in place of express-session's. The manager built here reads the sessions that
   * express-session stored through `toExpressStore`; a manager passed as `manager` needs
   * `codec: readingExpressSessions(codec)` for that. `true` uses the defaults. Default off.
   */
  acceptExpressSession?: boolean | AcceptExpressSessionOptions;
}

const ADAPTER_OPTIONS = [
  'secret',
  'cookie',
  'commitOnError',
  'onCommitError',
  'manager',
  'acceptExpressSession',
  'loginMeta',
];

/** What `openSessionAdapter` builds from an adapter's options. */
export interface SessionAdapter<Data extends SessionData> {
  manager: SessionManager<Data>;
  cookie: SessionCookie;
  /** True when the adapter built the manager, so closing the adapter closes it. */
  ownsManager: boolean;
  /** Whether a request that failed commits its session (see `SessionAdapterOptions`), default true. */
  commitOnError: boolean;
  /**
   * What the adapter passes to `manager.openForConnection` for `request`: its `loginMeta`, bound
   * to the request, for `session.setOwner()` to record.
   */
  openOptions(request: unknown): Omit<OpenOptions, 'signal'>;
  /**
   * Hands a failed commit to the adapter's `onCommitError(error, request)`, or to the manager's
   * `onError` without one. A handler that throws reaches `onError` with the error it was given,
   * and never the process: the response is still answered.
   */
  reportCommitError(error: unknown, request: unknown): void;
  /** Commits the session, or discards it when `commitOnError` is false and `status` is 500 or above. */
  finish(session: Session<Data>, status: number): Promise<CommitOutcome>;
  /**
   * Ties a session to its response: a connection that closes before the session was finished
   * finishes it, so its lock is released, and a response sent tells the cleanup policy.
   */
  track(
    session: Session<Data>,
    response: ResponseEvents,
    status: () => number,
    onCommitError: (error: unknown) => void,
  ): void;
  /**
   * The session a `sessile()` already opened for `request` (its Node request or response, the
   * same object every middleware of one request sees) under this adapter's cookie name and
   * store, noted by `noteOpened`. A second `sessile()` for the same sessions on one request (an
   * app's and a router's or sub-app's) hands it on instead of waiting on the lock the request
   * already holds; one with a cookie of its own opens its own session. Throws a `TypeError`
   * where another `sessile()` on the request keeps its sessions under this cookie name in
   * another store: the two would overwrite each other's cookie.
   */
  openedFor(request: object): Session<Data> | undefined;
  noteOpened(request: object, session: Session<Data>): void;
  /** True when any `sessile()` opened a session for `request` (see `openedFor`). */
  openedAny(request: object): boolean;
  /**
   * True when `error` is what `manager.openForConnection` rejects with once the client closed
   * `response`'s connection while the request waited for its session's lock: an `AbortError`,
   * with nothing held. Nobody waits for an answer, so the adapter stops the request quietly
   * instead of handing it to the framework's error handler, which would log a 500 for it.
   */
  clientGone(error: unknown, response: ResponseEvents): boolean;
  /**
   * Gives headers that go out before the commit (a handler that writes the Node response itself:
   * a hijacked Fastify reply, Koa's `ctx.respond = false`, Hono's `RESPONSE_ALREADY_SENT`) the
   * cookie the commit will need. Without it a new or regenerated session's id never reaches the
   * client, and a regenerated session signs the user out. `secure`: whether the request is
   * secure, for `cookie.secure: 'auto'`.
   */
  cookieOnEarlyHeaders(
    session: Session<Data>,
    response: EarlyHeaders,
    requestCookie: VerifiedCookie | undefined,
    secure?: boolean,
  ): void;
}

/** The part of a Node `ServerResponse` that `track` listens to. */
export interface ResponseEvents extends ClosableResponse {
  once(event: 'close' | 'finish', listener: () => void): unknown;
}

/** The part of a Node response (HTTP/1 or HTTP/2) whose first headers `cookieOnEarlyHeaders` adds to. */
export interface EarlyHeaders {
  readonly headersSent: boolean;
  readonly statusCode: number;
  writeHead(...args: never[]): unknown;
  getHeader(name: string): unknown;
  setHeader(name: string, value: string | number | readonly string[]): unknown;
  appendHeader(name: string, value: string | readonly string[]): unknown;
  removeHeader(name: string): unknown;
}

/**
 * Checks an HTTP adapter's options and builds its manager and cookie. Errors name options as the
 * adapter's user writes them (`secret`, `cookie.sameSite`), each prefixed with `where`. Unknown
 * options are refused; `frameworkOptions` are more names the framework itself passes along.
 * Nothing is started unless every check passes.
 */
export function openSessionAdapter<Data extends SessionData = SessionData>(
  options: unknown,
  where: string,
  frameworkOptions: readonly string[] = [],
): SessionAdapter<Data> {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`${where} needs options { store, secret }, got ${describeValue(options)}`);
  }
  // `app.use(sessile)` calls the factory with each request (Express's req, Koa's ctx, Hono's c),
  // which would be refused for its first unknown property ('_events'), on every request.
  if ('headers' in options || 'req' in options) {
    throw new TypeError(
      `${where} was called with a request, not options: call it once, as app.use(sessile({ store, secret })), not app.use(sessile)`,
    );
  }
  const given = options as SessionAdapterOptions & {
    manager?: SessionManager<Data>;
    onCommitError?: unknown;
    loginMeta?: unknown;
  };
  const ownsManager = given.manager === undefined;
  if (!ownsManager) {
    if (!hasMethods(given.manager, ['openForConnection', 'reportError', 'close'])) {
      throw new TypeError(
        `${where}: manager must be a SessionManager, got ${describeValue(given.manager)}`,
      );
    }
    const beside = MANAGER_OPTIONS.find((name) => name in given);
    if (beside !== undefined) {
      throw new TypeError(
        `${where}: '${beside}' is an option of the SessionManager passed as 'manager'; set it there`,
      );
    }
  }
  assertKnownOptions(
    given,
    [...ADAPTER_OPTIONS, ...MANAGER_OPTIONS, ...frameworkOptions],
    where,
    cookieAttributeHints(given),
  );
  if (ownsManager && (given as { store?: unknown }).store === undefined) {
    throw new TypeError(`${where} needs options { store, secret }: store is missing`);
  }
  if (given.onCommitError !== undefined && typeof given.onCommitError !== 'function') {
    throw new TypeError(
      `${where}: onCommitError must be a function, got ${describeValue(given.onCommitError)}`,
    );
  }
  const loginMeta = given.loginMeta;
  if (loginMeta !== undefined && typeof loginMeta !== 'function') {
    throw new TypeError(
      `${where}: loginMeta must be a function of the request, got ${describeValue(loginMeta)}`,
    );
  }
  const commitOnError: unknown = given.commitOnError ?? true;
  if (typeof commitOnError !== 'boolean') {
    throw new TypeError(
      `${where}: commitOnError must be a boolean, got ${describeValue(commitOnError)}`,
    );
  }
  const cookieOptions: unknown = given.cookie;
  if (
    cookieOptions !== undefined &&
    (typeof cookieOptions !== 'object' || cookieOptions === null || Array.isArray(cookieOptions))
  ) {
    throw new TypeError(`${where}: cookie must be an object, got ${describeValue(cookieOptions)}`);
  }
  const accept: unknown = given.acceptExpressSession ?? false;
  if (typeof accept !== 'boolean' && (typeof accept !== 'object' || accept === null)) {
    throw new TypeError(
      `${where}: acceptExpressSession must be a boolean or { name, secret }, got ${describeValue(accept)}`,
    );
  }
  const expressSession =
    accept === false
      ? undefined
      : new ExpressSessionCookie(accept === true ? {} : accept, given.secret, where);
  const cookie = new SessionCookie(
    { ...given.cookie, secrets: given.secret },
    { where, secrets: 'secret', attributesIn: 'cookie' },
    expressSession,
  );
  assertCookieOutlivesTouch(cookie, given, where);
  const managerOptions = pick(given, MANAGER_OPTIONS) as unknown as SessionManagerOptions;
  if (expressSession !== undefined) {
    managerOptions.codec = readingExpressSessions(managerOptions.codec ?? jsonCodec());
  }
  // Built last: a manager starts its cleanup policy.
  const manager = ownsManager
    ? adapterManager<Data>(managerOptions, where)
    : (given.manager as SessionManager<Data>);
  const finish = (session: Session<Data>, status: number) =>
    !commitOnError && status >= 500 ? session.discard() : session.commit();
  const noOpenOptions = {};
  const onCommitError = given.onCommitError as
    | ((error: unknown, request: unknown) => void)
    | undefined;
  /** Hands `error` to an app's `handler`; one that throws reaches `onError`, never the process. */
  const reportThrough = (handler: (error: unknown) => void, error: unknown) => {
    try {
      handler(error);
    } catch (thrown) {
      manager.reportError(error);
      manager.reportError(thrown);
    }
  };
  return {
    manager,
    cookie,
    ownsManager,
    commitOnError,
    openOptions:
      loginMeta === undefined
        ? () => noOpenOptions
        : (request) => ({
            loginMeta: () => (loginMeta as (request: unknown) => SessionData | undefined)(request),
          }),
    reportCommitError(error, request) {
      if (onCommitError === undefined) manager.reportError(error);
      else reportThrough((failure) => onCommitError(failure, request), error);
    },
    finish,
    track(session, response, status, onCommitError) {
      const onClose = () => {
        if (session.committed) return;
        finish(session, status()).catch((error: unknown) => reportThrough(onCommitError, error));
      };
      // A client that hung up before the session was opened (while a middleware before this one
      // worked) closed the response already: no 'close' comes, so the session is finished now,
      // or its lease would be renewed for good and lock out the session's every other request.
      if (connectionClosed(response)) queueMicrotask(onClose);
      else response.once('close', onClose);
      response.once('finish', () => manager.afterResponse());
    },
    clientGone: (error, response) => isAbortError(error) && connectionClosed(response),
    openedFor(request) {
      for (let opened = openedSessions.get(request); opened !== undefined; opened = opened.next) {
        if (opened.cookieName !== cookie.name) continue;
        if (opened.store === manager.store) return opened.session as Session<Data>;
        throw new TypeError(
          `${where}: another sessile() on this request keeps its sessions under the cookie '${cookie.name}' in another store; give each its own cookie.name`,
        );
      }
      return undefined;
    },
    openedAny: (request) => openedSessions.has(request),
    noteOpened(request, session) {
      openedSessions.set(request, {
        session: session as Session<SessionData>,
        cookieName: cookie.name,
        store: manager.store,
        next: openedSessions.get(request),
      });
    },
    cookieOnEarlyHeaders(session, response, requestCookie, secure = false) {
      // Whether the adapter's own commit already set this cookie on the response.
      const hasCookie = (target: EarlyHeaders) => {
        const set = target.getHeader('set-cookie');
        const lines = Array.isArray(set) ? set : typeof set === 'string' ? [set] : [];
        return lines.some((line) => String(line).startsWith(`${cookie.name}=`));
      };
      const writeHead = response.writeHead as (...args: unknown[]) => unknown;
      response.writeHead = function writeHeadWithCookie(this: EarlyHeaders, ...args: unknown[]) {
        response.writeHead = writeHead;
        // A status Node refuses: let it throw before anything here changes the response.
        const code = Number(args[0]) | 0;
        if (code < 100 || code > 999) return writeHead.apply(this, args);
        // A handler that committed before writing (to free the lock for a long stream) gets
        // the cookie its commit needs; one whose commit is still in flight, none.
        const outcome = session.outcome;
        if (!response.headersSent && (!session.committed || outcome !== undefined)) {
          // The status being written, not yet the response's own.
          const status = typeof args[0] === 'number' ? args[0] : response.statusCode;
          // Headers given here would replace the cookie appended below; set first, it joins them.
          args = setGivenHeaders(response, args);
          // The adapter's own commit sets the cookie itself, on the response or in these headers.
          if (session.committed && hasCookie(response)) return writeHead.apply(this, args);
          let headers: string[] = [];
          try {
            headers = cookie.responseHeaders(
              session,
              requestCookie,
              outcome ?? (!commitOnError && status >= 500 ? 'unchanged' : undefined),
              manager.touchAfterMs,
              secure,
            );
          } catch {
            // Data the session cannot serialise: its commit fails too, and reports why.
          }
          for (const header of headers) response.appendHeader('Set-Cookie', header);
        }
        return writeHead.apply(this, args);
      };
    },
  };
}

/** Peer libraries' top-level names of the cookie's name: koa-session's `key`, @fastify/session's `cookieName`. */
const PEER_COOKIE_NAME_OPTIONS = ['key', 'cookieName'];

/**
 * Where a cookie attribute given beside `secret` instead of in `cookie` goes (koa-session's
 * top-level `maxAge` and `key`, as `maxAgeMs` and `name` here), for the unknown-option error; a
 * plain "did you mean" would point `maxAge` to `manager` and `secure` to `secret`.
 */
function cookieAttributeHints(options: object): Record<string, string> {
  const hints: Record<string, string> = {};
  for (const name of Object.keys(options)) {
    const attribute = PEER_COOKIE_NAME_OPTIONS.includes(name)
      ? 'name'
      : name === 'maxAge'
        ? 'maxAgeMs'
        : name;
    if (COOKIE_ATTRIBUTE_NAMES.includes(attribute as never)) {
      hints[name] = `did you mean 'cookie.${attribute}'?`;
    }
  }
  return hints;
}

/**
 * Refuses a persistent cookie that expires before its session's next touch: the cookie is
 * resent only by a save or a touch, so an active user's browser would drop it.
 */
function assertCookieOutlivesTouch(
  cookie: SessionCookie,
  options: { manager?: { touchAfterMs: number }; touchAfterMs?: unknown; idleTimeoutMs?: unknown },
  where: string,
): void {
  const maxAgeMs = cookie.maxAgeMs;
  if (maxAgeMs === undefined) return;
  let touchAfterMs: unknown;
  let whose = '';
  if (options.manager !== undefined) {
    touchAfterMs = options.manager.touchAfterMs;
    whose = " (the manager's)";
  } else if (options.touchAfterMs !== undefined) {
    touchAfterMs = options.touchAfterMs;
  } else {
    const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    // An invalid idleTimeoutMs is the manager's to refuse, naming it.
    if (typeof idleTimeoutMs !== 'number') return;
    touchAfterMs = defaultTouchAfterMs(idleTimeoutMs);
    whose = ' (the default: idleTimeoutMs / 10, at most 60000)';
  }
  if (typeof touchAfterMs !== 'number' || !(touchAfterMs >= maxAgeMs)) return;
  throw new TypeError(
    `${where}: touchAfterMs must be less than cookie.maxAgeMs (${maxAgeMs}), got ${touchAfterMs}${whose}: the cookie is resent only when its session is saved or touched, so an active user's browser would drop it`,
  );
}

/** A session a `sessile()` opened for a request, under its cookie name, from its store. */
interface OpenedSession {
  readonly session: Session<SessionData>;
  readonly cookieName: string;
  readonly store: SessionStore;
  /** The one opened before it for the same request, by a `sessile()` with another cookie. */
  readonly next: OpenedSession | undefined;
}

/** The sessions each request runs with, by its Node request or response (see `openedFor`). */
const openedSessions = new WeakMap<object, OpenedSession>();

/** An `AbortError` (a `DOMException`, or any error of that name), from any realm. */
function isAbortError(error: unknown): boolean {
  return (
    typeof error === 'object' &&
    error !== null &&
    (error as { name?: unknown }).name === 'AbortError'
  );
}

function pick(options: object, names: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(Object.entries(options).filter(([name]) => names.includes(name)));
}

/**
 * Sets the headers a `writeHead(status, [message], headers)` call carries, as Node merges them
 * with those set before (an object's replace them; an array's, flat or of pairs, replace them
 * and may repeat), and returns the call's arguments without them. As in Node, headers follow a
 * message that is a string, and otherwise take the place of a missing one.
 */
export function setGivenHeaders(res: EarlyHeaders, args: unknown[]): unknown[] {
  const hasMessage = typeof args[1] === 'string';
  const given = hasMessage ? args[2] : (args[2] ?? args[1]);
  if (typeof given !== 'object' || given === null) return args;
  if (Array.isArray(given)) {
    // Node refuses a flat list of odd length: leave it to Node, which throws.
    if (!Array.isArray(given[0]) && given.length % 2 !== 0) return args;
    const pairs: Array<[string, unknown]> = Array.isArray(given[0])
      ? (given as unknown[][]).map(([name, value]) => [String(name), value])
      : Array.from({ length: Math.floor(given.length / 2) }, (_, i) => [
          String(given[2 * i]),
          given[2 * i + 1],
        ]);
    for (const [name] of pairs) res.removeHeader(name);
    for (const [name, value] of pairs) res.appendHeader(name, value as string | readonly string[]);
  } else {
    for (const [name, value] of Object.entries(given)) {
      res.setHeader(name, value as string | number | readonly string[]);
    }
  }
  return hasMessage ? args.slice(0, 2) : args.slice(0, 1);
}

/**
 * True when a failed commit lost nothing the request did: the session was unmodified (the commit
 * had only a lazy touch to make, or found its lock lost) and the store or lock failed. An adapter
 * then sends the handler's answer as it is, where a lost save answers 500.
 */
export function commitLostNothing(session: Pick<Session, 'status'>, error: unknown): boolean {
  if (!isSessionError(error)) return false;
  try {
    return session.status === 'unchanged';
  } catch {
    // Data JSON cannot hold (a BigInt): the request did change it.
    return false;
  }
}
