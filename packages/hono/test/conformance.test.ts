import { runHttpConformance } from '@sessile/conformance/http';
import { Hono } from 'hono';
import { type SessileEnv, sessile } from '../src/index.js';
import { start, testStores } from './helpers.js';

runHttpConformance({
  name: '@sessile/hono',
  stores: testStores(),
  commitFailureBody: 'Internal Server Error',
  async start(options, handler) {
    const sessions = sessile(options);
    const app = new Hono<SessileEnv>();
    app.use(sessions);
    app.all('*', async (c) => c.json(await handler(c.req.url, c.get('session'))));
    const server = await start(app.fetch);
    return {
      url: server.url,
      cookie: sessions.cookie,
      async close() {
        await server.close();
        await sessions.close();
      },
    };
  },
});
