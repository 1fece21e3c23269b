export {
  type KoaSessionData,
  type KoaSessionStore,
  type ToKoaSessionStoreOptions,
  toKoaSessionStore,
} from './koa-session-store.js';
export {
  type SessileContext,
  type SessileCookieOptions,
  type SessileKoaMiddleware,
  type SessileKoaOptions,
  sessile,
} from './middleware.js';
