import { MemoryStore } from '@sessile/core';
import { expect, it } from 'vitest';
import { runHttpConformance } from '../src/http/index.js';
import { type ConformanceOptions, runStoreConformance } from '../src/index.js';

const open = async () => new MemoryStore();

it('runStoreConformance refuses unknown, misspelt and malformed options with a TypeError naming them', async () => {
  const refusal = (options: unknown) =>
    runStoreConformance(options as ConformanceOptions).then(
      () => 'accepted',
      (error: unknown) =>
        error instanceof TypeError ? error.message : `not a TypeError: ${error}`,
    );
  expect(await refusal({ name: 'x', open, corupt: async () => {} })).toMatch(
    /unknown option 'corupt'; did you mean 'corrupt'\?/,
  );
  expect(await refusal({ name: 'x', open, timescale: 2 })).toMatch(/unknown option 'timescale'/);
  expect(await refusal({ open })).toMatch(/name must be a non-empty string/);
  expect(await refusal({ name: 'x' })).toMatch(/open must be a function, got undefined/);
  expect(await refusal({ name: 'x', open, corrupt: 'yes' })).toMatch(/corrupt must be a function/);
  for (const timeScale of [-1, 0, 'slow', Number.NaN]) {
    expect(await refusal({ name: 'x', open, timeScale })).toMatch(/timeScale must be a positive/);
  }
  expect(await refusal({ name: 'x', open, crossProcess: { module: '/m.mjs' } })).toMatch(
    /crossProcess.location must be a function/,
  );
  expect(
    await refusal({ name: 'x', open, crossProcess: { module: 1, location: () => '' } }),
  ).toMatch(/crossProcess.module must be a path or a URL/);
  expect(await refusal(null)).toMatch(/needs options \{ name, open \}/);
});

it('runHttpConformance refuses unknown options with a TypeError naming them', () => {
  expect(() =>
    runHttpConformance({
      name: 'x',
      start: async () => ({ url: '', cookie: undefined as never, close: async () => {} }),
      commitFailureBody: '',
      store: [],
    } as never),
  ).toThrow(/unknown option 'store'; did you mean 'stores'\?/);
});
