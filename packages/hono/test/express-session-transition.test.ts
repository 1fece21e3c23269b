import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExpressSessionCookie, jsonCodec, manual } from '@sessile/core';
import { SqliteStore } from '@sessile/sqlite';
import { Hono } from 'hono';
import { afterAll, expect, it } from 'vitest';
import { type SessileEnv, sessile } from '../src/index.js';
import { start } from './helpers.js';

const SECRET = 'a secret of 32 characters or more for these tests';
const root = mkdtempSync(join(tmpdir(), 'sessile-hono-transition-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// express-session's interplay is tested against the real thing in @sessile/express and
// @sessile/fastify; this checks that Hono sets and clears the cookies as they do.
it('adopts a stored express-session session from connect.sid, moving it to its own cookie', async () => {
  const store = await SqliteStore.open({ path: join(root, 'sessions.db') });
  const sessions = sessile({
    store,
    secret: SECRET,
    cleanup: manual(),
    acceptExpressSession: true,
  });
  const app = new Hono<SessileEnv>();
  app.use(sessions);
  app.get('/', (c) => c.json({ id: c.get('session').id, data: c.get('session').data }));
  const server = await start(app.fetch);
  const url = server.url;
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
    await server.close();
    await sessions.close();
    await store.close();
  }
});
