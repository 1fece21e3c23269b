import { describe, expect, it } from 'vitest';
import { connectionsKilled, SERVERS, serverRestarted } from '../dist/servers/disrupt.js';

describe('servers: connections killed and servers restarted mid-traffic', () => {
  for (const server of SERVERS) {
    it(`${server.name}: killed connections give ERR_STORE_IO, the store recovers, no acknowledged write is lost`, async (context) => {
      const outcome = await connectionsKilled(server);
      if (outcome.skipped !== undefined) context.skip(outcome.skipped);
      expect(outcome.failures).toEqual([]);
      expect(outcome.notes?.[0]).toMatch(/^[1-9]\d* connections killed/);
    }, 120_000);
    it(`${server.name}: a server restart mid-traffic gives ERR_STORE_IO at once, the store recovers, no acknowledged write is lost`, async (context) => {
      const outcome = await serverRestarted(server);
      if (outcome.skipped !== undefined) context.skip(outcome.skipped);
      expect(outcome.failures).toEqual([]);
    }, 180_000);
  }
});
