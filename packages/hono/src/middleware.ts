import type { Http2Bindings, HttpBindings } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type {
  CommitOutcome,
  Session,
  SessionCookie,
  SessionCookieAttributes,
  SessionData,
  SessionManager,
  SessionManagerOptions,
} from '@sessile/core';
import {
  commitLostNothing,
  openSessionAdapter,
  type SessionAdapterOptions,
  setGivenHeaders,
} from '@sessile/core/store';
import type { Context, MiddlewareHandler } from 'hono';

export type SessileCookieOptions = SessionCookieAttributes;

/**
 * The Hono environment `sessile()` needs and provides: the Node bindings of `@hono/node-server`,
 * and `c.get('session')`, the locked, loaded session.
 */
export interface SessileEnv<Data extends SessionData = SessionData> {
  Bindings: HttpBindings | Http2Bindings;
  Variables: { session: Session<Data> };
}

interface SessileHonoCommonOptions extends SessionAdapterOptions {
  /**
   * Called when a commit fails (a lost lock, a store error); the response becomes a plain 500
   * when the request changed its session, and is sent as it is when it only read it. Default:
   * the manager's `onError`.
   */
  onCommitError?: (error: unknown, c: Context) => void;
  /**
   * What a login records about the device, read from the request: a user agent, an IP, a label.
   * `session.setOwner(owner)` stores it, and `manager.sessionsOf` lists it. Called only at login.
   */
  loginMeta?: (c: Context) => SessionData | undefined;
}

/** Either a `SessionManager` you built, or the options to build one. */
export type SessileHonoOptions<Data extends SessionData = SessionData> = SessileHonoCommonOptions &
  ({ manager: SessionManager<Data> } | SessionManagerOptions);

/** Hono middleware that gives every request `c.get('session')`. */
export interface SessileHonoMiddleware<Data extends SessionData = SessionData>
  extends MiddlewareHandler<SessileEnv<Data>> {
  readonly manager: SessionManager<Data>;
  readonly cookie: SessionCookie;
  /** Stops the manager's cleanup policy when this middleware built the manager. The store stays open. */
  close(): Promise<void>;
}

const COMMIT_FAILURE_BODY = 'Internal Server Error';

/**
 * Sessions for Hono on Node (`@hono/node-server`), locked from load to commit. The id travels in
 * an HMAC-signed cookie and only ids this server issued are adopted. The session is committed
 * (saved if modified, else lazily touched) once the handler's response is ready, before the
 * server writes it, and in any case once the connection closes, so its lock is always released.
 */
export function sessile<Data extends SessionData = SessionData>(
  options: SessileHonoOptions<Data>,
): SessileHonoMiddleware<Data> {
  const adapter = openSessionAdapter<Data>(options, '@sessile/hono');
  const { manager, cookie, ownsManager } = adapter;
  const { reportCommitError } = adapter;

  const middleware = (async (c: Context<SessileEnv<Data>>, next: () => Promise<void>) => {
    const outgoing = (c.env as Partial<HttpBindings | Http2Bindings> | undefined)?.outgoing;
    if (outgoing === undefined) {
      // Without the Node response there is no close event, and a hung-up client would keep its lock.
      throw new TypeError(
        "@sessile/hono needs @hono/node-server's bindings (c.env.outgoing): serve the app with serve() from @hono/node-server",
      );
    }
    // Another session middleware's session (hono-sessions'): the two would fight over the cookie.
    const present: unknown = c.get('session');
    if (present !== undefined && !sessileSessions.has(present as object)) {
      throw new TypeError(FOREIGN_SESSION);
    }
    const running = adapter.openedFor(outgoing);
    if (running !== undefined) {
      setSession(c, running);
      return next();
    }
    const requestCookie = cookie.verify(c.req.header('cookie'));
    let session: Session<Data>;
    try {
      session = await manager.openForConnection(
        requestCookie?.values ?? requestCookie?.value,
        outgoing,
        adapter.openOptions(c),
      );
    } catch (error) {
      // The client hung up while the request waited for its session's lock: nothing is held
      // and nobody waits for an answer, which app.onError would log as a 500. The server
      // writes nothing for this response; a copy, as a middleware above may add headers to it.
      if (adapter.clientGone(error, outgoing)) return RESPONSE_ALREADY_SENT.clone();
      throw error;
    }
    setSession(c, session);
    adapter.noteOpened(outgoing, session);
    adapter.track(
      session,
      outgoing,
      () => statusOf(c, false),
      (error) => reportCommitError(error, c),
    );
    // @hono/node-server builds the URL's scheme from the TLS socket; X-Forwarded-Proto is not read.
    const secure = c.req.url.startsWith('https:');
    adapter.cookieOnEarlyHeaders(session, outgoing, requestCookie, secure);

    // Hono answers an `Error` through its error handler, which sets `c.res`; anything else thrown
    // escapes `next()`, and the server then answers 500 whatever `c.res` says.
    let escaped = false;
    try {
      await next();
    } catch (error) {
      escaped = true;
      throw error;
    } finally {
      await commitInto(c, session, requestCookie, escaped, secure);
    }
  }) as SessileHonoMiddleware<Data>;

  const commitInto = async (
    c: Context<SessileEnv<Data>>,
    session: Session<Data>,
    requestCookie: ReturnType<SessionCookie['verify']>,
    escaped: boolean,
    secure: boolean,
  ) => {
    let outcome: CommitOutcome;
    try {
      outcome = await adapter.finish(session, statusOf(c, escaped));
    } catch (error) {
      reportCommitError(error, c);
      // A session the request only read loses nothing: its answer stands, without a cookie.
      if (c.env.outgoing.headersSent || commitLostNothing(session, error)) return;
      // The handler's answer claims a save that did not happen: don't send it, nor its headers.
      // A stream that is never sent would keep what it reads (a file descriptor) open.
      const dropped = c.res.body;
      if (dropped !== null && !dropped.locked) dropped.cancel().catch(() => undefined);
      c.res = undefined;
      c.res = new Response(COMMIT_FAILURE_BODY, {
        status: 500,
        headers: { 'content-type': 'text/plain; charset=utf-8' },
      });
      return;
    }
    const { outgoing } = c.env;
    if (outgoing.headersSent) return;
    const headers = cookie.responseHeaders(
      session,
      requestCookie,
      outcome,
      manager.touchAfterMs,
      secure,
    );
    if (headers.length > 0) setCookiesAsWritten(outgoing, headers);
  };

  Object.defineProperties(middleware, {
    manager: { value: manager, enumerable: true },
    cookie: { value: cookie, enumerable: true },
    close: { value: () => (ownsManager ? manager.close() : Promise.resolve()) },
  });
  return middleware;
}

