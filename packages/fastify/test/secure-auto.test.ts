import {
  cookieAttributes,
  cookiePair,
  httpsGet,
  selfSignedCertificate,
  sessionSetCookie,
} from '@sessile/conformance/http';
import { MemoryStore, manual } from '@sessile/core';
import Fastify, { type FastifyServerOptions } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { fastifySessile } from '../src/index.js';

const SECRET = 'a secret of 32 characters or more for these tests';
const certificate = selfSignedCertificate();

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A Fastify app with `secure: 'auto'`: `/login` stores a user (a new cookie), `/logout` ends the
 * session, `/raw` stores one and answers through the hijacked `reply.raw`. Resolves to its URL.
 */
async function start(options: FastifyServerOptions & { https?: object }): Promise<string> {
  const store = new MemoryStore();
  const app = Fastify(options);
  app.register(fastifySessile, {
    store,
    secret: SECRET,
    cleanup: manual(),
    cookie: { secure: 'auto' },
  });
  app.get('/login', async (request) => {
    request.session.data.user = 'ada';
    return 'in';
  });
  app.get('/logout', async (request) => {
    await request.session.invalidate();
    return 'out';
  });
  app.get('/raw', async (request, reply) => {
    request.session.data.user = 'ada';
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/plain' });
    reply.raw.end('raw');
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  cleanups.push(async () => {
    await app.close();
    await store.close();
  });
  return url;
}

const forwarded = { 'x-forwarded-proto': 'https' };

describe("@sessile/fastify with cookie.secure: 'auto'", () => {
  it('leaves Secure out over plain HTTP, and ignores X-Forwarded-Proto without trustProxy', async () => {
    const url = await start({});
    expect(cookieAttributes(await sessionSetCookie(`${url}/login`))).not.toContain('Secure');
    const line = await sessionSetCookie(`${url}/login`, forwarded);
    expect(cookieAttributes(line)).not.toContain('Secure');
    const clear = await sessionSetCookie(`${url}/logout`, {
      ...forwarded,
      cookie: cookiePair(line),
    });
    expect(cookieAttributes(clear)).toContain('Max-Age=0');
    expect(cookieAttributes(clear)).not.toContain('Secure');
    expect(cookieAttributes(await sessionSetCookie(`${url}/raw`, forwarded))).not.toContain(
      'Secure',
    );
  });

  it("sets Secure for X-Forwarded-Proto: https under trustProxy, on the cookie, logout's clear and a hijacked reply", async () => {
    const url = await start({ trustProxy: true });
    const line = await sessionSetCookie(`${url}/login`, forwarded);
    expect(cookieAttributes(line)).toContain('Secure');
    const clear = await sessionSetCookie(`${url}/logout`, {
      ...forwarded,
      cookie: cookiePair(line),
    });
    expect(cookieAttributes(clear)).toEqual(expect.arrayContaining(['Secure', 'Max-Age=0']));
    expect(cookieAttributes(await sessionSetCookie(`${url}/raw`, forwarded))).toContain('Secure');
    expect(cookieAttributes(await sessionSetCookie(`${url}/login`))).not.toContain('Secure');
  });

  it('sets Secure over a real HTTPS server, on the cookie and on logout', async () => {
    const url = await start({ https: certificate });
    expect(url).toMatch(/^https:/);
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
