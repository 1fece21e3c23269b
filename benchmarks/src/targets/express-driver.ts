/**
 * Drives any express-session `Store` through the shared target operations: the peers, and
 * sessile's stores behind `toExpressStore`, go through exactly this code, so their ratios compare
 * like with like.
 */
import type { OpenTarget } from '../adapter.js';
import type { SessionBody } from '../body.js';

/** The callback API every express-session store implements. */
export interface ExpressStore {
  get(id: string, callback: (error: unknown, session?: unknown) => void): void;
  set(id: string, session: unknown, callback: (error?: unknown) => void): void;
  touch?(id: string, session: unknown, callback: (error?: unknown) => void): void;
  destroy(id: string, callback: (error?: unknown) => void): void;
  length?(callback: (error: unknown, length?: number) => void): void;
}

/** What one peer needs beyond the common Store API: its constructor, cleanup and counting. */
export interface PeerInstance {
  store: ExpressStore;
  cleanup?: () => Promise<unknown>;
  cleanupNote: string;
  expiredLeft?(expiredIds: readonly string[], liveCount: number): Promise<number>;
  close(): Promise<void>;
}

/** The session object express-session would hand a store: the body plus its cookie. */
export function sessionOf(body: SessionBody, expiresAt: number): Record<string, unknown> {
  // Never exactly 0: several peers treat a falsy maxAge as "use the default of one day".
  const maxAgeMs = expiresAt - Date.now() || -1;
  return {
    cookie: {
      originalMaxAge: maxAgeMs,
      maxAge: maxAgeMs,
      expires: new Date(expiresAt),
      httpOnly: true,
      path: '/',
      secure: false,
    },
    ...body,
  };
}

export function call<T>(
  run: (callback: (error: unknown, value?: T) => void) => void,
): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    run((error, value) => (error ? reject(error) : resolve(value)));
  });
}

export function driveExpressStore(instance: PeerInstance): OpenTarget {
  const { store } = instance;
  const save = (id: string, body: SessionBody, expiresAt: number) =>
    call<void>((done) => store.set(id, sessionOf(body, expiresAt), done));
  const target: OpenTarget = {
    create: save,
    async read(id) {
      try {
        const session = await call<unknown>((done) => store.get(id, done));
        return (session as SessionBody | null | undefined) ?? undefined;
      } catch (error) {
        // express-session treats a store's ENOENT as "no such session" (session-file-store
        // reports unknown ids that way), so the harness does too.
        if ((error as NodeJS.ErrnoException | null)?.code === 'ENOENT') return undefined;
        throw error;
      }
    },
    update: save,
    async touch(id, expiresAt, body) {
      const session = sessionOf(body, expiresAt);
      if (store.touch) await call<void>((done) => store.touch?.(id, session, done));
      else await call<void>((done) => store.set(id, session, done));
    },
    cleanupNote: instance.cleanupNote,
    close: () => instance.close(),
  };
  if (instance.cleanup) {
    const cleanup = instance.cleanup;
    target.cleanup = async () => {
      await cleanup();
      return {};
    };
  }
  target.expiredLeft =
    instance.expiredLeft ??
    (async (ids) => {
      let left = 0;
      for (const id of ids) if ((await call((done) => store.get(id, done))) != null) left++;
      return left;
    });
  return target;
}
