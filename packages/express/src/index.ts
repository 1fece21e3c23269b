export {
  type ExpressSessionData,
  type ExpressSessionStore,
  encodeExpressSession,
  type ToExpressStoreOptions,
  toExpressStore,
} from './express-store.js';
export {
  type SessileCookieOptions,
  type SessileMiddleware,
  type SessileOptions,
  type SessileRequest,
  sessile,
} from './middleware.js';
