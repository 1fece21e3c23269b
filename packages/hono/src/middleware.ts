import type { Http2Bindings, HttpBindings } from '@hono/node-server';
import type {
  CommitOutcome,
  Session,
  SessionCookie,
  SessionCookieAttributes,
  SessionData,
  SessionManager,
  SessionManagerOptions,
} from '@sessile/core';
import { openSessionAdapter, type SessionAdapterOptions } from '@sessile/core/store';
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
   * Called when a commit fails (a lost lock, a store error); the response becomes a plain 500.
   * Default: the manager's `onError`.
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
    const running = adapter.openedFor(outgoing);
    if (running !== undefined) {
      c.set('session', running);
      return next();
    }
    const requestCookie = cookie.verify(c.req.header('cookie'));
    const session = await manager.openForConnection(
      requestCookie?.value,
      outgoing,
      adapter.openOptions(c),
    );
    c.set('session', session);
    adapter.noteOpened(outgoing, session);
    adapter.track(
      session,
      outgoing,
      () => c.res.status,
      (error) => reportCommitError(error, c),
    );
    adapter.cookieOnEarlyHeaders(session, outgoing, requestCookie);

    // Hono answers an `Error` through its error handler, which sets `c.res`; anything else thrown
    // escapes `next()`, and the server then answers 500 whatever `c.res` says.
    let escaped = false;
    try {
      await next();
    } catch (error) {
      escaped = true;
      throw error;
    } finally {
      await commitInto(c, session, requestCookie, escaped);
    }
  }) as SessileHonoMiddleware<Data>;

  const commitInto = async (
    c: Context<SessileEnv<Data>>,
    session: Session<Data>,
    requestCookie: ReturnType<SessionCookie['verify']>,
    escaped: boolean,
  ) => {
    let outcome: CommitOutcome;
    try {
      outcome = await adapter.finish(session, escaped ? 500 : c.res.status);
    } catch (error) {
      reportCommitError(error, c);
      if (c.env.outgoing.headersSent) return;
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
    const headers = cookie.responseHeaders(session, requestCookie, outcome, manager.touchAfterMs);
    if (headers.length === 0) return;
    // The server's own 500 for an escaped throw keeps the headers set on its Node response, so
    // what was committed (a regenerated id) still reaches the client.
    if (escaped) for (const header of headers) outgoing.appendHeader('Set-Cookie', header);
    else appendSetCookies(c, headers);
  };

  Object.defineProperties(middleware, {
    manager: { value: manager, enumerable: true },
    cookie: { value: cookie, enumerable: true },
    close: { value: () => (ownsManager ? manager.close() : Promise.resolve()) },
  });
  return middleware;
}

/**
 * Adds `Set-Cookie` headers to the handler's finished response. `c.header()` on a finished
 * response reads `bodyUsed`, which makes `@hono/node-server` build a full WHATWG Response and then
 * copy it with its body as a stream: about 100 µs per cookie-setting request. The response's own
 * headers take the cookies in place; only immutable ones (a fetched or redirect Response) refuse,
 * and those get the copy.
 */
function appendSetCookies(c: Context, headers: readonly string[]): void {
  if (c.finalized) {
    try {
      const target = c.res.headers;
      for (const header of headers) target.append('Set-Cookie', header);
      return;
    } catch (error) {
      if (!(error instanceof TypeError)) throw error;
    }
  }
  for (const header of headers) c.header('Set-Cookie', header, { append: true });
}
