import type { IncomingMessage, ServerResponse } from 'node:http';
import { Http2ServerResponse } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { isUint8Array } from 'node:util/types';
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
import {
  commitLostNothing,
  openSessionAdapter,
  type SessionAdapterOptions,
  sessionProperty,
  setGivenHeaders,
} from '@sessile/core/store';

export type SessileCookieOptions = SessionCookieAttributes;

interface SessileCommonOptions extends SessionAdapterOptions {
  /**
   * Called when a commit fails (a lost lock, a store error). When the response headers have not
   * gone out yet and the request changed its session, the response becomes a plain 500; one that
   * only read it is sent as it is. Default: the manager's `onError`.
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
  /** Not assignable: log out with `await req.session.invalidate()`, not `req.session = null`. */
  readonly session: Session<Data>;
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
  /**
   * Closes the manager `sessile()` built from its options (stopping its cleanup policy); a
   * manager you passed in is yours to close. The store stays open.
   */
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

  /** The session each request is still opening: a call meanwhile shares it. */
  const opening = new WeakMap<IncomingMessage, Promise<Session<Data>>>();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<Session<Data>> => {
    // A second call for one request would wait on the lock the request itself holds.
    const running = adapter.openedFor(req);
    if (running !== undefined) return running;
    let opened = opening.get(req);
    if (opened === undefined) {
      opened = open(req, res);
      opening.set(req, opened);
    }
    return opened;
  };

  const open = async (req: IncomingMessage, res: ServerResponse): Promise<Session<Data>> => {
    // Holding a response until its commit needs Node's HTTP/1 internals: an HTTP/2 one would
    // throw at end() and hang there, its session locked.
    if ((res as unknown) instanceof Http2ServerResponse) throw new TypeError(HTTP2_REFUSED);
    const requestCookie = cookie.verify(req.headers.cookie);
    const session = await manager.openForConnection(
      requestCookie?.values ?? requestCookie?.value,
      res,
      adapter.openOptions(req),
    );
    setSession(req, session);
    adapter.noteOpened(req, session);
    attach(req, res, session, requestCookie, isSecure(req));
    return session;
  };

  const attach = (
    req: IncomingMessage,
    res: ServerResponse,
    session: Session<Data>,
    requestCookie: VerifiedCookie | undefined,
    secure: boolean,
  ) => {
    let outcome: CommitOutcome | undefined;
    let failed = false;

    const writeHead = res.writeHead as (...args: unknown[]) => ServerResponse;
    res.writeHead = function writeHeadWithCookie(this: ServerResponse, ...args: unknown[]) {
      // A status Node refuses: let it throw before anything here changes the response.
      const code = Number(args[0]) | 0;
      if (code < 100 || code > 999) return writeHead.apply(this, args);
      // A handler that committed first (a long stream freeing the lock) gets the cookie its
      // commit's outcome needs; none while that commit runs or after it failed.
      const committed = outcome ?? session.outcome;
      if (!failed && !res.headersSent && (committed !== undefined || !session.committed)) {
        const status = typeof args[0] === 'number' ? args[0] : res.statusCode;
        // The headers given here replace those set before, as Node would merge them, so the
        // session cookie joins a `Set-Cookie` among them instead of losing to it.
        args = setGivenHeaders(res, args);
        // Headers sent before end(), as a stream's are, must not announce a save that a failed
        // response will discard.
        const expected = committed ?? (discards(status) ? 'unchanged' : undefined);
        let headers: string[] = [];
        try {
          headers = cookie.responseHeaders(
            session,
            requestCookie,
            expected,
            manager.touchAfterMs,
            secure,
          );
        } catch {
          // Data the session cannot serialise: its commit fails too, and reports why.
        }
        for (const header of headers) appendSetCookie(res, header);
      }
      return writeHead.apply(this, args);
    } as WriteHead;

    const end = res.end as (...args: unknown[]) => ServerResponse;
    /** A plain 500 in place of the handler's answer, its headers and status message included. */
    const endWith500 = () => {
      for (const name of res.getHeaderNames()) res.removeHeader(name);
      res.statusCode = 500;
      res.statusMessage = 'Internal Server Error';
      res.setHeader('content-type', 'text/plain; charset=utf-8');
      end.call(res, 'Internal Server Error');
    };
    /** The handler's `end()`, once the commit let it go; what Node still refuses fails this response only. */
    const endNow = (args: unknown[]) => {
      try {
        end.apply(res, args);
      } catch (error) {
        manager.reportError(error);
        if (res.headersSent) res.destroy();
        else endWith500();
      }
    };
    let ending = false;
    res.end = function endAfterCommit(this: ServerResponse, ...args: unknown[]) {
      // A second end() while the commit runs would send the response before the save.
      if (ending) return this;
      // What Node refuses at once is refused from the handler's own call, as without sessile(),
      // so Express's error handling answers it; after the commit it would reach no handler.
      assertEndable(res, args);
      ending = true;
      // Until the commit lets the response really end, it reads as sent and ended, as it would
      // without sessile(): code that checks `headersSent` before answering again, or sets a
      // header after the answer, sees what Node would show it.
      const hold = holdAsEnded(res);
      adapter
        .finish(session, res.statusCode)
        .then(
          (result) => {
            outcome = result;
            hold.release();
            endNow(args);
          },
          (error: unknown) => {
            failed = true;
            hold.release();
            reportCommitError(error, req);
            // A session the request only read loses nothing: its answer stands, without a cookie.
            if (res.headersSent || commitLostNothing(session, error)) {
              endNow(args);
              return;
            }
            // The handler's answer claims a save that did not happen: don't send it.
            endWith500();
          },
        )
        .finally(() => hold.ended());
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
    // Another session middleware's req.session (express-session's): the two would both save
    // and end the response, so the request fails saying which to remove.
    if ((req as Partial<SessileRequest>).session !== undefined && !adapter.openedAny(req)) {
      next(new TypeError(FOREIGN_SESSION));
      return;
    }
    // A second sessile() for the same sessions finds the one this request opened (`handle`).
    handle(req, res).then(
      () => next(),
      (error: unknown) => {
        // The client hung up while the request waited for its session's lock: nothing is held
        // and nobody waits for an answer, which Express's error handler would log as a 500.
        if (!adapter.clientGone(error, res)) next(error);
      },
    );
  }) as SessileMiddleware<Data>;
  Object.defineProperties(middleware, {
    manager: { value: manager, enumerable: true },
    cookie: { value: cookie, enumerable: true },
    handle: { value: handle },
    close: { value: () => (adapter.ownsManager ? manager.close() : Promise.resolve()) },
  });
  return middleware;
}

