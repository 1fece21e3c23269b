import { MemoryStore, manual } from '@sessile/core';
import { afterAll, expect, it } from 'vitest';
import { sessile } from '../src/index.js';

// The transition itself (adoption, forged and unknown cookies, the cookie's name) is one of the
// HTTP scenarios in conformance.test.ts, signed in on the real express-session.
const store = new MemoryStore();
afterAll(() => store.close());

it('refuses an acceptExpressSession it cannot use, naming it', () => {
  const refusal = (acceptExpressSession: unknown) => () =>
    sessile({
      store,
      secret: 'the secret express-session signs with now, 32+ chars',
      cleanup: manual(),
      acceptExpressSession,
    } as never);
  expect(refusal('yes')).toThrow(
    "sessile(): acceptExpressSession must be a boolean or { name, secret }, got 'yes'",
  );
  expect(refusal({ secrets: ['the secret express-session signed with before, 32+'] })).toThrow(
    "sessile() acceptExpressSession: unknown option 'secrets'; did you mean 'secret'?",
  );
  expect(refusal({ secret: [] })).toThrow(/acceptExpressSession.secret must be a non-empty/);
  expect(refusal({ name: 'connect sid' })).toThrow(/acceptExpressSession.name must be a cookie/);
});
