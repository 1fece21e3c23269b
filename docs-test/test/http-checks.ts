/** One request a served code block must answer, in order, with the session cookie of the ones before. */
export interface Step {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly json?: unknown;
  /** Absent: any status but a server error. */
  readonly status?: number;
  /** The expected body: text compared as is, anything else compared with the parsed JSON. */
  readonly body?: unknown;
}

/** The requests for the served block of `page` whose code contains `contains`. */
export interface HttpCheck {
  readonly page: string;
  readonly contains: string;
  readonly steps: readonly Step[];
}

/** The one user fixtures/run-block.mjs knows. */
const LOGIN = { name: 'ada', password: 'correct horse battery staple' };
/** LOGIN as the Koa and Hono guides read it, from the query string. */
const LOGIN_QUERY = `name=ada&password=${encodeURIComponent(LOGIN.password)}`;

/** A guide's app: visits counted, login regenerates, logout ends the session. */
const SIGN_IN_AND_OUT: readonly Step[] = [
  { method: 'GET', path: '/', status: 200, body: { visits: 1, signedIn: false } },
  { method: 'POST', path: '/login?name=ada&password=wrong', status: 401 },
  { method: 'POST', path: `/login?${LOGIN_QUERY}`, status: 200, body: { ok: true } },
  { method: 'GET', path: '/', status: 200, body: { visits: 2, signedIn: true } },
  { method: 'POST', path: '/logout', status: 200, body: { ok: true } },
  { method: 'GET', path: '/', status: 200, body: { visits: 1, signedIn: false } },
];

/** A counter kept in the session: `key` is 1, then 2. */
const counts = (key: string): readonly Step[] => [
  { method: 'GET', path: '/', status: 200, body: { [key]: 1 } },
  { method: 'GET', path: '/', status: 200, body: { [key]: 2 } },
];

/** A served block without a check here only has to answer `GET /` without a server error. */
export const DEFAULT_STEPS: readonly Step[] = [{ method: 'GET', path: '/' }];

export const HTTP_CHECKS: readonly HttpCheck[] = [
  {
    page: 'README.md',
    contains: "app.get('/'",
    steps: [
      { method: 'GET', path: '/', status: 200, body: 'visits: 1' },
      { method: 'GET', path: '/', status: 200, body: 'visits: 2' },
    ],
  },
  {
    page: 'packages/express/README.md',
    contains: "app.post('/cart'",
    steps: [
      { method: 'POST', path: '/cart', json: { item: 'book' }, status: 200, body: ['book'] },
      { method: 'POST', path: '/cart', json: { item: 'pen' }, status: 200, body: ['book', 'pen'] },
      { method: 'POST', path: '/login', json: { ...LOGIN, password: 'wrong' }, status: 401 },
      { method: 'POST', path: '/login', json: LOGIN, status: 303 },
      {
        method: 'POST',
        path: '/cart',
        json: { item: 'cup' },
        status: 200,
        body: ['book', 'pen', 'cup'],
      },
      { method: 'POST', path: '/logout', status: 303 },
      { method: 'POST', path: '/cart', json: { item: 'hat' }, status: 200, body: ['hat'] },
    ],
  },
  {
    page: 'packages/express/README.md',
    contains: 'createServer(',
    steps: [
      { method: 'GET', path: '/', status: 200, body: 'views: 1' },
      { method: 'GET', path: '/', status: 200, body: 'views: 2' },
    ],
  },
  {
    page: 'packages/fastify/README.md',
    contains: "app.post('/visit'",
    steps: [
      { method: 'POST', path: '/visit', status: 200, body: { visits: 1 } },
      { method: 'POST', path: '/visit', status: 200, body: { visits: 2 } },
      { method: 'POST', path: '/login', json: LOGIN, status: 200, body: { ok: true } },
      { method: 'POST', path: '/visit', status: 200, body: { visits: 3 } },
      { method: 'POST', path: '/logout', status: 200, body: { ok: true } },
      { method: 'POST', path: '/visit', status: 200, body: { visits: 1 } },
    ],
  },
  {
    page: 'docs/sessions-by-user.md',
    contains: "app.get('/devices'",
    steps: [
      { method: 'GET', path: '/devices', status: 401 },
      { method: 'POST', path: '/login', json: LOGIN, status: 303 },
      { method: 'GET', path: '/devices', status: 200 },
      { method: 'POST', path: '/devices/revoke', json: { handle: 'not-a-handle' }, status: 404 },
      { method: 'POST', path: '/devices/revoke-others', status: 303 },
      { method: 'GET', path: '/devices', status: 200 },
      { method: 'POST', path: '/logout', status: 303 },
      { method: 'GET', path: '/devices', status: 401 },
    ],
  },
  {
    page: 'docs/fastify.md',
    contains: 'import { fastifySessile }',
    steps: [
      { method: 'GET', path: '/', status: 200, body: { visits: 1, signedIn: false } },
      { method: 'POST', path: '/login', json: { ...LOGIN, password: 'wrong' }, status: 401 },
      { method: 'POST', path: '/login', json: LOGIN, status: 200, body: { ok: true } },
      { method: 'GET', path: '/', status: 200, body: { visits: 2, signedIn: true } },
      { method: 'POST', path: '/logout', status: 200, body: { ok: true } },
      { method: 'GET', path: '/', status: 200, body: { visits: 1, signedIn: false } },
    ],
  },
  {
    page: 'docs/migrating-from-express-session.md',
    contains: 'signed in as ${',
    steps: [{ method: 'GET', path: '/', status: 200, body: 'signed in as nobody' }],
  },
  { page: 'docs/koa.md', contains: "ctx.path === '/login'", steps: SIGN_IN_AND_OUT },
  { page: 'docs/koa.md', contains: 'toKoaSessionStore(store)', steps: counts('views') },
  { page: 'docs/hono.md', contains: "c.req.query('name')", steps: SIGN_IN_AND_OUT },
  { page: 'docs/hono.md', contains: 'toHonoSessionsStore(store)', steps: counts('views') },
  {
    page: 'packages/koa/README.md',
    contains: 'SessileContext<{ visits?: number }>',
    steps: counts('visits'),
  },
  {
    page: 'packages/hono/README.md',
    contains: 'c.json({ visits: data.visits })',
    steps: counts('visits'),
  },
];
