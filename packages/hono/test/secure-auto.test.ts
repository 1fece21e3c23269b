import type { Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { serve } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import {
  cookieAttributes,
  cookiePair,
  httpsGet,
  selfSignedCertificate,
  sessionSetCookie,
} from '@sessile/conformance/http';
import { MemoryStore, manual } from '@sessile/core';
import { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import { type SessileEnv, sessile } from '../src/index.js';

const SECRET = 'a secret of 32 characters or more for these tests';
const certificate = selfSignedCertificate();

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A Hono app with `secure: 'auto'`, served by @hono/node-server until the test ends: `/login`
 * stores a user (a new cookie), `/logout` ends the session, `/raw` stores one and writes the
 * Node response itself. Resolves to its URL.
 */
async function startApp({ tls = false } = {}): Promise<string> {
  const store = new MemoryStore();
  const sessions = sessile({
    store,
    secret: SECRET,
    cleanup: manual(),
    cookie: { secure: 'auto' },
  });
  const app = new Hono<SessileEnv>();
  app.use(sessions);
  app.get('/login', (c) => {
    c.get('session').data.user = 'ada';
    return c.text('in');
  });
  app.get('/logout', async (c) => {
    await c.get('session').invalidate();
    return c.text('out');
  });
  app.get('/raw', (c) => {
    c.get('session').data.user = 'ada';
    c.env.outgoing.writeHead(200, { 'content-type': 'text/plain' });
    c.env.outgoing.end('raw');
    return RESPONSE_ALREADY_SENT;
  });
  let server: Server | undefined;
  const port = await new Promise<number>((resolve) => {
    const options = { fetch: app.fetch, port: 0, hostname: '127.0.0.1' };
    const tlsOptions = { createServer: createHttpsServer, serverOptions: certificate };
    server = serve(tls ? { ...options, ...tlsOptions } : options, (info) =>
      resolve(info.port),
    ) as Server;
  });
  cleanups.push(async () => {
    server?.closeAllConnections();
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    await sessions.close();
    await store.close();
  });
  return `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
}

describe("@sessile/hono with cookie.secure: 'auto'", () => {
  it('leaves Secure out over plain HTTP, X-Forwarded-Proto included, which @hono/node-server does not read', async () => {
    const url = await startApp();
    expect(cookieAttributes(await sessionSetCookie(`${url}/login`))).not.toContain('Secure');
    const forwarded = { 'x-forwarded-proto': 'https' };
    const line = await sessionSetCookie(`${url}/login`, forwarded);
    expect(cookieAttributes(line)).not.toContain('Secure');
    const clear = await sessionSetCookie(`${url}/logout`, {
      ...forwarded,
      cookie: cookiePair(line),
    });
    expect(cookieAttributes(clear)).toContain('Max-Age=0');
    expect(cookieAttributes(clear)).not.toContain('Secure');
    expect(cookieAttributes(await sessionSetCookie(`${url}/raw`))).not.toContain('Secure');
  });

  it('sets Secure over a real HTTPS server, on the cookie, on logout and on a response written directly', async () => {
    const url = await startApp({ tls: true });
    const login = await httpsGet(`${url}/login`, certificate);
    expect(login.status).toBe(200);
    const [line = ''] = login.setCookie;
    expect(cookieAttributes(line)).toContain('Secure');
    const logout = await httpsGet(`${url}/logout`, certificate, { cookie: cookiePair(line) });
    expect(logout.body).toBe('out');
    expect(cookieAttributes(logout.setCookie[0] ?? '')).toEqual(
      expect.arrayContaining(['Secure', 'Max-Age=0']),
    );
    const raw = await httpsGet(`${url}/raw`, certificate);
    expect(raw.body).toBe('raw');
    expect(cookieAttributes(raw.setCookie[0] ?? '')).toContain('Secure');
  });
});
