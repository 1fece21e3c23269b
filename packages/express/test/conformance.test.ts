import { createServer } from 'node:http';
import { runHttpConformance } from '@sessile/conformance/http';
import express from 'express';
import { type SessileRequest, sessile } from '../src/index.js';
import { closeServer, listen, signInWithExpressSession, testStores } from './helpers.js';

runHttpConformance({
  name: 'sessile() middleware',
  stores: testStores(),
  // The acceptExpressSession scenarios sign users in on the real express-session.
  signInWithExpressSession,
  commitFailureBody: 'Internal Server Error',
  async start(options, handler) {
    const sessions = sessile(options);
    const app = express();
    app.use(sessions);
    app.use(async (req, res) => {
      res.json(await handler(req.url, (req as unknown as SessileRequest).session));
    });
    const server = createServer(app);
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
