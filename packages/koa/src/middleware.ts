import { STATUS_CODES } from 'node:http';
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
  sessionProperty,
} from '@sessile/core/store';
import type { Middleware, ParameterizedContext } from 'koa';

export type SessileCookieOptions = SessionCookieAttributes;

/** A Koa context after `sessile()` ran: `ctx.session` is the locked, loaded session. */
export type SessileContext<Data extends SessionData = SessionData> = ParameterizedContext & {
  /** Not assignable: log out with `await ctx.session.invalidate()`, not koa-session's `ctx.session = null`. */
  readonly session: Session<Data>;
};

interface SessileKoaCommonOptions extends SessionAdapterOptions {
  /**
   * Called when a commit fails (a lost lock, a store error). When the response headers have not
   * gone out yet and the request changed its session, the response becomes a plain 500; one that
   * only read it is sent as it is. Default: the manager's `onError`.
   */
  onCommitError?: (error: unknown, ctx: ParameterizedContext) => void;
  /**
   * What a login records about the device, read from the request: a user agent, an IP, a label.
   * `session.setOwner(owner)` stores it, and `manager.sessionsOf` lists it. Called only at login.
   */
  loginMeta?: (ctx: ParameterizedContext) => SessionData | undefined;
}

/** Either a `SessionManager` you built, or the options to build one. */
export type SessileKoaOptions<Data extends SessionData = SessionData> = SessileKoaCommonOptions &
  ({ manager: SessionManager<Data> } | SessionManagerOptions);

/** Koa middleware that gives every request `ctx.session`. */
export interface SessileKoaMiddleware<Data extends SessionData = SessionData> extends Middleware {
  readonly manager: SessionManager<Data>;
  readonly cookie: SessionCookie;
  /** Stops the manager's cleanup policy when this middleware built the manager. The store stays open. */
  close(): Promise<void>;
}

const COMMIT_FAILURE_BODY = 'Internal Server Error';

/**
 * Sessions for Koa, locked from load to commit. The id travels in an HMAC-signed cookie and only
 * ids this server issued are adopted. The session is committed (saved if modified, else lazily
 * touched) once the downstream middleware settles, before Koa sends the response, and in any case
 * once the connection closes, so its lock is always released.
 */
export function sessile<Data extends SessionData = SessionData>(
  options: SessileKoaOptions<Data>,
): SessileKoaMiddleware<Data> {
  const adapter = openSessionAdapter<Data>(options, '@sessile/koa');
  const { manager, cookie, ownsManager } = adapter;
  const { reportCommitError } = adapter;

  const middleware = (async (ctx: ParameterizedContext, next: () => Promise<unknown>) => {
    const running = adapter.openedFor(ctx.req);
    if (running !== undefined) {
      setSession(ctx, running);
      return next();
    }
    // koa-session's middleware ran on this request: the two would each keep a session and a cookie.
    if (koaSessionRan(ctx)) throw new TypeError(FOREIGN_SESSION);
    const requestCookie = cookie.verify(ctx.req.headers.cookie);
    let session: Session<Data>;
    try {
      session = await manager.openForConnection(
        requestCookie?.values ?? requestCookie?.value,
        ctx.res,
        adapter.openOptions(ctx),
      );
    } catch (error) {
      // The client hung up while the request waited for its session's lock: nothing is held
      // and nobody waits for an answer, which Koa's error handling would log as a 500. Koa
      // writes nothing to the closed connection.
      if (adapter.clientGone(error, ctx.res)) return;
      throw error;
    }
    setSession(ctx, session);
    adapter.noteOpened(ctx.req, session);
    adapter.track(
      session,
      ctx.res,
      () => ctx.status,
      (error) => reportCommitError(error, ctx),
    );
    // Koa's ctx.secure honours app.proxy (X-Forwarded-Proto), for cookie.secure 'auto'.
    const secure = ctx.secure;
    adapter.cookieOnEarlyHeaders(session, ctx.res, requestCookie, secure);

    try {
      await next();
    } catch (error) {
      // Koa answers the error itself; the session is finished and its lock released first.
      let failedOutcome: CommitOutcome | undefined;
      try {
        failedOutcome = await adapter.finish(session, statusKoaSends(error));
      } catch (commitError) {
        reportCommitError(commitError, ctx);
      }
      if (failedOutcome !== undefined && !ctx.headerSent) {
        // What was committed (a regenerated id, a new session) needs its cookie on the error's
        // response too: an app's error middleware keeps the context's headers, and Koa's own
        // error response, which drops them, gets them back just before it is sent.
        const headers = cookie.responseHeaders(
          session,
          requestCookie,
          failedOutcome,
          manager.touchAfterMs,
          secure,
        );
        for (const header of headers) ctx.append('Set-Cookie', header);
        sendWithKoaError(ctx, headers);
      }
      throw error;
    }

    let outcome: CommitOutcome;
    try {
      outcome = await adapter.finish(session, ctx.status);
    } catch (error) {
      reportCommitError(error, ctx);
      // A session the request only read loses nothing: its answer stands, without a cookie.
      if (ctx.headerSent || commitLostNothing(session, error)) return;
      // The handler's answer claims a save that did not happen: don't send it.
      for (const name of ctx.res.getHeaderNames()) ctx.res.removeHeader(name);
      ctx.status = 500;
      ctx.type = 'text/plain; charset=utf-8';
      ctx.body = COMMIT_FAILURE_BODY;
      return;
    }
    if (ctx.headerSent) return;
    const headers = cookie.responseHeaders(
      session,
      requestCookie,
      outcome,
      manager.touchAfterMs,
      secure,
    );
    for (const header of headers) ctx.append('Set-Cookie', header);
    // A middleware above this one may still fail; Koa's error response must carry them too.
    sendWithKoaError(ctx, headers);
  }) as SessileKoaMiddleware<Data>;

  Object.defineProperties(middleware, {
    manager: { value: manager, enumerable: true },
    cookie: { value: cookie, enumerable: true },
    close: { value: () => (ownsManager ? manager.close() : Promise.resolve()) },
  });
  return middleware;
}

