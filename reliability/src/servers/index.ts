import type { CheckOutcome } from '../results.js';
import type { RunOptions } from '../run.js';
import { connectionsKilled, SERVERS, serverRestarted } from './disrupt.js';

export async function runServers(options: RunOptions): Promise<CheckOutcome[]> {
  const outcomes: CheckOutcome[] = [];
  for (const server of SERVERS) {
    if (!options.stores.some((spec) => spec.name === server.name)) continue;
    options.log?.(`servers ${server.name}`);
    outcomes.push(await connectionsKilled(server), await serverRestarted(server));
  }
  return outcomes;
}
