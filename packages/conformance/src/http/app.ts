import type { SessionManager } from '@sessile/core';
import { delay } from '../helpers.js';
import type { HttpConformanceHandler } from './options.js';

/** The session data the scenario app keeps. */
export type ScenarioData = { count?: number; user?: string; blob?: string; cart?: string[] };

/** A gate a handler waits on, so a test can hold a request in flight. */
export interface Gate {
  /** Lets the waiting handler go on. */
  open(): void;
  opened: Promise<void>;
  /** Called by the handler once it is waiting. */
  entered(): void;
  reached: Promise<void>;
}

export function gate(): Gate {
  let open!: () => void;
  let entered!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  const reached = new Promise<void>((resolve) => (entered = resolve));
  return { open, opened, entered, reached };
}

export interface ScenarioGates {
  /** `/late-write` waits on it before writing. */
  late?: Gate;
  /** `/hang` waits on it and does not answer before it opens. */
  hang?: Gate;
  /** `/count-later` waits on it before it answers. */
  read?: Gate;
}

/**
 * The scenario app, served through the adapter under test:
 * `GET /count` -> `{count, user, id}` of the session (`count` 0 and `user` null when unset);
 * `GET /data` -> `{id, data}`, the session's whole data; `POST /cart` -> stores `cart: ['tea']`,
 * answers `{id}`;
 * `POST /increment` -> reads `count`, waits 1 ms, writes `count + 1` and answers `{count}`;
 * `POST /login?user=<name>` -> regenerates, stores `user`, answers `{id}`;
 * `POST /owner-login?user=<name>` -> regenerates, stores `user`, `setOwner(user)`, answers `{id}`;
 * `GET /devices` -> the owner's sessions `[{handle, current, meta}]` (or `{error}` with the
 * code); `POST /sign-out-others` -> revokes the owner's other sessions, answers `{revoked}`;
 * `POST /logout` -> invalidates the session; `POST /late-write` -> waits on `gates.late`, then
 * writes `count` 999 and `user` 'resurrected'; `GET /hang` -> waits on `gates.hang` without
 * answering; `GET /count-later` -> waits on `gates.read`, then answers `{count}`; `POST /big` ->
 * stores an 8,000 character `blob`.
 */
export function scenarioApp(gates: ScenarioGates, owners: SessionManager): HttpConformanceHandler {
  return async (url, session) => {
    const { pathname, searchParams } = new URL(url, 'http://localhost');
    const data = () => session.data as ScenarioData;
    switch (pathname) {
      case '/count':
        return {
          count: data().count ?? 0,
          user: data().user ?? null,
          owner: session.owner ?? null,
          id: session.id,
        };
      case '/data':
        return { id: session.id, data: session.data };
      case '/cart':
        data().cart = ['tea'];
        return { id: session.id };
      case '/increment': {
        const current = data().count ?? 0;
        // Give a parallel request every chance to interleave with this read-modify-write.
        await delay(1);
        data().count = current + 1;
        return { count: current + 1 };
      }
      case '/login':
        await session.regenerate();
        data().user = String(searchParams.get('user'));
        return { id: session.id };
      case '/owner-login': {
        await session.regenerate();
        const user = String(searchParams.get('user'));
        data().user = user;
        await session.setOwner(user);
        return { id: session.id };
      }
      case '/devices':
        return owners.sessionsOf(session).then(
          (sessions) => sessions.map(({ handle, current, meta }) => ({ handle, current, meta })),
          (error: { code?: string }) => ({ error: error.code ?? String(error) }),
        );
      case '/sign-out-others':
        return {
          revoked: await owners.revokeOwner(String(session.owner), { except: session.id }),
        };
      case '/logout':
        await session.invalidate();
        return { ok: true };
      case '/late-write':
        gates.late?.entered();
        await gates.late?.opened;
        data().count = 999;
        data().user = 'resurrected';
        return { ok: true };
      case '/count-later':
        gates.read?.entered();
        await gates.read?.opened;
        return { count: data().count ?? 0 };
      case '/hang':
        gates.hang?.entered();
        await gates.hang?.opened;
        return { late: true };
      case '/big':
        data().blob = 'x'.repeat(8000);
        return { ok: true };
      default:
        throw new Error(`The HTTP conformance app serves no ${pathname}`);
    }
  };
}
