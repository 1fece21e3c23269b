import {
  closeSync,
  copyFileSync,
  ftruncateSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSessionId, isSessionError } from '@sessile/core';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DATA_START,
  ENTRY_BYTES,
  PAGE_BYTES,
  PAGE_HEADER_BYTES,
  PAGE_MAGIC,
} from '../src/format.js';
import { DbmStore } from '../src/index.js';

const HOUR_MS = 3_600_000;
const directory = mkdtempSync(join(tmpdir(), 'sessile-dbm-entry-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

function bytesOf(seed: number, length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (seed * 31 + i) & 0xff);
}

/** Where the bucket entry pointing at `id`'s record starts in the file. */
function entryOffset(path: string, id: string): number {
  const file = readFileSync(path);
  const recordOffset = file.indexOf(Buffer.from(id, 'latin1'), DATA_START) - 28;
  const pointer = Buffer.alloc(8);
  pointer.writeDoubleLE(recordOffset);
  for (let page = DATA_START; page + PAGE_BYTES <= file.length; page += PAGE_BYTES) {
    if (file.readUInt16LE(page + 10) !== PAGE_MAGIC) continue;
    const count = file.readUInt16LE(page + 8);
    for (let slot = 0; slot < count; slot++) {
      const at = page + PAGE_HEADER_BYTES + slot * ENTRY_BYTES;
      if (file.subarray(at + 8, at + 16).equals(pointer)) return at;
    }
  }
  throw new Error(`no bucket entry points at ${id}'s record`);
}

async function outcomeOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    return await promise;
  } catch (error) {
    if (isSessionError(error)) return error.code;
    throw error;
  }
}

