import { connect } from 'node:net';

export interface RawResponse {
  status: number;
  head: string;
  body: string;
}

/** Sends `request` as raw bytes (so headers can hold anything) and reads the whole answer. */
export function rawRequest(
  port: number,
  request: Buffer,
  timeoutMs = 15_000,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer in ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      const head = split === -1 ? text : text.slice(0, split);
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0),
        head,
        body: text.slice(split + 4),
      });
    });
    // Written, not ended: Node's HTTP server treats a client's half-close as an abort
    // (httpAllowHalfOpen is off), so a FIN sent with the request would cut off any answer that
    // needs a store round trip. `Connection: close` makes the server close once it has answered.
    socket.write(request);
  });
}

export function requestWithCookie(cookie: Buffer | string | undefined, path = '/'): Buffer {
  const lines = [Buffer.from(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n`)];
  if (cookie !== undefined)
    lines.push(Buffer.from('Cookie: '), Buffer.from(cookie), Buffer.from('\r\n'));
  lines.push(Buffer.from('\r\n'));
  return Buffer.concat(lines);
}
