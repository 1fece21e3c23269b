import { once } from 'node:events';
import { connect, type Socket } from 'node:net';

/**
 * Sends `GET path` to the server at `url` (with `cookie` as its `Cookie` header) on a socket of
 * its own, and resolves to that socket once the request is written: a test destroys it
 * mid-request, as a client that hangs up does. Socket errors are ignored, since the test ends
 * the connection itself.
 */
export async function sendOnSocket(
  url: string,
  path: string,
  cookie: string | undefined,
): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.on('error', () => {});
  await once(socket, 'connect');
  const cookieLine = cookie === undefined ? '' : `cookie: ${cookie}\r\n`;
  socket.write(`GET ${path} HTTP/1.1\r\nhost: ${hostname}:${port}\r\n${cookieLine}\r\n`);
  return socket;
}
