import { describe, expect, it } from 'vitest';
import { malformedCookies, parallelRequests, slowClient } from '../dist/http/scenarios.js';

/** Enough to queue many requests on one lock; `pnpm reliability` runs 2,000. */
const PARALLEL = 100;

describe('HTTP through sessile()', () => {
  it('malformed cookies get a fresh session (or a 400 from the parser), never an adopted id or an error', async () => {
    const outcome = await malformedCookies();
    expect(outcome.failures).toEqual([]);
    expect(outcome.cases).toBe(12);
  }, 60_000);

  it('a client that disconnects mid-request frees its session lock for the next request', async () => {
    const outcome = await slowClient();
    expect(outcome.failures).toEqual([]);
  }, 60_000);

  it(`${PARALLEL} parallel requests on one session that await between read and write lose no update`, async () => {
    const outcome = await parallelRequests(PARALLEL);
    expect(outcome.failures).toEqual([]);
  }, 120_000);

  it('the same requests without the session lock lose updates, and the count says so', async () => {
    const outcome = await parallelRequests(PARALLEL, false);
    expect(outcome.failures.join()).toMatch(/[1-9]\d* updates lost/);
  }, 120_000);
});
