// An Express 5 app with sessile's locking sessions in SQLite, and a "your devices" page that
// lists the signed-in user's sessions and signs them out.
//
//   pnpm build && node docs/examples/express-app.mjs           # serve on http://localhost:3000
//   pnpm build && node docs/examples/express-app.mjs --check   # run a scripted visit and exit
//
// In your own app the imports are plain:
//   import express from 'express';
//   import { sessile } from '@sessile/express';
//   import { SqliteStore } from '@sessile/sqlite';
//   import { aesGcmCodec, generateAesKey, sweepEvery } from '@sessile/core';
// Any sessile store serves it, as each keeps the owner index the devices page needs: for the
// file store, import { FileStore } from '@sessile/file' and open it where SqliteStore is opened
// (LevelStore and DbmStore take the same path; Redis and PostgreSQL take their server's address).
// This file lives outside any package, so it borrows @sessile/express's dependencies.
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const packageRequire = createRequire(
  new URL('../../packages/express/package.json', import.meta.url),
);
const load = (name) => import(packageRequire.resolve(name));
const { default: express } = await load('express');
const { sessile } = await load('@sessile/express');
const { SqliteStore } = await load('@sessile/sqlite');
const { aesGcmCodec, generateAesKey, sweepEvery } = await load('@sessile/core');

const check = process.argv.includes('--check');
const { SESSION_SECRET, SESSION_KEY, SESSIONS_DB, PORT, NODE_ENV } = process.env;
const secret = SESSION_SECRET ?? 'dev-only secret: set SESSION_SECRET in production';
// Without SESSION_KEY every restart gets a new key, and sessions written with the old one read as corrupt.
const key = SESSION_KEY ?? generateAesKey();

// Without SESSIONS_DB the sessions live in a temporary directory, removed on exit.
const scratch =
  SESSIONS_DB === undefined ? await mkdtemp(join(tmpdir(), 'sessile-example-')) : undefined;
const databasePath = SESSIONS_DB ?? join(scratch, 'sessions.db');
const store = await SqliteStore.open({ path: databasePath });
const sessions = sessile({
  store,
  secret,
  cookie: { sameSite: 'lax', secure: NODE_ENV === 'production' },
  idleTimeoutMs: 30 * 60_000,
  absoluteTimeoutMs: 8 * 60 * 60_000,
  codec: aesGcmCodec({ keys: [key] }),
  cleanup: sweepEvery(60_000),
  // A user signing in on a sixth device is signed out of the device whose session began first.
  maxSessionsPerOwner: 5,
  onLimit: 'evict-oldest',
  // Recorded at login, listed on the devices page.
  loginMeta: (req) => ({
    userAgent: String(req.headers['user-agent'] ?? 'unknown').slice(0, 200),
    ip: req.socket.remoteAddress ?? 'unknown',
  }),
});

const app = express();
app.use(express.urlencoded({ extended: false }));
app.use(sessions);

app.get('/', (req, res) => {
  const { data } = req.session;
  data.visits = (data.visits ?? 0) + 1;
  res.type('html').send(`<!doctype html>
<title>sessile example</title>
<p>${data.user ? `Signed in as <b>${escapeHtml(data.user)}</b>.` : 'Not signed in.'}
<p>You have visited this page ${data.visits} times.
<form method="post" action="/login"><input name="user" placeholder="name"> <button>Sign in</button></form>
<form method="post" action="/logout"><button>Sign out</button></form>
<p><a href="/devices">Your devices</a>`);
});

// Every session of the signed-in user, with a button to sign each one out.
app.get('/devices', async (req, res) => {
  if (req.session.owner === undefined) return res.redirect(303, '/');
  const devices = await sessions.manager.sessionsOf(req.session);
  const rows = devices.map(
    (device) => `<tr>
  <td>${escapeHtml(device.meta.userAgent ?? '')}${device.current ? ' <b>(this device)</b>' : ''}
  <td>${escapeHtml(device.meta.ip ?? '')}
  <td>${new Date(device.createdAt).toISOString()}
  <td>${new Date(device.lastSeenAt).toISOString()}
  <td><form method="post" action="/devices/revoke"><button name="handle" value="${device.handle}">Sign out</button></form>`,
  );
  res.type('html').send(`<!doctype html>
<title>Your devices</title>
<table><tr><th>device<th>IP<th>first seen<th>last seen<th>${rows.join('')}</table>
<form method="post" action="/devices/revoke-others"><button>Sign out all other devices</button></form>
<p><a href="/">Home</a>`);
});

