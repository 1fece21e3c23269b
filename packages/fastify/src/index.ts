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
} from '@sessile/core/store';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The request's session, locked and loaded by `@sessile/fastify`. Not assignable: log out
     * with `await request.session.invalidate()`, not `request.session = null`.
     */
    readonly session: Session<SessionData>;
  }
}

export type SessileCookieOptions = SessionCookieAttributes;

interface SessileFastifyCommonOptions extends SessionAdapterOptions {
  /**
   * Called when a commit fails (a lost lock, a store error); the reply becomes a 500 when the
   * request changed its session, and is sent as it is when it only read it. Default: the
   * manager's `onError`.
   */
  onCommitError?: (error: unknown, request: FastifyRequest) => void;
  /**
   * What a login records about the device, read from the request: a user agent, an IP, a label.
   * `session.setOwner(owner)` stores it, and `manager.sessionsOf` lists it. Called only at login.
   */
  loginMeta?: (request: FastifyRequest) => SessionData | undefined;
}

/** Either a `SessionManager` you built, or the options to build one. */
export type SessileFastifyOptions = SessileFastifyCommonOptions &
  ({ manager: SessionManager } | SessionManagerOptions);

interface RequestState {
  requestCookie: VerifiedCookie | undefined;
  /** The request came over HTTPS (`request.protocol`, which honours `trustProxy`), for `secure: 'auto'`. */
  secure: boolean;
  /** Settles once the request's first `onSend` has committed and set the cookie. */
  sending?: Promise<void>;
}

const requestStates = new WeakMap<FastifyRequest, RequestState>();

/** Where a request keeps its session, behind the `session` getter. */
const SESSION = Symbol('sessile session');
type HoldsSession = FastifyRequest & { [SESSION]: Session<SessionData> | null };

const REPLACED =
  "@sessile/fastify: request.session is the request's Session and cannot be replaced; to log out, await request.session.invalidate()";

const SESSION_TAKEN =
  '@sessile/fastify: request.session is already declared by another plugin (@fastify/session?): register one session plugin. Remove the other, or keep @fastify/session and give it toExpressStore(store) from @sessile/express as its store instead';

const REGISTERED_TWICE =
  "@sessile/fastify is registered twice where one request would reach both (in one context, or in a context and one inside it): request.session can only be one plugin's. Register it once: at the root for every route, or inside the scope of the routes that use sessions";

// Fastify's own register options, which it passes on to the plugin with the rest.
const REGISTER_OPTIONS = ['prefix', 'logLevel', 'logSerializers'];