const FOREIGN_SESSION =
  "@sessile/koa: koa-session's middleware ran on this request before sessile(): use one of the two on a path. Mount them on paths that do not overlap, or keep koa-session and give it toKoaSessionStore(store) as its store instead of using sessile()";

/**
 * Whether koa-session's middleware ran on `ctx`: as it starts, it keeps its per-request state on
 * `ctx` under a symbol whose description names `contextSession` (koa-session 7: `contextSession instance`).
 */
function koaSessionRan(ctx: ParameterizedContext): boolean {
  for (const key of Object.getOwnPropertySymbols(ctx)) {
    if (key.description?.includes('contextSession')) return true;
  }
  return false;
}

/** Sets `ctx.session`, which cannot be assigned: koa-session logs out with `ctx.session = null`. */
const setSession = sessionProperty(
  "@sessile/koa: ctx.session is the request's Session and cannot be replaced; to log out, await ctx.session.invalidate()",
);

/**
 * Adds `cookies` to the response Koa's own error handling sends for this request, should an
 * error (thrown below `sessile()`, or above it after the commit) get there: `ctx.onerror` first removes every header, so they are set again as it ends
 * the response. The thrown error itself is never changed: an app may throw one error object
 * from many requests, and cookies put on it would reach every later client.
 */
function sendWithKoaError(ctx: ParameterizedContext, cookies: string[]): void {
  if (cookies.length === 0) return;
  const onerror = ctx.onerror;
  ctx.onerror = function onerrorWithCookies(this: unknown, error: Error) {
    const res = ctx.res;
    const end = res.end;
    res.end = function endWithCookies(this: unknown, ...args: unknown[]) {
      res.end = end;
      if (!res.headersSent) {
        for (const cookie of cookies) res.appendHeader('Set-Cookie', cookie);
      }
      return (end as (...endArgs: unknown[]) => unknown).apply(res, args);
    } as typeof res.end;
    try {
      return onerror.call(ctx, error);
    } finally {
      res.end = end;
    }
  };
}

/**
 * The status Koa's own error response gives `error`: its `status` (or `statusCode`) when that is
 * a known HTTP status, else 500, and 500 for anything thrown that is not an `Error`.
 */
function statusKoaSends(error: unknown): number {
  const isError =
    error instanceof Error || Object.prototype.toString.call(error) === '[object Error]';
  if (!isError) return 500;
  const { status, statusCode } = error as { status?: unknown; statusCode?: unknown };
  const given = status || statusCode;
  return typeof given === 'number' && STATUS_CODES[given] !== undefined ? given : 500;
}
