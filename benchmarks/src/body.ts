import { randomBytes } from 'node:crypto';

/** What an app keeps in a session: a small, realistic JSON object of about 400 bytes. */
export interface SessionBody {
  userId: string;
  user: { name: string; email: string; roles: string[] };
  csrfToken: string;
  cart: { sku: string; quantity: number; priceCents: number }[];
  flash: string[];
  locale: string;
  theme: string;
  returnTo: string;
  counter: number;
  loginAt: number;
}

const FIRST_NAMES = ['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken'];
const LAST_NAMES = ['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Allen'];

/** A fresh session body; `seed` varies names and cart so bodies differ like real ones. */
export function makeSessionBody(seed: number): SessionBody {
  const first = FIRST_NAMES[seed % FIRST_NAMES.length] ?? 'Ada';
  const last = LAST_NAMES[seed % LAST_NAMES.length] ?? 'Lovelace';
  return {
    userId: `user_${100000 + (seed % 900000)}`,
    user: {
      name: `${first} ${last}`,
      email: `${first.toLowerCase()}.${last.toLowerCase()}${seed % 1000}@example.com`,
      roles: seed % 7 === 0 ? ['customer', 'admin'] : ['customer'],
    },
    csrfToken: randomBytes(24).toString('base64url'),
    cart: [
      { sku: `SKU-${(seed * 7919) % 100000}`, quantity: 1 + (seed % 3), priceCents: 1999 },
      { sku: `SKU-${(seed * 104729) % 100000}`, quantity: 1, priceCents: 4550 },
    ],
    flash: seed % 5 === 0 ? ['Your order has been placed.'] : [],
    locale: 'en-GB',
    theme: seed % 2 === 0 ? 'dark' : 'light',
    returnTo: `/account/orders?page=${seed % 20}&sort=date-desc`,
    counter: 0,
    loginAt: 1_764_000_000_000 + seed,
  };
}

/** Byte size of a body as stored (JSON, UTF-8), for the report. */
export function bodyBytes(body: SessionBody): number {
  return Buffer.byteLength(JSON.stringify(body));
}

/** Random 43-character base64url session ids, made in bulk so id generation stays off the timed path. */
export class IdPool {
  #ids: string[] = [];

  next(): string {
    if (this.#ids.length === 0) this.#refill();
    return this.#ids.pop() as string;
  }

  /** `count` fresh ids at once. */
  take(count: number): string[] {
    return Array.from({ length: count }, () => this.next());
  }

  #refill(): void {
    const bytes = randomBytes(32 * 1024);
    for (let offset = 0; offset < bytes.length; offset += 32) {
      this.#ids.push(bytes.subarray(offset, offset + 32).toString('base64url'));
    }
  }
}
