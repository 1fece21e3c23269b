import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { MemoryStore } from '@sessile/core';
import { expect, it } from 'vitest';
import { runHttpConformance } from '../src/http/index.js';
import {
  type ConformanceOptions,
  type ProbeConformanceOptions,
  runProbeConformance,
  runStoreConformance,
} from '../src/index.js';

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
  // The child imports the module with plain Node, from its own working directory.
  const location = () => '';
  expect(
    await refusal({ name: 'x', open, crossProcess: { module: './child.mjs', location } }),
  ).toMatch(/crossProcess.module must be an absolute path or a file: URL, got '.\/child.mjs'/);
  const typescript = fileURLToPath(new URL('./broken/stores.ts', import.meta.url));
  expect(
    await refusal({ name: 'x', open, crossProcess: { module: typescript, location } }),
  ).toMatch(/crossProcess.module .*stores.ts is TypeScript/);
  expect(
    await refusal({ name: 'x', open, crossProcess: { module: '/no/such/child.mjs', location } }),
  ).toMatch(/crossProcess.module \/no\/such\/child.mjs does not exist/);
});

it('runStoreConformance refuses a store whose capabilities lack a flag or hold a value it cannot have', async () => {
  const withCapabilities = (capabilities: unknown) => async () => {
    const store = new MemoryStore();
    Object.defineProperty(store, 'capabilities', { value: capabilities });
    return store;
  };
  const refusal = (open: () => Promise<unknown>) =>
    runStoreConformance({ name: 'x', open } as ConformanceOptions).then(
      () => 'accepted',
      (error: unknown) =>
        error instanceof TypeError ? error.message : `not a TypeError: ${error}`,
    );
  const { ownerIndex: _, ...withoutOwnerIndex } = new MemoryStore().capabilities;
  // Read as false, a missing flag would drop its group from a run that still passes.
  expect(await refusal(withCapabilities(withoutOwnerIndex))).toMatch(
    /capabilities.ownerIndex must be true or false, got undefined/,
  );
  expect(
    await refusal(withCapabilities({ ...new MemoryStore().capabilities, shared: 'hosts' })),
  ).toMatch(/capabilities.shared must be 'process' or 'host' or 'cluster', got 'hosts'/);
  expect(await refusal(withCapabilities(undefined))).toMatch(
    /capabilities must be an object \{ shared, expiry, durable, expiryIndex, ownerIndex \}/,
  );
  // A missing await or return in open() resolves to something that is not a store.
  expect(await refusal(async () => undefined)).toMatch(/open\(\) must resolve to a store/);
});

it('a child whose crossProcess.module has no default export fails saying what the module must export', async () => {
  const { spawnChild } = await import('../dist/groups/spawn.js');
  const child = spawnChild(
    {
      module: fileURLToPath(new URL('./broken/stores.ts', import.meta.url)).replace(
        /stores\.ts$/,
        'racy-file-store.mjs',
      ),
      location: () => tmpdir(),
    },
    { kind: 'hold', id: 'a'.repeat(20), leaseMs: 1000 },
  );
  await expect(child.next('held')).rejects.toThrow(
    /crossProcess.module .*racy-file-store.mjs must have a default export \(location\) => store .*; it exports RacyFileStore/,
  );
  child.kill();
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

it('runProbeConformance refuses options that are not there or not of their kind with a TypeError naming them', () => {
  const refusal = (options: unknown) => {
    try {
      runProbeConformance(options as ProbeConformanceOptions<unknown>);
      return 'accepted';
    } catch (error) {
      return error instanceof TypeError ? error.message : `not a TypeError: ${error}`;
    }
  };
  const place = (state: string) => ({ name: state, make: async () => ({}), state });
  const places = [place('present'), place('absent'), place('refused')];
  const valid = { name: 'x', probe: async () => ({}), open, snapshot: async () => [], places };
  expect(refusal(null)).toMatch(/needs options \{ name, probe, open, snapshot, places \}/);
  expect(refusal({ ...valid, probe: undefined })).toMatch(
    /probe must be a function, got undefined/,
  );
  expect(refusal({ ...valid, places: 'everywhere' })).toMatch(/places must be an array/);
  expect(refusal({ ...valid, places: [...places, place('missing')] })).toMatch(
    /places\[3\] must be \{ name, make\(\), state: 'present' \| 'absent' \| 'refused' \}, got .*state 'missing'/,
  );
  expect(refusal({ ...valid, places: places.slice(1) })).toMatch(
    /places must include a present, an absent and a refused place/,
  );
});
