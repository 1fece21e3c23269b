import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import {
  cookieAttributes,
  cookiePair,
  httpsGet,
  selfSignedCertificate,
  sessionSetCookie,
} from '@sessile/conformance/http';
import { MemoryStore, manual } from '@sessile/core';
import Koa from 'koa';
import { afterEach, describe, expect, it } from 'vitest';
import { type SessileContext, sessile } from '../src/index.js';

const SECRET = 'a secret of 32 characters or more for these tests';
const certificate = selfSignedCertificate();

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A Koa app with `secure: 'auto'`, served until the test ends: `/login` stores a user (a new
 * cookie), `/logout` ends the session, `/raw` stores one and writes `ctx.res` itself
 * (`ctx.respond = false`), `/fail` stores one and throws. Resolves to its URL.
 */
async function start({ proxy = false, tls = false } = {}): Promise<string> {
  const store = new MemoryStore();
  const sessions = sessile({
    store,
    secret: SECRET,
    cleanup: manual(),
    cookie: { secure: 'auto' },
  });
  const app = new Koa();
  app.silent = true;
  app.proxy = proxy;
  app.use(sessions);
  app.use(async (context) => {
    const ctx = context as SessileContext;
    if (ctx.path === '/logout') {
      await ctx.session.invalidate();
      ctx.body = 'out';
      return;
    }
    ctx.session.data.user = 'ada';
    if (ctx.path === '/fail') throw new Error('handler failed');
    if (ctx.path === '/raw') {
      ctx.respond = false;
      ctx.res.writeHead(200, { 'content-type': 'text/plain' });
      ctx.res.end('raw');
      return;
    }
    ctx.body = 'in';
  });
  const server = tls
    ? createHttpsServer(certificate, app.callback())
    : createHttpServer(app.callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await sessions.close();
    await store.close();
  });
  const { port } = server.address() as AddressInfo;
  return `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
}

const forwarded = { 'x-forwarded-proto': 'https' };

describe("@sessile/koa with cookie.secure: 'auto'", () => {
  it('leaves Secure out over plain HTTP, and ignores X-Forwarded-Proto without app.proxy', async () => {
    const url = await start();
    expect(cookieAttributes(await sessionSetCookie(`${url}/login`))).not.toContain('Secure');
    const line = await sessionSetCookie(`${url}/login`, forwarded);
    expect(cookieAttributes(line)).not.toContain('Secure');
    const clear = await sessionSetCookie(`${url}/logout`, {
      ...forwarded,
      cookie: cookiePair(line),
    });
    expect(cookieAttributes(clear)).toContain('Max-Age=0');
    expect(cookieAttributes(clear)).not.toContain('Secure');
    for (const path of ['/raw', '/fail']) {
      expect(
        cookieAttributes(
          await sessionSetCookie(`${url}${path}`, forwarded, path === '/fail' ? 500 : 200),
        ),
      ).not.toContain('Secure');
    }
  });

  it("sets Secure for X-Forwarded-Proto: https under app.proxy, on the cookie, logout's clear, ctx.respond = false and an error", async () => {
    const url = await start({ proxy: true });
    const line = await sessionSetCookie(`${url}/login`, forwarded);
    expect(cookieAttributes(line)).toContain('Secure');
    const clear = await sessionSetCookie(`${url}/logout`, {
      ...forwarded,
      cookie: cookiePair(line),
    });
    expect(cookieAttributes(clear)).toEqual(expect.arrayContaining(['Secure', 'Max-Age=0']));
    for (const path of ['/raw', '/fail']) {
      expect(
        cookieAttributes(
          await sessionSetCookie(`${url}${path}`, forwarded, path === '/fail' ? 500 : 200),
        ),
      ).toContain('Secure');
    }
    expect(cookieAttributes(await sessionSetCookie(`${url}/login`))).not.toContain('Secure');
  });

  it('sets Secure over a real HTTPS server, on the cookie and on logout', async () => {
    const url = await start({ tls: true });
    const login = await httpsGet(`${url}/login`, certificate);
    const [line = ''] = login.setCookie;
    expect(cookieAttributes(line)).toContain('Secure');
    const logout = await httpsGet(`${url}/logout`, certificate, { cookie: cookiePair(line) });
    expect(logout.body).toBe('out');
    expect(cookieAttributes(logout.setCookie[0] ?? '')).toEqual(
      expect.arrayContaining(['Secure', 'Max-Age=0']),
    );
  });
});
