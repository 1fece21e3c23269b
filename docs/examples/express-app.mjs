// An Express 5 app with sessile's locking sessions in SQLite.
//
//   pnpm build && node docs/examples/express-app.mjs           # serve on http://localhost:3000
//   pnpm build && node docs/examples/express-app.mjs --check   # run a scripted visit and exit
//
// In your own app the imports are plain:
//   import express from 'express';
//   import { sessile } from '@sessile/express';
//   import { SqliteStore } from '@sessile/sqlite';
//   import { aesGcmCodec, sweepEvery } from '@sessile/core';
// This file lives outside any package, so it borrows @sessile/express's dependencies.
import { rm } from 'node:fs/promises';
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

const databasePath = SESSIONS_DB ?? join(tmpdir(), `sessile-example-${process.pid}.db`);
const store = await SqliteStore.open({ path: databasePath });
const sessions = sessile({
  store,
  secret,
  cookie: { sameSite: 'lax', secure: NODE_ENV === 'production' },
  idleTimeoutMs: 30 * 60_000,
  absoluteTimeoutMs: 8 * 60 * 60_000,
  codec: aesGcmCodec({ keys: [key] }),
  cleanup: sweepEvery(60_000),
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
<form method="post" action="/logout"><button>Sign out</button></form>`);
});

app.post('/increment', (req, res) => {
  req.session.data.count = (req.session.data.count ?? 0) + 1;
  res.json({ count: req.session.data.count });
});

app.post('/login', async (req, res) => {
  // A new id on every privilege change: a planted session id is worthless after login.
  await req.session.regenerate();
  req.session.data.user = String(req.body.user || 'guest').slice(0, 64);
  res.redirect(303, '/');
});

app.post('/logout', async (req, res) => {
  await req.session.invalidate();
  res.redirect(303, '/');
});

app.use((error, _req, res, next) => {
  if (res.headersSent) return next(error);
  // Another request held this session for longer than lock.waitMs.
  res.status(error.code === 'ERR_LOCK_TIMEOUT' ? 503 : 500).send('Something went wrong');
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

process.once('SIGINT', shutDown);

async function shutDown() {
  server.close();
  await sessions.close();
  await store.close();
  if (SESSIONS_DB === undefined) {
    for (const suffix of ['', '-wal', '-shm']) await rm(databasePath + suffix, { force: true });
  }
}

/** A scripted visit: parallel writes to one session, login, logout. */
async function visit(url) {
  let cookie = '';
  const request = async (path, init = {}) => {
    const response = await fetch(url + path, {
      ...init,
      redirect: 'manual',
      headers: { ...init.headers, cookie },
    });
    const setCookie = response.headers.getSetCookie()[0];
    if (setCookie !== undefined) cookie = setCookie.split(';')[0];
    return response;
  };
  await request('/increment', { method: 'POST' });
  await Promise.all(Array.from({ length: 50 }, () => request('/increment', { method: 'POST' })));
  const { count } = await (await request('/increment', { method: 'POST' })).json();
  console.log(`52 increments on one session, 50 of them in parallel: count = ${count}`);
  const before = cookie;
  await request('/login', {
    method: 'POST',
    body: 'user=alice',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  console.log(`login regenerated the session id: ${before !== cookie}`);
  console.log(
    `page after login: ${(await (await request('/')).text()).includes('alice') ? 'signed in as alice' : 'not signed in'}`,
  );
  await request('/logout', { method: 'POST' });
  console.log(
    `page after logout: ${(await (await request('/')).text()).includes('alice') ? 'still signed in' : 'signed out'}`,
  );
  if (count !== 52) process.exitCode = 1;
}
