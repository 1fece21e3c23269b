import { createServer as createHttpServer, type RequestListener } from 'node:http';
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
import express, { type Request } from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { type SessileRequest, sessile } from '../src/index.js';

const SECRET = 'a secret of 32 characters or more for these tests';
const certificate = selfSignedCertificate();

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const session = (req: Request) => (req as unknown as SessileRequest).session;

/** A sessile() with `secure: 'auto'`, closed with its store after the test. */
function sessions() {
  const store = new MemoryStore();
  const middleware = sessile({
    store,
    secret: SECRET,
    cleanup: manual(),
    cookie: { secure: 'auto' },
  });
  cleanups.push(async () => {
    await middleware.close();
    await store.close();
  });
  return middleware;
}

/** An app whose `/login` stores a user (a new cookie) and whose `/logout` ends the session. */
function app(trustProxy: boolean) {
  const app = express();
  if (trustProxy) app.set('trust proxy', true);
  app.use(sessions());
  app.get('/login', (req, res) => {
    session(req).data.user = 'ada';
    res.send('in');
  });
  app.get('/logout', async (req, res) => {
    await session(req).invalidate();
    res.send('out');
  });
  return app;
}

async function serve(listener: RequestListener, tls: boolean): Promise<string> {
  const server = tls ? createHttpsServer(certificate, listener) : createHttpServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const { port } = server.address() as AddressInfo;
  return `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
}

describe("cookie.secure: 'auto'", () => {
  it('leaves Secure out over plain HTTP, and ignores X-Forwarded-Proto without trust proxy', async () => {
    const url = await serve(app(false), false);
    expect(cookieAttributes(await sessionSetCookie(`${url}/login`))).not.toContain('Secure');
    const forwarded = { 'x-forwarded-proto': 'https' };
    const line = await sessionSetCookie(`${url}/login`, forwarded);
    expect(cookieAttributes(line)).not.toContain('Secure');
    const clear = await sessionSetCookie(`${url}/logout`, {
      ...forwarded,
      cookie: cookiePair(line),
    });
    expect(cookieAttributes(clear)).toEqual(expect.arrayContaining(['Max-Age=0']));
    expect(cookieAttributes(clear)).not.toContain('Secure');
  });

  it("sets Secure for X-Forwarded-Proto: https under trust proxy, on the cookie and logout's clear", async () => {
    const url = await serve(app(true), false);
    const forwarded = { 'x-forwarded-proto': 'https' };
    const line = await sessionSetCookie(`${url}/login`, forwarded);
    expect(cookieAttributes(line)).toContain('Secure');
    const clear = await sessionSetCookie(`${url}/logout`, {
      ...forwarded,
      cookie: cookiePair(line),
    });
    expect(cookieAttributes(clear)).toEqual(expect.arrayContaining(['Secure', 'Max-Age=0']));
    // The same app, reached over plain HTTP without the header.
    expect(cookieAttributes(await sessionSetCookie(`${url}/login`))).not.toContain('Secure');
  });

  it('sets Secure over a real HTTPS server, on the cookie and on logout', async () => {
    const url = await serve(app(false), true);
    const login = await httpsGet(`${url}/login`, certificate);
    expect(login.status).toBe(200);
    const [line = ''] = login.setCookie;
    expect(cookieAttributes(line)).toContain('Secure');
    const logout = await httpsGet(`${url}/logout`, certificate, { cookie: cookiePair(line) });
    expect(logout.body).toBe('out');
    expect(cookieAttributes(logout.setCookie[0] ?? '')).toEqual(
      expect.arrayContaining(['Secure', 'Max-Age=0']),
    );
  });

  it("reads a plain node:http server's TLS socket through handle()", async () => {
    const middleware = sessions();
    const listener: RequestListener = async (req, res) => {
      const opened = await middleware.handle(req, res);
      opened.data.user = 'ada';
      res.end('in');
    };
    const secure = await httpsGet(`${await serve(listener, true)}/`, certificate);
    expect(cookieAttributes(secure.setCookie[0] ?? '')).toContain('Secure');
    const plain = await sessionSetCookie(`${await serve(listener, false)}/`);
    expect(cookieAttributes(plain)).not.toContain('Secure');
  });
});
