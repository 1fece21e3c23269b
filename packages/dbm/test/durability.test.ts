import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSessionId } from '@sessile/core';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { DbmStore } from '../src/index.js';

const syncs = vi.hoisted(() => ({ count: 0 }));

vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs')>();
  const fdatasyncSync = (fd: number) => {
    syncs.count++;
    actual.fdatasyncSync(fd);
  };
  return { ...actual, default: { ...actual, fdatasyncSync }, fdatasyncSync };
});

const directory = mkdtempSync(join(tmpdir(), 'sessile-dbm-durability-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

/** The `fdatasync` calls `step` makes. */
async function syncsOf(step: () => Promise<unknown>): Promise<number> {
  const before = syncs.count;
  await step();
  return syncs.count - before;
}

describe('DbmStore durability', () => {
  it("'full' flushes before and after the journal of every commit; 'normal' (the default) never flushes", async () => {
    const id = generateSessionId();
    const expiresAt = Date.now() + 3_600_000;
    const data = new Uint8Array(100_000);
    const counts: Record<string, number[]> = {};
    for (const durability of [undefined, 'normal', 'full'] as const) {
      const path = join(directory, `${durability ?? 'default'}.dbm`);
      const store = await DbmStore.open(durability === undefined ? { path } : { path, durability });
      try {
        counts[String(durability)] = [
          // A new record is written to fresh space, flushed before the journal is.
          await syncsOf(() => store.set(id, { data: new Uint8Array(10), expiresAt })),
          // A rewrite of the same size goes through the journal only.
          await syncsOf(() => store.set(id, { data: new Uint8Array(20), expiresAt })),
          await syncsOf(() => store.set(generateSessionId(), { data, expiresAt })),
          await syncsOf(() => store.touch(id, expiresAt + 1)),
          await syncsOf(() => store.delete(id)),
        ];
      } finally {
        await store.close();
      }
    }
    expect(counts).toEqual({
      undefined: [0, 0, 0, 0, 0],
      normal: [0, 0, 0, 0, 0],
      full: [3, 2, 3, 2, 2],
    });
  });
});
