/** One browser: remembers the cookies the server sets and sends them back. */
export class CookieJar {
  /** The cookies held, by name, each value as the server wrote it. */
  readonly cookies = new Map<string, string>();

  /** The `Cookie` request header for the cookies held, or `undefined` when there are none. */
  header(): string | undefined {
    if (this.cookies.size === 0) return undefined;
    return Array.from(this.cookies, ([name, value]) => `${name}=${value}`).join('; ');
  }

  /** Takes the response's `Set-Cookie` headers; an empty value or `Max-Age=0` removes a cookie. */
  remember(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair = '', ...attributes] = line.split(';');
      const equals = pair.indexOf('=');
      const name = pair.slice(0, equals).trim();
      const value = pair.slice(equals + 1).trim();
      const cleared =
        value === '' || attributes.some((attribute) => /^\s*max-age=0\s*$/i.test(attribute));
      if (cleared) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  /** Another browser holding the same cookies, which it then keeps apart from this one's. */
  clone(): CookieJar {
    const copy = new CookieJar();
    for (const [name, value] of this.cookies) copy.cookies.set(name, value);
    return copy;
  }

  /** `fetch` with the cookies held, remembering those the response sets. */
  async fetch(url: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    const cookie = this.header();
    if (cookie !== undefined) headers.set('cookie', cookie);
    const response = await fetch(url, { ...init, headers });
    this.remember(response);
    return response;
  }

  /** `fetch` that resolves to the JSON body, and rejects for a status outside 200-299. */
  async json<T = unknown>(url: string, init: RequestInit = {}): Promise<T> {
    const response = await this.fetch(url, init);
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  }
}
