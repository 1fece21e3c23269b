import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CommitOutcome } from '@sessile/core';
import { commitLostNothing, openSessionAdapter } from '@sessile/core/store';
import { runHttpConformance } from '../src/http/index.js';

// The HTTP suite proves itself on an adapter written on core alone, with no framework: a
// session opened before the handler, committed before the status line, released on hang-up.
runHttpConformance({
  name: 'node:http on core',
  commitFailureBody: 'The session could not be saved',
  async start(options, handler) {
    const adapter = openSessionAdapter(options, 'node:http adapter');
    const { manager, cookie } = adapter;
    const serve = async (req: IncomingMessage, res: ServerResponse) => {
      const requestCookie = cookie.verify(req.headers.cookie);
      const session = await manager.openForConnection(
        requestCookie?.values ?? requestCookie?.value,
        res,
        adapter.openOptions(req),
      );
      // A hang-up before the commit below; one already made reported its own failure.
      res.once('close', () => {
        if (!session.committed) void session.commit().catch(manager.reportError);
      });
      const body = JSON.stringify(await handler(req.url ?? '/', session));
      let outcome: CommitOutcome;
      try {
        outcome = await session.commit();
      } catch (error) {
        manager.reportError(error);
        // A session the request only read loses nothing: its answer stands, without a cookie.
        if (commitLostNothing(session, error)) {
          res.writeHead(200, { 'content-type': 'application/json' }).end(body);
        } else {
          res.writeHead(500).end('The session could not be saved');
        }
        return;
      }
      const headers = cookie.responseHeaders(session, requestCookie, outcome, manager.touchAfterMs);
      if (headers.length > 0) res.setHeader('set-cookie', headers);
      res.writeHead(200, { 'content-type': 'application/json' }).end(body);
      manager.afterResponse();
    };
    const server = createServer((req, res) => {
      serve(req, res).catch((error: unknown) => {
        manager.reportError(error);
        if (!res.headersSent) res.writeHead(500).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    return {
      url: `http://127.0.0.1:${port}`,
      cookie,
      async close() {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
        await manager.close();
      },
    };
  },
});
