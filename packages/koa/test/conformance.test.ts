import { createServer } from 'node:http';
import { runHttpConformance } from '@sessile/conformance/http';
import Koa from 'koa';
import { type SessileContext, sessile } from '../src/index.js';
import { closeServer, listen, testStores } from './helpers.js';

runHttpConformance({
  name: '@sessile/koa',
  stores: testStores(),
  commitFailureBody: 'Internal Server Error',
  async start(options, handler) {
    const sessions = sessile(options);
    const app = new Koa();
    app.use(sessions);
    app.use(async (ctx) => {
      ctx.body = await handler(ctx.url, (ctx as SessileContext).session);
    });
    const server = createServer(app.callback());
    return {
      url: await listen(server),
      cookie: sessions.cookie,
      async close() {
        await closeServer(server);
        await sessions.close();
      },
    };
  },
});
