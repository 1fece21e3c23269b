import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExpressSessionCookie, jsonCodec, manual } from '@sessile/core';
import { SqliteStore } from '@sessile/sqlite';
import Koa from 'koa';
import { afterAll, expect, it } from 'vitest';
import { type SessileContext, sessile } from '../src/index.js';
import { closeServer, listen } from './helpers.js';

const SECRET = 'a secret of 32 characters or more for these tests';
const root = mkdtempSync(join(tmpdir(), 'sessile-koa-transition-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// express-session's interplay is tested against the real thing in @sessile/express and
// @sessile/fastify; this checks that Koa sets and clears the cookies as they do.
it('adopts a stored express-session session from connect.sid, moving it to its own cookie', async () => {
  const store = await SqliteStore.open({ path: join(root, 'sessions.db') });
  const sessions = sessile({
    store,
    secret: SECRET,
    cleanup: manual(),
    acceptExpressSession: true,
  });
  const app = new Koa();
  app.use(sessions);
  app.use(async (ctx) => {
    const { session } = ctx as SessileContext;
    ctx.body = { id: session.id, data: session.data };
  });
  const server = createServer(app.callback());
  const url = await listen(server);
  try {
    // A session as toExpressStore stores it, under an id shaped like express-session's.
    const id = randomBytes(24).toString('base64url');
    const now = Date.now();
    const data = {
      cookie: { originalMaxAge: 3_600_000, httpOnly: true, path: '/' },
      userId: 'alice',
    };
    const bytes = jsonCodec().encode({ createdAt: now, lastAccessedAt: now, data }, id);
    await store.set(id, { data: bytes, expiresAt: now + 3_600_000 });
    const signed = new ExpressSessionCookie({}, SECRET, 'test').sign(id);

    const response = await fetch(url, {
      headers: { cookie: `connect.sid=${encodeURIComponent(signed)}` },
    });
    expect(await response.json()).toEqual({ id, data: { userId: 'alice' } });
    const cookies = response.headers.getSetCookie().map((header) => header.split(';')[0]);
    expect(cookies).toHaveLength(2);
    expect(decodeURIComponent(cookies[0] ?? '').startsWith(`sid=${id}.`)).toBe(true);
    expect(cookies[1]).toBe('connect.sid=');

    const forged = `connect.sid=${encodeURIComponent(`s:${id}.${'A'.repeat(43)}`)}`;
    const fresh = await fetch(url, { headers: { cookie: forged } });
    expect(((await fresh.json()) as { id: string }).id).not.toBe(id);
  } finally {
    await closeServer(server);
    await sessions.close();
    await store.close();
  }
});
