import type {
  Session,
  SessionCookie,
  SessionData,
  SessionManagerOptions,
  SessionStore,
} from '@sessile/core';
import type { SessionAdapterOptions } from '@sessile/core/store';

/**
 * The options the suite starts your adapter with, written as your users would write them: the
 * manager's options (`store`, timeouts, `lock`, `codec`, `cleanup`, `onError`...) beside
 * `secret` and `cookie`. Pass them to your adapter as they are.
 */
export type HttpAdapterOptions = SessionManagerOptions &
  SessionAdapterOptions & {
    /** The adapter's `loginMeta`: the suite's reads nothing framework-specific from the request. */
    loginMeta?: (request: unknown) => SessionData | undefined;
  };

/**
 * The suite's application. Call it from one catch-all route, for every method and path, with
 * the request's URL (a path with its query, or an absolute URL) and the session your adapter
 * opened for the request. Answer with what it resolves to as a JSON body, status 200. It may
 * take as long as the test wants the request held, and rejects for a path it does not serve.
 */
export type HttpConformanceHandler = (url: string, session: Session) => Promise<unknown>;

/** What `start` resolves to: a listening server. */
export interface HttpConformanceServer {
  /** Base URL of the server, such as `http://127.0.0.1:41234`. */
  url: string;
  /** The adapter's cookie signer, so the suite can forge validly signed cookies. */
  cookie: Pick<SessionCookie, 'sign' | 'unsign'>;
  /**
   * Stops the server, ending its open connections (kept-alive ones included), and the adapter
   * with its manager. The store stays open: the suite closes it.
   */
  close(): Promise<void>;
}

/** A store the scenarios run over. */
export interface HttpStoreFixture {
  /** Shown in the test names. */
  name: string;
  /** A fresh, empty store. Called once per test; the suite closes it. */
  open(): Promise<SessionStore>;
}

/**
 * Signs `user` in with express-session over `store` (through `toExpressStore`), its cookie
 * signed with the first of `secrets`; resolves to the session's id and the `connect.sid=<value>`
 * pair a browser would send.
 */
export type ExpressSessionSignIn = (
  store: SessionStore,
  user: string,
  secrets: string[],
) => Promise<{ id: string; cookie: string }>;

/** How the suite reaches your framework adapter. */
export interface HttpConformanceOptions {
  /** Shown in every test name. */
  name: string;
  /**
   * Starts a server on which your adapter opens the session of every request with `options`,
   * and `handler` answers. Called several times per test, sometimes with apps on one store
   * running side by side.
   */
  start(
    options: HttpAdapterOptions,
    handler: HttpConformanceHandler,
  ): Promise<HttpConformanceServer>;
  /** The exact body your adapter sends with the 500 that replaces an answer whose commit failed. */
  commitFailureBody: string;
  /** The stores the scenarios run over. Default: core's `MemoryStore` alone. */
  stores?: readonly HttpStoreFixture[];
  /**
   * How the `acceptExpressSession` scenarios sign users in before they move to your adapter.
   * Default: the session is stored as `toExpressStore` stores it, and its cookie signed as
   * express-session signs it; pass a sign-in on a real express-session app to test against it.
   */
  signInWithExpressSession?: ExpressSessionSignIn;
}
