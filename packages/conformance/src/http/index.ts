import { MemoryStore } from '@sessile/core';
import { assertKnownOptions } from '@sessile/core/store';
import { describe } from 'vitest';
import { detailScenarios } from './details.js';
import { expressSessionScenarios, storeExpressSession } from './express-session.js';
import { harness } from './harness.js';
import type { HttpConformanceOptions, HttpStoreFixture } from './options.js';
import { storeScenarios } from './scenarios.js';

export { CookieJar } from './cookie-jar.js';
export type {
  ExpressSessionSignIn,
  HttpAdapterOptions,
  HttpConformanceHandler,
  HttpConformanceOptions,
  HttpConformanceServer,
  HttpStoreFixture,
} from './options.js';
export { hangUpWhileWaiting, sendOnSocket } from './raw-request.js';
export {
  cookieAttributes,
  cookiePair,
  type HttpsAnswer,
  httpsGet,
  selfSignedCertificate,
  sessionSetCookie,
  type TestCertificate,
} from './tls.js';

const MEMORY_STORE: HttpStoreFixture = { name: 'MemoryStore', open: async () => new MemoryStore() };

/**
 * Registers the HTTP scenarios every sessile framework adapter must pass with vitest. Call it
 * once, at the top level of a test file. The scenarios run over each of `stores`; hang-ups,
 * commit failures, cookie attributes and cleanup run once, over core's `MemoryStore`.
 */
export function runHttpConformance(options: HttpConformanceOptions): void {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('runHttpConformance() needs options { name, start, commitFailureBody }');
  }
  assertKnownOptions(
    options,
    ['name', 'start', 'commitFailureBody', 'stores', 'signInWithExpressSession'],
    'runHttpConformance()',
  );
  if (typeof options.name !== 'string') {
    throw new TypeError('runHttpConformance(): name must be a string');
  }
  if (typeof options.start !== 'function') {
    throw new TypeError('runHttpConformance(): start must be a function');
  }
  if (typeof options.commitFailureBody !== 'string') {
    throw new TypeError('runHttpConformance(): commitFailureBody must be a string');
  }
  if (
    options.signInWithExpressSession !== undefined &&
    typeof options.signInWithExpressSession !== 'function'
  ) {
    throw new TypeError('runHttpConformance(): signInWithExpressSession must be a function');
  }
  const stores = options.stores ?? [MEMORY_STORE];
  if (!Array.isArray(stores) || stores.length === 0) {
    throw new TypeError('runHttpConformance(): stores must be a non-empty array');
  }

  describe(`${options.name}: sessile HTTP conformance`, () => {
    const tests = harness(options);
    const signIn = options.signInWithExpressSession ?? storeExpressSession;
    for (const fixture of stores) {
      storeScenarios(tests, fixture);
      expressSessionScenarios(tests, fixture, signIn);
    }
    detailScenarios(tests, options.commitFailureBody);
  });
}
