import type { CheckOutcome } from '../results.js';
import type { RunOptions } from '../run.js';
import { DISK_STORES, fullDisk } from './full-disk.js';
import { deletedUnderneath, openReadOnly, readOnlyMidRun } from './hostile.js';
import { permissionsMidRun } from './permissions.js';

export const HOSTILE_CHECKS = [readOnlyMidRun, openReadOnly, permissionsMidRun, deletedUnderneath];

export async function runFullDisk(options: RunOptions): Promise<CheckOutcome[]> {
  const outcomes: CheckOutcome[] = [];
  for (const spec of options.stores) {
    if (!DISK_STORES.includes(spec.name)) continue;
    options.log?.(`full disk ${spec.name}`);
    outcomes.push(await fullDisk(spec));
  }
  return outcomes;
}

export async function runHostile(options: RunOptions): Promise<CheckOutcome[]> {
  const outcomes: CheckOutcome[] = [];
  for (const spec of options.stores) {
    if (!DISK_STORES.includes(spec.name)) continue;
    options.log?.(`hostile environment ${spec.name}`);
    for (const check of HOSTILE_CHECKS) outcomes.push(await check(spec));
  }
  return outcomes;
}
