import { CookieJar } from '@sessile/conformance/http';
import { manual, type SessionStore } from '@sessile/core';
import express, { type Request } from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { type SessileRequest, sessile } from '../src/index.js';
import { serveApp, testStores } from './helpers.js';

type Data = { count?: number };

/** How long the session has left when the slow request opens it, and how long that request takes. */
const LEFT_MS = 1000;
const REQUEST_MS = 1600;

const stores = testStores();
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const session = (req: Request) => (req as unknown as SessileRequest<Data>).session;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * An app counting visits over `store`: `/count` counts at once, `/slow` after `REQUEST_MS`
 * (first calling `during`, if set), and both answer `{ id, count }`.
 */
async function start(store: SessionStore, absoluteTimeoutMs?: number) {
  const sessions = sessile<Data>({
    store,
    secret: 'a secret of 32 characters or more for these tests',
    cleanup: manual(),
    idleTimeoutMs: 60_000,
    ...(absoluteTimeoutMs === undefined ? {} : { absoluteTimeoutMs }),
  });
  const app = express();
  app.use(sessions);
  const hooks: { during?: (id: string) => Promise<void> } = {};
  const count = (req: Request) => {
    const { data, id } = session(req);
    data.count = (data.count ?? 0) + 1;
    return { id, count: data.count };
  };
  app.get('/count', (req, res) => {
    res.json(count(req));
  });
  app.get('/slow', async (req, res) => {
    await hooks.during?.(session(req).id);
    await sleep(REQUEST_MS);
    res.json(count(req));
  });
  const url = await serveApp(app, cleanups, sessions, store);
  return { url, manager: sessions.manager, hooks };
}

type Counted = { id: string; count: number };

for (const { name, open } of stores) {
  describe(`a request slower than its session has left, over ${name}`, () => {
    it('keeps its changes, and the user stays signed in', async () => {
      const store = await open();
      const { url } = await start(store);
      const jar = new CookieJar();
      const first = await jar.json<Counted>(`${url}/count`);
      // All but LEFT_MS of the idle time has passed.
      expect(await store.touch(first.id, Date.now() + LEFT_MS)).toBe(true);
      expect(await jar.json<Counted>(`${url}/slow`)).toEqual({ id: first.id, count: 2 });
      expect(await jar.json<Counted>(`${url}/count`)).toEqual({ id: first.id, count: 3 });
    });

    it('stays signed out when the session is revoked during it', async () => {
      const store = await open();
      const { url, manager, hooks } = await start(store);
      const jar = new CookieJar();
      const first = await jar.json<Counted>(`${url}/count`);
      expect(await store.touch(first.id, Date.now() + LEFT_MS)).toBe(true);
      hooks.during = async (id) => {
        expect(await manager.revoke(id)).toBe(true);
      };
      await jar.json<Counted>(`${url}/slow`);
      hooks.during = undefined;
      expect(await store.get(first.id)).toBeUndefined();
      const next = await jar.json<Counted>(`${url}/count`);
      expect(next.id).not.toBe(first.id);
      expect(next.count).toBe(1);
    });

    it('never lives past its absolute timeout', async () => {
      const store = await open();
      const absoluteTimeoutMs = LEFT_MS + 500;
      const { url, hooks } = await start(store, absoluteTimeoutMs);
      const jar = new CookieJar();
      const first = await jar.json<Counted>(`${url}/count`);
      // Stored at createdAt + absoluteTimeoutMs, the idle limit being further off.
      const absoluteEnd = (await store.get(first.id))?.expiresAt;
      let openedUntil: number | undefined;
      hooks.during = async (id) => {
        openedUntil = (await store.get(id))?.expiresAt;
      };
      // Opened with less than renewWithinMs left, yet not renewed past the absolute timeout.
      await jar.json<Counted>(`${url}/slow`);
      hooks.during = undefined;
      expect(openedUntil).toBe(absoluteEnd);
      expect(await store.get(first.id)).toBeUndefined();
      const next = await jar.json<Counted>(`${url}/count`);
      expect(next.id).not.toBe(first.id);
      expect(next.count).toBe(1);
    });
  });
}
