export {
  type HonoSessionsData,
  type HonoSessionsStore,
  type ToHonoSessionsStoreOptions,
  toHonoSessionsStore,
} from './hono-sessions-store.js';
export {
  type SessileCookieOptions,
  type SessileEnv,
  type SessileHonoMiddleware,
  type SessileHonoOptions,
  sessile,
} from './middleware.js';
