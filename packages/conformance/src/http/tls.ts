import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A key and certificate for an HTTPS test server, as `https.createServer` takes them. */
export interface TestCertificate {
  key: string;
  cert: string;
}

/**
 * A fresh self-signed certificate for `localhost` and `127.0.0.1`, made with the `openssl`
 * command in a temporary directory (removed before returning). Throws, saying so, when
 * `openssl` cannot be run: an HTTPS test needs it.
 */
export function selfSignedCertificate(): TestCertificate {
  const dir = mkdtempSync(join(tmpdir(), 'sessile-tls-'));
  try {
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    try {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-days',
          '1',
          '-subj',
          '/CN=localhost',
          '-addext',
          'subjectAltName=DNS:localhost,IP:127.0.0.1',
          '-keyout',
          key,
          '-out',
          cert,
        ],
        { stdio: 'pipe' },
      );
    } catch (error) {
      throw new Error(
        'selfSignedCertificate(): could not run `openssl req -x509` to make a test certificate; install openssl (it must be on PATH) to run the HTTPS tests',
        { cause: error },
      );
    }
    return { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What `httpsGet` resolves to. */
export interface HttpsAnswer {
  status: number;
  /** The response's `Set-Cookie` header lines. */
  setCookie: string[];
  body: string;
}

/** `GET url` over HTTPS, trusting `certificate` (a self-signed one) and sending `headers`. */
export function httpsGet(
  url: string,
  certificate: TestCertificate,
  headers: Record<string, string> = {},
): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca: certificate.cert, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, setCookie: res.headers['set-cookie'] ?? [], body }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * The session cookie's `Set-Cookie` line of a plain-HTTP `GET` of `url`, for tests of the
 * cookie's attributes; rejects when the answer has another status than `status` or sets no `sid`.
 */
export async function sessionSetCookie(
  url: string,
  headers: Record<string, string> = {},
  status = 200,
): Promise<string> {
  const response = await fetch(url, { headers });
  const [line] = response.headers.getSetCookie();
  if (response.status !== status || line === undefined || !line.startsWith('sid=')) {
    throw new Error(`GET ${url} answered ${response.status} with Set-Cookie ${String(line)}`);
  }
  return line;
}

/** A `Set-Cookie` line's attributes, `name=value` first. */
export const cookieAttributes = (line: string): string[] => line.split('; ');

/** A `Set-Cookie` line's `name=value`, as a `Cookie` request header sends it back. */
export const cookiePair = (line: string): string => line.split(';')[0] as string;