const HTTP2_REFUSED =
  'sessile(): an HTTP/2 response (node:http2) cannot be served: use a node:http server, or @sessile/fastify or @sessile/hono, which serve HTTP/2';

const FOREIGN_SESSION =
  "sessile(): req.session was set by another session middleware (express-session's?), which sessile() replaces: remove it; acceptExpressSession reads its signed-in users' cookies and sessions during a switch";

/** Sets `req.session`, which cannot be assigned: log out with `invalidate()`, not `req.session = null`. */
const setSession = sessionProperty(
  "sessile(): req.session is the request's Session and cannot be replaced; to log out, await req.session.invalidate()",
);

function appendSetCookie(res: ServerResponse, header: string): void {
  const existing = res.getHeader('set-cookie');
  if (existing === undefined) res.setHeader('set-cookie', header);
  else if (Array.isArray(existing)) res.setHeader('set-cookie', [...existing, header]);
  else res.setHeader('set-cookie', [String(existing), header]);
}

/** A header value (or status message) Node refuses to write: `checkInvalidHeaderChar` in `node:_http_common`. */
const INVALID_HEADER_CHAR = /[^\t\x20-\x7e\x80-\xff]/;

/**
 * Throws what Node's `res.end(...args)` throws before writing anything: a chunk that is not a
 * string or bytes, an unknown encoding, and, for headers not yet sent, a status code or message
 * it cannot write. The errors carry Node's codes.
 */
function assertEndable(res: ServerResponse, args: unknown[]): void {
  const [chunk, encoding] = args;
  // Node takes a function in the chunk's place as the callback, and writes no falsy chunk.
  if (typeof chunk !== 'function' && chunk) {
    if (typeof chunk !== 'string' && !isUint8Array(chunk)) {
      throw nodeError(
        TypeError,
        'ERR_INVALID_ARG_TYPE',
        `The "chunk" argument must be of type string or an instance of Buffer or Uint8Array. Received ${typeof chunk}`,
      );
    }
    const named = typeof chunk === 'string' && typeof encoding === 'string' && encoding !== '';
    if (named && encoding !== 'buffer' && !Buffer.isEncoding(encoding)) {
      throw nodeError(TypeError, 'ERR_UNKNOWN_ENCODING', `Unknown encoding: ${encoding}`);
    }
  }
  if (res.headersSent) return;
  const status = res.statusCode | 0;
  if (status < 100 || status > 999) {
    throw nodeError(
      RangeError,
      'ERR_HTTP_INVALID_STATUS_CODE',
      `Invalid status code: ${String(res.statusCode)}`,
    );
  }
  if (typeof res.statusMessage === 'string' && INVALID_HEADER_CHAR.test(res.statusMessage)) {
    throw nodeError(TypeError, 'ERR_INVALID_CHAR', 'Invalid character in statusMessage');
  }
}

