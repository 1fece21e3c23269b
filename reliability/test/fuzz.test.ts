import { describe, expect, it } from 'vitest';
import { fuzzCodecs } from '../dist/fuzz/codecs.js';
import { FUZZERS, runFuzzer } from '../dist/fuzz/index.js';
import { PROFILES } from '../dist/profile.js';

const seed = Math.floor(Math.random() * 2 ** 31);
const runs = PROFILES.small.fuzzRuns;

describe('decode fuzzing: bad bytes give ERR_CORRUPT_RECORD for that id, never a crash, a hang or wrong data', () => {
  for (const name of Object.keys(FUZZERS)) {
    it(`${name}: bytes written straight into the backend`, async () => {
      const outcomes = await runFuzzer(name, runs, seed);
      for (const outcome of outcomes) {
        expect(outcome.failures, `${outcome.name}, seed ${seed}`).toEqual([]);
        expect(outcome.cases).toBe(runs);
      }
    }, 120_000);
  }

  it('codecs: json and aes-256-gcm payloads', async () => {
    for (const outcome of await fuzzCodecs(runs, seed)) {
      expect(outcome.failures, `${outcome.name}, seed ${seed}`).toEqual([]);
      expect(outcome.cases).toBe(runs);
    }
  });
});
