import type { CheckOutcome } from '../results.js';
import type { RunOptions } from '../run.js';
import { malformedCookies, parallelRequests, slowClient } from './scenarios.js';

export async function runHttp(options: RunOptions): Promise<CheckOutcome[]> {
  options.log?.('http');
  return [
    await malformedCookies(),
    await slowClient(),
    await parallelRequests(options.profile.httpRequests),
  ];
}
