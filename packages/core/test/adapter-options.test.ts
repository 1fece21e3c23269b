import { describe, expect, it } from 'vitest';
import { MemoryStore, manual } from '../src/index.js';
import { openSessionAdapter } from '../src/store.js';

const SECRET = 'a secret of 32 characters or more for these tests';

/** The `TypeError` message `openSessionAdapter` throws for `options`, as adapter `where`. */
function refusal(options: Record<string, unknown>, where = 'sessile()'): string {
  const store = new MemoryStore();
  try {
    const adapter = openSessionAdapter(
      { store, secret: SECRET, cleanup: manual(), ...options },
      where,
    );
    void adapter.manager.close();
  } catch (error) {
    expect(error).toBeInstanceOf(TypeError);
    return (error as Error).message;
  } finally {
    void store.close();
  }
  throw new Error(`expected ${JSON.stringify(options)} to be refused`);
}

describe('openSessionAdapter options', () => {
  it("points a top-level maxAge (koa-session's) to cookie.maxAgeMs in every adapter", () => {
    for (const where of ['sessile()', '@sessile/koa', '@sessile/hono', '@sessile/fastify']) {
      expect(refusal({ maxAge: 86_400_000 }, where)).toBe(
        `${where}: unknown option 'maxAge'; did you mean 'cookie.maxAgeMs'?`,
      );
    }
  });

  it('points every cookie attribute given beside secret to its place in cookie', () => {
    expect(refusal({ maxAgeMs: 1000 })).toBe(
      "sessile(): unknown option 'maxAgeMs'; did you mean 'cookie.maxAgeMs'?",
    );
    expect(refusal({ secure: true })).toBe(
      "sessile(): unknown option 'secure'; did you mean 'cookie.secure'?",
    );
    expect(refusal({ httpOnly: false })).toBe(
      "sessile(): unknown option 'httpOnly'; did you mean 'cookie.httpOnly'?",
    );
  });
});
