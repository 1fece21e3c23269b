import type { IncomingMessage, ServerResponse } from 'node:http';
import type {
  CommitOutcome,
  Session,
  SessionCookie,
  SessionCookieAttributes,
  SessionData,
  SessionManager,
  SessionManagerOptions,
  VerifiedCookie,
} from '@sessile/core';
import { openSessionAdapter, type SessionAdapterOptions } from '@sessile/core/store';

export type SessileCookieOptions = SessionCookieAttributes;

interface SessileCommonOptions extends SessionAdapterOptions {
  /**
   * Called when a commit fails (a lost lock, a store error). When the response headers have not
   * gone out yet, the response becomes a plain 500. Default: the manager's `onError`.
   */
  onCommitError?: (error: unknown, req: IncomingMessage) => void;
  /**
   * What a login records about the device, read from the request: a user agent, an IP, a label.
   * `session.setOwner(owner)` stores it, and `manager.sessionsOf` lists it. Called only at login.
   */
  loginMeta?: (req: IncomingMessage) => SessionData | undefined;
}

/** Either a `SessionManager` you built, or the options to build one. */
export type SessileOptions<Data extends SessionData = SessionData> = SessileCommonOptions &
  ({ manager: SessionManager<Data> } | SessionManagerOptions);

/** A request after `sessile()` ran: `req.session` is the locked, loaded session. */
export type SessileRequest<Data extends SessionData = SessionData> = IncomingMessage & {
  session: Session<Data>;
};

/** Connect-style middleware for Express, connect and plain `node:http`. */
export interface SessileMiddleware<Data extends SessionData = SessionData> {
  (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void): void;
  readonly manager: SessionManager<Data>;
  readonly cookie: SessionCookie;
  /**
   * Opens the session for `req` and arranges its commit; resolves with it, also set as
   * `req.session`. For `node:http` servers that prefer a promise to `next`.
   */
  handle(req: IncomingMessage, res: ServerResponse): Promise<Session<Data>>;
  /** Stops the manager's cleanup policy. The store stays open. */
  close(): Promise<void>;
}

type End = ServerResponse['end'];
type WriteHead = ServerResponse['writeHead'];

/**
 * Sessions for every request, locked from load to commit. The session id travels in a signed
 * cookie and only ids this server issued are ever adopted. The session is committed (saved if
 * modified, else lazily touched) before the response ends, and in any case once the connection
 * closes, and its lock is always released. With `commitOnError: false`, a response whose status
 * is 500 or above discards the session's changes instead.
 */
export function sessile<Data extends SessionData = SessionData>(
  options: SessileOptions<Data>,
): SessileMiddleware<Data> {
  const adapter = openSessionAdapter<Data>(options, 'sessile()');
  const { manager, cookie, commitOnError } = adapter;
  const discards = (status: number) => !commitOnError && status >= 500;
  const { reportCommitError } = adapter;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<Session<Data>> => {
    const requestCookie = cookie.verify(req.headers.cookie);
    const session = await manager.openForConnection(
      requestCookie?.value,
      res,
      adapter.openOptions(req),
    );
    (req as SessileRequest<Data>).session = session;
    attach(req, res, session, requestCookie);
    return session;
  };

  const attach = (
    req: IncomingMessage,
    res: ServerResponse,
    session: Session<Data>,
    requestCookie: VerifiedCookie | undefined,
  ) => {
    let outcome: CommitOutcome | undefined;
    let failed = false;

    const writeHead = res.writeHead as (...args: unknown[]) => ServerResponse;
    res.writeHead = function writeHeadWithCookie(this: ServerResponse, ...args: unknown[]) {
      if (!failed && !res.headersSent) {
        const status = typeof args[0] === 'number' ? args[0] : res.statusCode;
        // Headers sent before end(), as a stream's are, must not announce a save that a failed
        // response will discard.
        const expected = outcome ?? (discards(status) ? 'unchanged' : undefined);
        const headers = cookie.responseHeaders(
          session,
          requestCookie,
          expected,
          manager.touchAfterMs,
        );
        for (const header of headers) appendSetCookie(res, header);
      }
      return writeHead.apply(this, args);
    } as WriteHead;

    const end = res.end as (...args: unknown[]) => ServerResponse;
    let ending = false;
    res.end = function endAfterCommit(this: ServerResponse, ...args: unknown[]) {
      // A second end() while the commit runs would send the response before the save.
      if (ending) return this;
      ending = true;
      adapter.finish(session, res.statusCode).then(
        (result) => {
          outcome = result;
          end.apply(res, args);
        },
        (error: unknown) => {
          failed = true;
          reportCommitError(error, req);
          if (res.headersSent) {
            end.apply(res, args);
            return;
          }
          // The handler's answer claims a save that did not happen: don't send it.
          for (const name of res.getHeaderNames()) res.removeHeader(name);
          res.statusCode = 500;
          res.setHeader('content-type', 'text/plain; charset=utf-8');
          end.call(res, 'Internal Server Error');
        },
      );
      return res;
    } as End;

    adapter.track(
      session,
      res,
      () => res.statusCode,
      (error) => reportCommitError(error, req),
    );
  };

  const middleware = ((
    req: IncomingMessage,
    res: ServerResponse,
    next: (error?: unknown) => void,
  ) => {
    if ((req as Partial<SessileRequest>).session !== undefined) {
      next();
      return;
    }
    handle(req, res).then(() => next(), next);
  }) as SessileMiddleware<Data>;
  Object.defineProperties(middleware, {
    manager: { value: manager, enumerable: true },
    cookie: { value: cookie, enumerable: true },
    handle: { value: handle },
    close: { value: () => manager.close() },
  });
  return middleware;
}

function appendSetCookie(res: ServerResponse, header: string): void {
  const existing = res.getHeader('set-cookie');
  if (existing === undefined) res.setHeader('set-cookie', header);
  else if (Array.isArray(existing)) res.setHeader('set-cookie', [...existing, header]);
  else res.setHeader('set-cookie', [String(existing), header]);
}
