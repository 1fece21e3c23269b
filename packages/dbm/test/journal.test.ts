import { readFileSync, writeFileSync } from 'node:fs';
import { generateSessionId } from '@sessile/core';
import { describe, expect, it } from 'vitest';
import {
  decodeHeader,
  decodeJournal,
  decodeJournalHead,
  encodeHeader,
  HEADER_USED_BYTES,
  JOURNAL_HEAD_BYTES,
  JOURNAL_OFFSET,
  PAGE_BYTES,
} from '../src/format.js';
import { DbmStore } from '../src/index.js';
import { useTestPaths } from './helpers.js';

const { newPath } = useTestPaths('journal');

async function ids(store: DbmStore): Promise<string[]> {
  const all: string[] = [];
  for await (const id of store.ids()) all.push(id);
  return all;
}

/**
 * A file with one record (`kept`) committed, then a second (`interrupted`): the bytes after the
 * first commit (`before`) and after the second (`after`), from which a test builds the file a kill
 * during the second would have left.
 */
async function twoCommits(expiresAt: number) {
  const path = newPath();
  const [kept, interrupted] = [generateSessionId(), generateSessionId()];
  const write = async (id: string, fill: number) => {
    const store = await DbmStore.open({ path });
    await store.set(id, { data: new Uint8Array(300).fill(fill), expiresAt });
    await store.close();
  };
  await write(kept, 1);
  const before = readFileSync(path);
  await write(interrupted, 2);
  return { path, kept, interrupted, before, after: readFileSync(path) };
}

describe('DbmStore journal', () => {
  const expiresAt = Date.now() + 3_600_000;

  it('a journal cut at a page boundary, whose tail is the previous journal, is not replayed', async () => {
    const { path, kept, interrupted, before, after } = await twoCommits(expiresAt);
    // Both changes journal one bucket page and the header, so both journals span the same two
    // pages of the file. A SIGKILL between those pages leaves the new head and bucket page before
    // the old journal's tail, which holds the old header image with its own valid CRC.
    const torn = Buffer.concat([before, after.subarray(before.length)]);
    after.copy(torn, JOURNAL_OFFSET, JOURNAL_OFFSET, JOURNAL_OFFSET + PAGE_BYTES);
    expect(torn.equals(after)).toBe(false);
    writeFileSync(path, torn);

    const store = await DbmStore.open({ path });
    try {
      expect(store.stats().journalRecoveries).toBe(0);
      expect(await store.get(interrupted)).toBeUndefined();
      expect(Buffer.from((await store.get(kept))?.data ?? []).equals(Buffer.alloc(300, 1))).toBe(
        true,
      );
      expect(await ids(store)).toEqual([kept]);
      expect(await store.count()).toBe(1);
      expect(await store.set(interrupted, { data: new Uint8Array(10).fill(3), expiresAt })).toBe(
        true,
      );
      expect(await store.count()).toBe(2);
    } finally {
      await store.close();
    }
  });

  it('a journal whose header image was swapped for another of the same sequence number and length is not replayed, though its CRC-32 would hold', async () => {
    const { path, kept, interrupted, before, after } = await twoCommits(expiresAt);
    // The file as a writer killed after its journal was complete, before applying any of it,
    // leaves it: the old file with the new journal.
    const head = decodeJournalHead(after.subarray(JOURNAL_OFFSET));
    if (head === undefined) throw new Error('no journal in the file');
    const journalEnd = JOURNAL_OFFSET + JOURNAL_HEAD_BYTES + head.bodyBytes;
    const crashed = Buffer.concat([before, after.subarray(before.length)]);
    after.copy(crashed, JOURNAL_OFFSET, JOURNAL_OFFSET, journalEnd);
    const writes = decodeJournal(crashed.subarray(JOURNAL_OFFSET), head);
    const last = writes?.[writes.length - 1];
    if (last === undefined || last.bytes.length !== HEADER_USED_BYTES) {
      throw new Error('the journal does not end with a header image');
    }
    // Power loss tore it: its header image is another one of the same sequence number (as a
    // second journal of that number, written after the first was torn and never applied,
    // leaves). The image ends in its own CRC-32, so a CRC-32 over the journal cannot tell.
    const image = decodeHeader(Buffer.from(last.bytes));
    if (image.kind !== 'ok') throw new Error('the header image does not decode');
    image.header.recordCount += 7;
    const forged = encodeHeader(image.header).subarray(0, HEADER_USED_BYTES);
    const imageAt = journalEnd - HEADER_USED_BYTES;
    const torn = Buffer.from(crashed);
    forged.copy(torn, imageAt);
    expect(torn.equals(crashed)).toBe(false);

    writeFileSync(path, crashed);
    const replayed = await DbmStore.open({ path });
    try {
      expect(replayed.stats().journalRecoveries).toBe(1);
      expect(await ids(replayed)).toEqual(expect.arrayContaining([kept, interrupted]));
    } finally {
      await replayed.close();
    }

    writeFileSync(path, torn);
    const store = await DbmStore.open({ path });
    try {
      expect(store.stats().journalRecoveries).toBe(0);
      expect(await store.get(interrupted)).toBeUndefined();
      expect(await ids(store)).toEqual([kept]);
      expect((await store.info()).entries).toBe(1);
    } finally {
      await store.close();
    }
  });
});
