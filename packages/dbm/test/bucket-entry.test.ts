import {
  closeSync,
  copyFileSync,
  mkdtempSync,
  openSync,
  readFileSync,
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

  it('a bucket page whose entry count is damaged is refused with ERR_STORE_IO naming the file; it never hides an entry or shows a vacated slot', async () => {
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
        const got = await reopened.get(kept).then(
          (record) => (record === undefined ? 'absent' : 'a record'),
          (error: Error) =>
            error.message.includes(path) ? (error as { code?: string }).code : error.message,
        );
        outcomes.push(`count ${delta > 0 ? '+' : ''}${delta}: ${got}`);
      } finally {
        await reopened.close();
      }
    }
    expect(outcomes).toEqual(['count -1: ERR_STORE_IO', 'count +1: ERR_STORE_IO']);
  });
});
