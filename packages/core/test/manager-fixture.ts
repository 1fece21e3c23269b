import { afterEach } from 'vitest';
import {
  MemoryStore,
  manual,
  type SessionData,
  SessionManager,
  type SessionManagerOptions,
} from '../src/index.js';

/**
 * Registers an `afterEach` that closes what `setup` opened, and returns `setup`: a manager with
 * manual cleanup over `store` (a fresh MemoryStore by default) whose `onError` collects errors.
 */
export function managerFixture<Data extends SessionData>() {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });
  return function setup(
    options: Partial<SessionManagerOptions> = {},
    store: MemoryStore = new MemoryStore(),
  ) {
    const errors: unknown[] = [];
    const manager = new SessionManager<Data>({
      store,
      cleanup: manual(),
      onError: (error) => errors.push(error),
      ...options,
    });
    cleanups.push(async () => {
      await manager.close();
      await store.close();
    });
    return { store, manager, errors };
  };
}