function nodeError(
  Type: new (message: string) => Error,
  code: string,
  message: string,
): Error & { code: string } {
  return Object.assign(new Type(message), { code });
}

/** What a held response has as its header text: any text tells Node the headers went out. */
const HELD_HEADER = 'held by sessile() until the session is committed';

/** On a connection's `destroy` while a response is held: the connection's own `destroy`. */
const OWN_DESTROY = Symbol('sessile: own destroy of a held connection');

type DestroyAfterAnswer = ((...args: unknown[]) => unknown) & {
  [OWN_DESTROY]?: (...args: unknown[]) => unknown;
};

/** How `holdAsEnded` lets a response go: `release` before the real `end()`, `ended` after it. */
interface Hold {
  release(): void;
  ended(): void;
}

/**
 * Makes `res` read as sent and ended until `release()`, as a response does once `end()` ran:
 * `headersSent` and `writableEnded` are true, and `setHeader`, `writeHead` and `write` refuse
 * it as Node refuses an ended response (`ERR_HTTP_HEADERS_SENT`, `ERR_STREAM_WRITE_AFTER_END`).
 * Node's own state says so (its header text, `_headerSent` and `finished` flags), so the
 * response keeps its shape: getters or methods defined on it would make every later use of it
 * slower (15% of `sessile()`'s HTTP rate in the benchmark).
 */
function holdAsEnded(res: ServerResponse): Hold {
  let held = true;
  const node = res as unknown as {
    _header: string | null;
    _headerSent: boolean;
    finished: boolean;
  };
  const header = node._header;
  const headerSent = node._headerSent;
  const finished = node.finished;
  node._header ??= HELD_HEADER;
  // Marked as written, or `flushHeaders()` would send the placeholder as the response's head.
  node._headerSent = true;
  node.finished = true;
  const socket = res.socket;
  const current = socket?.destroy as DestroyAfterAnswer | undefined;
  // Under a second sessile()'s hold of this response (another cookie's), the connection's own.
  const destroy = current?.[OWN_DESTROY] ?? current;
  let destroyAfterAnswer: DestroyAfterAnswer | undefined;
  let destroyWith: unknown[] | undefined;
  if (socket !== null && destroy !== undefined) {
    // Express's final handler closes the connection of an error that comes after the answer
    // (`headersSent`): the answer, still waiting for its commit, goes out first, as it would
    // have without the wait.
    destroyAfterAnswer = function destroyAfterAnswer(this: typeof socket, ...args: unknown[]) {
      if (!held) return destroy.apply(this, args);
      destroyWith = args;
      return this;
    } as DestroyAfterAnswer;
    destroyAfterAnswer[OWN_DESTROY] = destroy;
    socket.destroy = destroyAfterAnswer as typeof socket.destroy;
  }
  return {
    release() {
      held = false;
      node._header = header;
      node._headerSent = headerSent;
      node.finished = finished;
    },
    ended() {
      if (socket === null || destroy === undefined) return;
      // Assigned back, not deleted: a delete would turn the connection's object into a slow
      // dictionary for every later request on it. Only our own: a nested hold's is set back by
      // it, to the connection's own, or each request on a kept-alive connection would leave a
      // wrapper holding its response.
      if (socket.destroy === destroyAfterAnswer) socket.destroy = destroy as typeof socket.destroy;
      if (destroyWith === undefined) return;
      const args = destroyWith;
      const close = () => destroy.apply(socket, args as []);
      if (res.writableFinished) setImmediate(close);
      else res.once('finish', close).once('close', close);
    },
  };
}

/**
 * Whether `req` came over HTTPS, for `cookie.secure: 'auto'`: Express's `req.secure` (which
 * honours its `trust proxy` setting), else, under plain `node:http`, whether the socket is TLS.
 */
function isSecure(req: IncomingMessage): boolean {
  const secure = (req as { secure?: unknown }).secure;
  if (typeof secure === 'boolean') return secure;
  return (req.socket as TLSSocket | null)?.encrypted === true;
}
