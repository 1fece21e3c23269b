import { describe, expect, it } from 'vitest';
import { DISK_STORES, fullDisk } from '../dist/disk/full-disk.js';
import { deletedUnderneath, openReadOnly, readOnlyMidRun } from '../dist/disk/hostile.js';
import { permissionsMidRun } from '../dist/disk/permissions.js';
import type { CheckOutcome } from '../dist/results.js';
import { storeSpec } from '../dist/stores.js';

function expectHeld(outcome: CheckOutcome, skip: (reason: string) => void): void {
  if (outcome.skipped !== undefined) skip(outcome.skipped);
  expect(outcome.failures).toEqual([]);
  expect(outcome.cases).toBeGreaterThan(0);
}

describe('a full disk (a tmpfs the harness mounts)', () => {
  for (const name of DISK_STORES) {
    it(`${name}: ERR_STORE_IO when full, earlier sessions readable, writes resume once space is freed, nothing corrupt on reopen`, async (context) => {
      expectHeld(await fullDisk(storeSpec(name)), (reason) => context.skip(reason));
    }, 120_000);
  }
});

describe('a hostile environment: a clear error, no crash, no hang', () => {
  for (const name of DISK_STORES) {
    it(`${name}: the filesystem turns read-only mid-run, then writable`, async (context) => {
      expectHeld(await readOnlyMidRun(storeSpec(name)), (reason) => context.skip(reason));
    }, 120_000);
    it(`${name}: opening on a read-only filesystem names the path`, async (context) => {
      expectHeld(await openReadOnly(storeSpec(name)), (reason) => context.skip(reason));
    }, 60_000);
    it(`${name}: permissions revoked mid-traffic under an unprivileged user, then restored`, async (context) => {
      expectHeld(await permissionsMidRun(storeSpec(name)), (reason) => context.skip(reason));
    }, 240_000);
    it(`${name}: the directory is deleted underneath`, async (context) => {
      expectHeld(await deletedUnderneath(storeSpec(name)), (reason) => context.skip(reason));
    }, 60_000);
  }
});
