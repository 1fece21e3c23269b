import { runHttpConformance } from '@sessile/conformance/http';
import Fastify from 'fastify';
import { fastifySessile } from '../src/index.js';
import { testStores } from './stores.js';

runHttpConformance({
  name: '@sessile/fastify',
  stores: testStores(),
  commitFailureBody: JSON.stringify({
    statusCode: 500,
    error: 'Internal Server Error',
    message: 'The session could not be saved',
  }),
  async start(options, handler) {
    const app = Fastify({ forceCloseConnections: true });
    await app.register(fastifySessile, options);
    app.all('/*', (request) => handler(request.url, request.session));
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    return { url, cookie: app.sessile.cookie, close: () => app.close() };
  },
});