const FOREIGN_SESSION =
  "@sessile/hono: c.get('session') was set by another session middleware before sessile() (hono-sessions' sessionMiddleware?): use one of the two. Remove the other, or keep hono-sessions and give it toHonoSessionsStore(store) as its store instead of using sessile()";

const REPLACED =
  "@sessile/hono: c.set('session', …) cannot replace the Session sessile() opened for this request; if another session middleware after sessile() (hono-sessions' sessionMiddleware?) tries to, remove it, or keep hono-sessions and give it toHonoSessionsStore(store) as its store instead of using sessile(). To log out, await c.get('session').invalidate()";

/** Every session a `sessile()` made `c.get('session')`: any other value there is another middleware's. */
const sessileSessions = new WeakSet<object>();

/** The contexts whose `c.set` refuses to replace their session. */
const guardedContexts = new WeakSet<Context>();

/**
 * Makes `session` the request's `c.get('session')`, which from then on only a `sessile()` may
 * set: another session middleware after it (hono-sessions') would hand the handler its own
 * session, whose first use as sessile's failed with an unrelated TypeError.
 */
function setSession(c: Context, session: Session<SessionData>): void {
  sessileSessions.add(session);
  if (!guardedContexts.has(c)) {
    guardedContexts.add(c);
    const set = c.set;
    c.set = ((key: string, value: unknown) => {
      if (key === 'session' && !sessileSessions.has(value as object)) {
        throw new TypeError(REPLACED);
      }
      return (set as (key: string, value: unknown) => void)(key, value);
    }) as typeof c.set;
  }
  c.set('session', session);
}

/**
 * The status the client gets: the one a handler wrote on the Node response itself
 * (`RESPONSE_ALREADY_SENT`) once its head is out, else the server's 500 for a thrown value Hono's
 * error handler never saw (`escaped`), else that of the handler's `Response`.
 */
function statusOf<Data extends SessionData>(
  c: Context<SessileEnv<Data>>,
  escaped: boolean,
): number {
  const { outgoing } = c.env;
  if (outgoing.headersSent) return outgoing.statusCode;
  return escaped ? 500 : c.res.status;
}

/**
 * Adds `Set-Cookie` headers to the Node response as the server writes its head: to the handler's
 * response, and to the server's own 500 for an escaped throw. The handler's `Response` is left as
 * it is, since an app may return one `Response` object (a redirect, an empty answer) to many
 * clients, which would then carry every earlier client's cookie. Putting them on it through
 * `c.header()` would also make `@hono/node-server` rebuild it with its body as a stream.
 */
function setCookiesAsWritten(
  outgoing: HttpBindings['outgoing'] | Http2Bindings['outgoing'],
  headers: readonly string[],
): void {
  const writeHead = outgoing.writeHead as (...args: unknown[]) => unknown;
  outgoing.writeHead = function writeHeadWithCookies(this: unknown, ...args: unknown[]) {
    outgoing.writeHead = writeHead as typeof outgoing.writeHead;
    // A status Node refuses: let it throw before anything here changes the response.
    const code = Number(args[0]) | 0;
    if (code < 100 || code > 999) return writeHead.apply(this, args);
    // Headers given here would replace the cookies appended below; set first, they join them.
    const rest = setGivenHeaders(outgoing, args);
    for (const header of headers) outgoing.appendHeader('Set-Cookie', header);
    return writeHead.apply(this, rest);
  } as typeof outgoing.writeHead;
}
