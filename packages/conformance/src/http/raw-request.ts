import { type EventEmitter, once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { CookieJar } from './cookie-jar.js';

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

/**
 * A client that hangs up while its request waits for the session's lock, against a server whose
 * `/count` counts the session's requests and whose `/hold` keeps its session open until
 * `letGo()`. `requests` must emit `'holding'` once `/hold` has its session, and `arrived <path>`
 * and `closed <path>` as the server sees each request come and its response close. It loads the
 * session with `/count`, holds it with `/hold`, sends `/gone` for the same session on a socket of
 * its own and destroys that socket once the server has the request, lets `/hold` go, then loads
 * the session again. Resolves to the three bodies: `['1', '2', '3']` when the hang-up cost nothing.
 */
export async function hangUpWhileWaiting(
  url: string,
  requests: EventEmitter,
  letGo: () => void,
): Promise<string[]> {
  const jar = new CookieJar();
  const first = await (await jar.fetch(`${url}/count`)).text();
  const holding = once(requests, 'holding');
  const holder = jar.fetch(`${url}/hold`);
  await holding;
  const arrived = once(requests, 'arrived /gone');
  const closed = once(requests, 'closed /gone');
  const socket = await sendOnSocket(url, '/gone', jar.header());
  await arrived;
  socket.destroy();
  await closed;
  letGo();
  const held = await (await holder).text();
  const after = await (await jar.fetch(`${url}/count`)).text();
  return [first, held, after];
}
