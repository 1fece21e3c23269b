import { manual, SessionManager, type SessionStore } from '@sessile/core';
import { afterEach } from 'vitest';
import { type ScenarioGates, scenarioApp } from './app.js';
import type {
  HttpAdapterOptions,
  HttpConformanceOptions,
  HttpConformanceServer,
} from './options.js';

/** Everything the tests choose besides the store. */
export type AppOptions = Omit<HttpAdapterOptions, 'store'>;

export interface StartedApp extends HttpConformanceServer {
  /** What the manager reported through `onError`. */
  errors: unknown[];
}

export interface Harness {
  /** Starts the adapter over `store` with the tests' defaults, stopped after the test. */
  start(
    store: SessionStore,
    options?: Partial<AppOptions>,
    gates?: ScenarioGates,
  ): Promise<StartedApp>;
  /** Runs `cleanup` after the test, before what was registered earlier. */
  defer(cleanup: () => Promise<void>): void;
}

/** Registers an `afterEach` that stops what each test started; call it inside a `describe`. */
export function harness(options: HttpConformanceOptions): Harness {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  }, 60_000);

  return {
    defer(cleanup) {
      cleanups.push(cleanup);
    },
    async start(store, overrides = {}, gates = {}) {
      const errors: unknown[] = [];
      // Lists and revokes an owner's sessions as an app's own code would, beside the adapter.
      const owners = new SessionManager({ store, cleanup: manual(), codec: overrides.codec });
      const server = await options.start(
        {
          secret: 'the scenario apps sign cookies with this secret',
          cleanup: manual(),
          lock: { waitMs: 60_000 },
          onError: (error) => errors.push(error),
          loginMeta: (request) => ({ label: 'via loginMeta', request: typeof request }),
          ...overrides,
          store,
        },
        scenarioApp(gates, owners),
      );
      cleanups.push(async () => {
        gates.hang?.open();
        await server.close();
        await owners.close();
      });
      return {
        url: server.url.replace(/\/+$/, ''),
        cookie: server.cookie,
        close: () => server.close(),
        errors,
      };
    },
  };
}