describe('DbmStore bucket entries', () => {
  it('a damaged byte in a bucket entry makes only that id ERR_CORRUPT_RECORD; its neighbours stay intact and the id can be written again', async () => {
    const pristine = join(directory, 'pristine.dbm');
    const damaged = generateSessionId();
    const neighbour = generateSessionId();
    const expiresAt = Date.now() + HOUR_MS;
    const store = await DbmStore.open({ path: pristine });
    await store.set(damaged, { data: bytesOf(1, 20), expiresAt });
    await store.set(neighbour, { data: bytesOf(2, 20), expiresAt });
    await store.close();
    const at = entryOffset(pristine, damaged);

    const entry = readFileSync(pristine).subarray(at, at + ENTRY_BYTES);
    const neighbourOffset = readFileSync(pristine).readDoubleLE(
      entryOffset(pristine, neighbour) + 8,
    );
    // Every byte flipped alone, then whole fields rewritten to other plausible values: a larger
    // size class, and a pointer to the neighbour's record and into its middle.
    const damages: { name: string; bytes: Buffer }[] = [];
    for (let byte = 0; byte < ENTRY_BYTES; byte++) {
      for (const mask of [0x01, 0x80]) {
        const bytes = Buffer.from(entry);
        bytes[byte] = (bytes[byte] as number) ^ mask;
        damages.push({ name: `byte ${byte} ^ ${mask}`, bytes });
      }
    }
    const field = (name: string, write: (bytes: Buffer) => void) => {
      const bytes = Buffer.from(entry);
      write(bytes);
      damages.push({ name, bytes });
    };
    field('extent 4096', (bytes) => bytes.writeUInt32LE(PAGE_BYTES, 4));
    field('offset of the neighbour', (bytes) => bytes.writeDoubleLE(neighbourOffset, 8));
    field('offset inside the neighbour', (bytes) => bytes.writeDoubleLE(neighbourOffset + 64, 8));

    const wrong: string[] = [];
    for (const [n, { name, bytes }] of damages.entries()) {
      {
        const path = join(directory, `damage-${n}.dbm`);
        copyFileSync(pristine, path);
        const fd = openSync(path, 'r+');
        writeSync(fd, bytes, 0, bytes.length, at);
        closeSync(fd);
        const reopened = await DbmStore.open({ path });
        try {
          const got = await outcomeOf(reopened.get(damaged));
          if (got !== 'ERR_CORRUPT_RECORD') wrong.push(`${name}: get gave ${JSON.stringify(got)}`);
          // A rewrite of the damaged id fills a whole page, so it would be written in place over an entry that claims a page.
          await reopened.set(damaged, { data: bytesOf(3, 4000), expiresAt });
          const rewritten = await reopened.get(damaged);
          if (!Buffer.from(rewritten?.data ?? []).equals(Buffer.from(bytesOf(3, 4000)))) {
            wrong.push(`${name}: rewritten record reads back wrong`);
          }
          await reopened.set(generateSessionId(), { data: bytesOf(4, 3000), expiresAt });
          await reopened.delete(damaged);
          // Reuses whatever extents those writes freed.
          for (const seed of [5, 6, 7]) {
            await reopened.set(generateSessionId(), { data: bytesOf(seed, 20), expiresAt });
          }
          const after = await outcomeOf(reopened.get(neighbour));
          const neighbourData = (after as { data?: Uint8Array } | undefined)?.data;
          if (!Buffer.from(neighbourData ?? []).equals(Buffer.from(bytesOf(2, 20)))) {
            wrong.push(
              `${name}: the neighbour gave ${typeof after === 'string' ? after : neighbourData === undefined ? 'nothing' : 'other data'}`,
            );
          }
        } catch (error) {
          wrong.push(`${name}: ${(error as Error).message}`);
        } finally {
          await reopened.close();
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('a bucket page whose entry count is damaged loses its entries as damaged records, never hiding one or showing a vacated slot; the bucket takes writes again', async () => {
    const pristine = join(directory, 'count.dbm');
    const gone = generateSessionId();
    const kept = generateSessionId();
    const expiresAt = Date.now() + HOUR_MS;
    const store = await DbmStore.open({ path: pristine });
    await store.set(gone, { data: bytesOf(8, 20), expiresAt });
    await store.set(kept, { data: bytesOf(9, 20), expiresAt });
    await store.close();
    const at = entryOffset(pristine, kept);
    const page = DATA_START + Math.floor((at - DATA_START) / PAGE_BYTES) * PAGE_BYTES;
    const count = readFileSync(pristine).readUInt16LE(page + 8);

    const outcomes: string[] = [];
    for (const delta of [-1, 1]) {
      const path = join(directory, `count${delta}.dbm`);
      copyFileSync(pristine, path);
      const field = Buffer.alloc(2);
      field.writeUInt16LE(count + delta);
      const fd = openSync(path, 'r+');
      writeSync(fd, field, 0, 2, page + 8);
      closeSync(fd);
      const reopened = await DbmStore.open({ path });
      try {
        outcomes.push(
          `count ${delta > 0 ? '+' : ''}${delta}: ${await outcomeOf(reopened.get(kept))}`,
        );
        const record = { data: bytesOf(10, 20), expiresAt };
        expect(await reopened.set(kept, record, { only: 'absent' })).toBe(true);
        expect(await reopened.get(kept)).toEqual(record);
      } finally {
        await reopened.close();
      }
    }
    expect(outcomes).toEqual(['count -1: ERR_CORRUPT_RECORD', 'count +1: ERR_CORRUPT_RECORD']);
  });

  for (const damage of [
    'a flipped byte in one bucket page',
    'the file cut short before its bucket pages',
  ] as const) {
    it(`with ${damage}, the damaged buckets' sessions read as damaged records and the others stay; count, ids and sweep run, and new sessions are stored through the splits that follow`, async () => {
      const path = join(directory, damage.startsWith('a flipped') ? 'flipped.dbm' : 'cut.dbm');
      const expiresAt = Date.now() + HOUR_MS;
      const ids = Array.from({ length: 100 }, () => generateSessionId());
      const store = await DbmStore.open({ path });
      for (const [i, id] of ids.entries()) await store.set(id, { data: bytesOf(i, 30), expiresAt });
      await store.close();
      const fd = openSync(path, 'r+');
      try {
        if (damage.startsWith('a flipped')) {
          // The first page of the table: bucket 0's primary page, its entry count.
          const field = Buffer.alloc(1);
          readSync(fd, field, 0, 1, DATA_START + 8);
          field[0] = (field[0] ?? 0) ^ 0x40;
          writeSync(fd, field, 0, 1, DATA_START + 8);
        } else {
          ftruncateSync(fd, DATA_START);
        }
      } finally {
        closeSync(fd);
      }

      const reopened = await DbmStore.open({ path });
      try {
        const outcomes = new Map<unknown, number>();
        for (const [i, id] of ids.entries()) {
          const got = await outcomeOf(reopened.get(id));
          const seen =
            typeof got === 'object' && got !== null
              ? Buffer.from((got as { data: Uint8Array }).data).equals(Buffer.from(bytesOf(i, 30)))
                ? 'intact'
                : 'wrong'
              : got;
          outcomes.set(seen, (outcomes.get(seen) ?? 0) + 1);
        }
        const lost = outcomes.get('ERR_CORRUPT_RECORD') ?? 0;
        const intact = outcomes.get('intact') ?? 0;
        expect(
          [...outcomes.keys()].filter((key) => key !== 'intact' && key !== 'ERR_CORRUPT_RECORD'),
        ).toEqual([]);
        if (damage.startsWith('a flipped')) {
          expect(lost).toBeGreaterThan(0);
          expect(intact).toBeGreaterThan(ids.length / 2);
        } else {
          expect(lost).toBe(ids.length);
        }
        expect(await reopened.count()).toBe(intact);
        const listed: string[] = [];
        for await (const id of reopened.ids()) listed.push(id);
        expect(listed).toHaveLength(intact);
        expect((await reopened.sweep({})).done).toBe(true);
        // Enough new sessions that the table splits through the damaged bucket.
        const added = Array.from({ length: 1500 }, () => generateSessionId());
        for (const id of added) {
          expect(
            await reopened.set(id, { data: bytesOf(1, 30), expiresAt }, { only: 'absent' }),
          ).toBe(true);
        }
        expect(await reopened.count()).toBe(intact + added.length);
      } finally {
        await reopened.close();
      }
      const again = await DbmStore.open({ path });
      try {
        for (const id of ids)
          expect(['intact', 'absent']).toContain(
            await again.get(id).then((record) => (record === undefined ? 'absent' : 'intact')),
          );
      } finally {
        await again.close();
      }
    });
  }
});
