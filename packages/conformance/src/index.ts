import { existsSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SessionStore, StoreCapabilities } from '@sessile/core';
import { assertKnownOptions, describeValue } from '@sessile/core/store';
import { afterAll, describe } from 'vitest';
import { basicTests } from './groups/basic.js';
import { concurrencyTests } from './groups/concurrency.js';
import { corruptTests } from './groups/corrupt.js';
import { crossProcessTests } from './groups/cross-process.js';
import { durabilityTests } from './groups/durability.js';
import { expiryTests } from './groups/expiry.js';
import { fenceTests } from './groups/fence.js';
import { fullDiskTests } from './groups/full-disk.js';
import { lockTests } from './groups/locks.js';
import { orderTests } from './groups/order.js';
import { crossProcessOwnerTests, ownerTests } from './groups/owners.js';
import { sweepTests } from './groups/sweep.js';
import { traitTests } from './groups/traits.js';
import type { ConformanceOptions } from './options.js';

export { mountSmallFilesystem, unmountSmallFilesystem } from './groups/full-disk.js';
export type { ConformanceOptions, CrossProcessOptions } from './options.js';
export {
  type ProbeConformanceOptions,
  type ProbePlace,
  pathStorePlaces,
  placeDirectories,
  runProbeConformance,
  snapshotTree,
  storeWithOneSession,
} from './probe.js';

/**
 * Registers the whole sessile conformance suite with vitest. Call it once, at the top level of
 * a test file. The store's declared `capabilities` decide which groups run: cross-process tests
 * for `shared` `'host'` or wider, durability for `durable`, the cost bound for `expiryIndex`, and
 * the owner-index group for `ownerIndex` (across processes and after a crash where `shared` and
 * `durable` say so).
 */
export async function runStoreConformance(options: ConformanceOptions): Promise<void> {
  checkOptions(options);
  const probe: unknown = await options.open();
  let capabilities: StoreCapabilities;
  try {
    capabilities = checkedCapabilities(probe);
  } finally {
    if (typeof (probe as Partial<SessionStore> | null)?.close === 'function') {
      await (probe as SessionStore).close();
    }
  }

  describe(`${options.name}: sessile conformance`, () => {
    if (options.teardown !== undefined) afterAll(() => options.teardown?.(), 120_000);
    basicTests(options);
    expiryTests(options);
    sweepTests(options, capabilities.expiryIndex, capabilities.expiry);
    traitTests(options);
    concurrencyTests(options);
    orderTests(options);
    lockTests(options);
    fenceTests(options);
    if (capabilities.shared !== 'process') crossProcessTests(options, capabilities.shared);
    if (capabilities.durable) durabilityTests(options);
    ownerTests(options, capabilities.ownerIndex, capabilities.expiry);
    if (capabilities.ownerIndex && capabilities.shared !== 'process') {
      crossProcessOwnerTests(options, capabilities.shared, capabilities.durable);
    }
    // Only a store that keeps encoded bytes can have them damaged. Stores that hold records as
    // live objects (MemoryStore) have no bytes to tear, so without a hook the group is not registered.
    if (options.corrupt !== undefined) corruptTests(options, options.corrupt);
    if (options.fullDisk !== undefined) fullDiskTests(options, options.fullDisk);
  });
}

const WHERE = 'runStoreConformance()';
const OPTION_NAMES = [
  'name',
  'open',
  'reopen',
  'crossProcess',
  'corrupt',
  'fullDisk',
  'timeScale',
  'teardown',
] as const;

/**
 * Refuses what would make groups vanish or fail for the wrong reason: a misspelt hook (`corupt`)
 * would otherwise drop its group from a run that still reports every test passed.
 */