const plugin: FastifyPluginAsync<SessileFastifyOptions> = async (fastify, options) => {
  // Called by hand (app.register(fastifySessile({ store, secret }))), it gets the options first.
  if (typeof (fastify as Partial<typeof fastify> | undefined)?.addHook !== 'function') {
    throw new TypeError(
      '@sessile/fastify is a Fastify plugin: register it with its options, app.register(fastifySessile, { store, secret }), without calling it',
    );
  }
  // Fastify's own refusal names neither plugin nor what to do; checked before a manager exists.
  // `sessile` on the instance (its own or a parent's) is this plugin's, registered already.
  if (fastify.hasDecorator('sessile')) throw new TypeError(REGISTERED_TWICE);
  if (fastify.hasRequestDecorator('session')) throw new TypeError(SESSION_TAKEN);
  const adapter = openSessionAdapter(options, '@sessile/fastify', REGISTER_OPTIONS);
  const { manager, cookie, ownsManager, finish } = adapter;
  const { reportCommitError } = adapter;

  fastify.decorate('sessile', { manager, cookie });
  fastify.decorateRequest(SESSION, null);
  // `request.session = null` logs out with cookie-session and koa-session; here it would leave
  // the session stored and the user signed in, so it throws instead.
  fastify.decorateRequest('session', {
    getter(this: FastifyRequest) {
      return (this as HoldsSession)[SESSION] as Session<SessionData>;
    },
    setter() {
      throw new TypeError(REPLACED);
    },
  });

  fastify.addHook('onRequest', async (request, reply) => {
    const requestCookie = cookie.verify(request.headers.cookie);
    let session: Session<SessionData>;
    try {
      session = await manager.openForConnection(
        requestCookie?.values ?? requestCookie?.value,
        reply.raw,
        adapter.openOptions(request),
      );
    } catch (error) {
      // The client hung up while the request waited for its session's lock: nothing is held
      // and nobody waits for an answer, which Fastify's error handler would log as a 500.
      // Hijacked, the reply runs no later hook nor the handler, and writes nothing.
      if (adapter.clientGone(error, reply.raw)) {
        reply.hijack();
        return;
      }
      throw error;
    }
    (request as HoldsSession)[SESSION] = session;
    const secure = request.protocol === 'https';
    requestStates.set(request, { requestCookie, secure });
    adapter.track(
      session,
      reply.raw,
      () => reply.statusCode,
      (error) => reportCommitError(error, request),
    );
    adapter.cookieOnEarlyHeaders(session, reply.raw, requestCookie, secure);
  });

  fastify.addHook('onSend', async (request, reply, payload) => {
    const session = request.session;
    const state = requestStates.get(request);
    if (session === null || session === undefined || state === undefined) return payload;
    // Once per request: a later onSend hook that fails makes Fastify send its error through
    // onSend again, which would add the cookie twice or report one failed commit twice. A
    // second reply.send() while the first commits waits for it, or it would go out first,
    // without the cookie of a session the first one saves.
    if (state.sending !== undefined) {
      await state.sending;
      return payload;
    }
    let sent = () => {};
    state.sending = new Promise((resolve) => {
      sent = resolve;
    });
    try {
      return await commitInto(request, reply, session, state, payload);
    } finally {
      sent();
    }
  });

  const commitInto = async (
    request: FastifyRequest,
    reply: FastifyReply,
    session: Session<SessionData>,
    state: RequestState,
    payload: unknown,
  ) => {
    let outcome: CommitOutcome;
    try {
      outcome = await finish(session, reply.statusCode);
    } catch (error) {
      reportCommitError(error, request);
      // A session the request only read loses nothing: its reply stands, without a cookie.
      if (commitLostNothing(session, error)) return payload;
      // A stream that is never sent would keep what it reads (a file descriptor) open.
      if (isStream(payload)) payload.destroy();
      // The handler's answer claims a save that did not happen: don't send it, nor any of its
      // headers (a redirect, a cookie of its own, a cache lifetime).
      for (const name of Object.keys(reply.getHeaders())) reply.removeHeader(name);
      reply.code(500);
      reply.type('application/json; charset=utf-8');
      return JSON.stringify({
        statusCode: 500,
        error: 'Internal Server Error',
        message: 'The session could not be saved',
      });
    }
    const headers = cookie.responseHeaders(
      session,
      state.requestCookie,
      outcome,
      manager.touchAfterMs,
      state.secure,
    );
    for (const header of headers) reply.header('set-cookie', header);
    return payload;
  };

  if (ownsManager) fastify.addHook('onClose', async () => manager.close());
};

function isStream(payload: unknown): payload is { destroy(): void } {
  return (
    typeof payload === 'object' &&
    payload !== null &&
    typeof (payload as { pipe?: unknown }).pipe === 'function' &&
    typeof (payload as { destroy?: unknown }).destroy === 'function'
  );
}

/**
 * Sessions for Fastify with sessile's semantics: each session is locked from `onRequest` to
 * `onSend`, committed (saved if modified, else lazily touched) before the reply goes out, and
 * always released, also when the connection closes. With `commitOnError: false`, a reply whose
 * status is 500 or above (a thrown handler's included) discards the session's changes instead. The id travels in an HMAC-signed cookie,
 * and only ids the server issued are adopted. `request.session` is a core `Session`.
 */
export const fastifySessile = fp(plugin, { fastify: '5.x', name: '@sessile/fastify' });
export default fastifySessile;

declare module 'fastify' {
  interface FastifyInstance {
    /** The manager and cookie `@sessile/fastify` uses. */
    sessile: { manager: SessionManager; cookie: SessionCookie };
  }
}