app.post('/devices/revoke', async (req, res) => {
  if (req.session.owner === undefined) return res.redirect(303, '/');
  // The page shows handles, never session ids: find the session again among this user's own.
  const devices = await sessions.manager.sessionsOf(req.session);
  const device = devices.find((candidate) => candidate.handle === req.body.handle);
  if (device === undefined) return res.sendStatus(404);
  if (device.current) await req.session.invalidate();
  else await sessions.manager.revoke(device.id);
  res.redirect(303, device.current ? '/' : '/devices');
});

app.post('/devices/revoke-others', async (req, res) => {
  if (req.session.owner === undefined) return res.redirect(303, '/');
  await sessions.manager.revokeOwner(req.session.owner, { except: req.session.id });
  res.redirect(303, '/devices');
});

app.post('/increment', (req, res) => {
  req.session.data.count = (req.session.data.count ?? 0) + 1;
  res.json({ count: req.session.data.count });
});

app.post('/login', async (req, res) => {
  // A new id on every privilege change: a planted session id is worthless after login.
  await req.session.regenerate();
  req.session.data.user = String(req.body.user || 'guest').slice(0, 64);
  // The user's name stands in for a user id here; your app passes its own.
  await req.session.setOwner(req.session.data.user);
  res.redirect(303, '/');
});

app.post('/logout', async (req, res) => {
  await req.session.invalidate();
  res.redirect(303, '/');
});

app.use((error, _req, res, next) => {
  if (res.headersSent) return next(error);
  // Another request held this session for longer than lock.waitMs, or the store was busy.
  const busy = error.code === 'ERR_LOCK_TIMEOUT' || error.code === 'ERR_STORE_BUSY';
  res.status(busy ? 503 : 500).send(busy ? 'Busy, try again' : 'Something went wrong');
});

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

const server = app.listen(check ? 0 : Number(PORT ?? 3000), async () => {
  const { port } = server.address();
  const url = `http://localhost:${port}`;
  if (!check) {
    console.log(`sessile example on ${url} (Ctrl+C to stop)`);
    return;
  }
  try {
    await visit(url);
  } finally {
    await shutDown();
  }
});

// Ctrl+C, and the SIGTERM a container or service manager stops the app with.
process.once('SIGINT', shutDown);
process.once('SIGTERM', shutDown);

async function shutDown() {
  // Requests still running commit their sessions before the store closes.
  await new Promise((resolve) => server.close(resolve));
  await sessions.close();
  await store.close();
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
}

/** A browser: it keeps the session cookie the app sets. */
function browser(url, userAgent) {
  const jar = {
    cookie: '',
    async request(path, init = {}) {
      const response = await fetch(url + path, {
        ...init,
        redirect: 'manual',
        headers: { ...init.headers, cookie: jar.cookie, 'user-agent': userAgent },
      });
      const setCookie = response.headers.getSetCookie()[0];
      if (setCookie !== undefined) jar.cookie = setCookie.split(';')[0];
      return response;
    },
  };
  return jar;
}

const form = (body) => ({
  method: 'POST',
  body,
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
});

/** A scripted visit: parallel writes to one session, login, logout, signing out another device. */
async function visit(url) {
  const laptop = browser(url, 'example laptop');
  const request = laptop.request;
  await request('/increment', { method: 'POST' });
  await Promise.all(Array.from({ length: 50 }, () => request('/increment', { method: 'POST' })));
  const { count } = await (await request('/increment', { method: 'POST' })).json();
  console.log(`52 increments on one session, 50 of them in parallel: count = ${count}`);
  const before = laptop.cookie;
  await request('/login', form('user=alice'));
  console.log(`login regenerated the session id: ${before !== laptop.cookie}`);
  console.log(
    `page after login: ${(await (await request('/')).text()).includes('alice') ? 'signed in as alice' : 'not signed in'}`,
  );
  await request('/logout', { method: 'POST' });
  console.log(
    `page after logout: ${(await (await request('/')).text()).includes('alice') ? 'still signed in' : 'signed out'}`,
  );
  const phone = browser(url, 'example phone');
  await laptop.request('/login', form('user=bob'));
  await phone.request('/login', form('user=bob'));
  const devices = await (await phone.request('/devices')).text();
  const listed = ['example laptop', 'example phone'].every((agent) => devices.includes(agent));
  console.log(`bob's devices page lists the laptop and the phone: ${listed}`);
  await phone.request('/devices/revoke-others', { method: 'POST' });
  const laptopPage = await (await laptop.request('/')).text();
  const phonePage = await (await phone.request('/')).text();
  const signedOut = !laptopPage.includes('bob') && phonePage.includes('bob');
  console.log(`"sign out all other devices" on the phone signed the laptop out: ${signedOut}`);
  if (count !== 52 || !listed || !signedOut) process.exitCode = 1;
}