function checkOptions(options: ConformanceOptions): void {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`${WHERE} needs options { name, open }, got ${describeValue(options)}`);
  }
  assertKnownOptions(options, OPTION_NAMES, WHERE);
  if (typeof options.name !== 'string' || options.name === '') {
    throw new TypeError(
      `${WHERE}: name must be a non-empty string, got ${describeValue(options.name)}`,
    );
  }
  for (const hook of ['open', 'reopen', 'corrupt', 'fullDisk', 'teardown'] as const) {
    const value: unknown = options[hook];
    if ((value !== undefined || hook === 'open') && typeof value !== 'function') {
      throw new TypeError(`${WHERE}: ${hook} must be a function, got ${describeValue(value)}`);
    }
  }
  const { timeScale, crossProcess } = options;
  if (
    timeScale !== undefined &&
    !(typeof timeScale === 'number' && timeScale > 0 && Number.isFinite(timeScale))
  ) {
    throw new TypeError(
      `${WHERE}: timeScale must be a positive number, got ${describeValue(timeScale)}`,
    );
  }
  if (crossProcess !== undefined) {
    if (typeof crossProcess !== 'object' || crossProcess === null) {
      throw new TypeError(
        `${WHERE}: crossProcess must be { module, location }, got ${describeValue(crossProcess)}`,
      );
    }
    assertKnownOptions(crossProcess, ['module', 'location'], `${WHERE} crossProcess`);
    if (typeof crossProcess.module !== 'string' && !(crossProcess.module instanceof URL)) {
      throw new TypeError(
        `${WHERE}: crossProcess.module must be a path or a URL, got ${describeValue(crossProcess.module)}`,
      );
    }
    if (typeof crossProcess.location !== 'function') {
      throw new TypeError(
        `${WHERE}: crossProcess.location must be a function, got ${describeValue(crossProcess.location)}`,
      );
    }
    checkChildModule(crossProcess.module);
  }
}

/**
 * A forked child imports the module with plain Node, from its own working directory: a relative
 * path, TypeScript or a file not built yet fails there, in every cross-process test at once.
 */
function checkChildModule(module: string | URL): void {
  const given = describeValue(module);
  let path: string;
  try {
    path = module instanceof URL || module.startsWith('file:') ? fileURLToPath(module) : module;
  } catch {
    throw new TypeError(
      `${WHERE}: crossProcess.module must be a path or a file: URL, got ${given}`,
    );
  }
  if (!isAbsolute(path)) {
    throw new TypeError(
      `${WHERE}: crossProcess.module must be an absolute path or a file: URL, got ${given}: the child resolves a relative one against its working directory (use new URL('./child-store.mjs', import.meta.url))`,
    );
  }
  if (/\.[cm]?tsx?$/.test(path)) {
    throw new TypeError(
      `${WHERE}: crossProcess.module ${path} is TypeScript, which the child's plain Node cannot import: point it at built JavaScript (your package's dist)`,
    );
  }
  if (!existsSync(path)) {
    throw new TypeError(
      `${WHERE}: crossProcess.module ${path} does not exist (build your package before testing?)`,
    );
  }
}

const CAPABILITY_VALUES: Record<keyof StoreCapabilities, readonly unknown[]> = {
  shared: ['process', 'host', 'cluster'],
  expiry: ['sweep', 'native'],
  durable: [true, false],
  expiryIndex: [true, false],
  ownerIndex: [true, false],
};

/**
 * The capabilities of what `open()` resolved to. A flag left out would read as false and drop
 * its group from a run that still passes, so each one must be there with a value it can have.
 */
function checkedCapabilities(store: unknown): StoreCapabilities {
  if (
    typeof store !== 'object' ||
    store === null ||
    typeof (store as Partial<SessionStore>).close !== 'function'
  ) {
    throw new TypeError(
      `${WHERE}: open() must resolve to a store (an object with capabilities, locks, get, set, …, close), got ${describeValue(store)}`,
    );
  }
  const capabilities: unknown = (store as SessionStore).capabilities;
  if (typeof capabilities !== 'object' || capabilities === null) {
    throw new TypeError(
      `${WHERE}: the store's capabilities must be an object { ${Object.keys(CAPABILITY_VALUES).join(', ')} }, got ${describeValue(capabilities)}`,
    );
  }
  for (const [flag, values] of Object.entries(CAPABILITY_VALUES)) {
    const value: unknown = (capabilities as Record<string, unknown>)[flag];
    if (!values.includes(value)) {
      throw new TypeError(
        `${WHERE}: the store's capabilities.${flag} must be ${values.map((each) => JSON.stringify(each).replaceAll('"', "'")).join(' or ')}, got ${describeValue(value)}; the suite picks its tests from it`,
      );
    }
  }
  return capabilities as StoreCapabilities;
}
