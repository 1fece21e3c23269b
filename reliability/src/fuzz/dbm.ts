import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isSessionError, type SessionRecord } from '@sessile/core';
import { DbmStore } from '@sessile/dbm';
import fc from 'fast-check';
import type { CheckOutcome } from '../results.js';
import {
  describeOutcome,
  fixtures,
  type Mutation,
  mutations,
  property,
  readOutcome,
  sameRecord,
} from './common.js';

const PAGE_BYTES = 4096;
const JOURNAL_START = PAGE_BYTES;
const JOURNAL_BYTES = 1024 * 1024;
const DATA_START = JOURNAL_START + JOURNAL_BYTES;
/** A record extent's fixed header, before the id. */
const EXTENT_HEADER_BYTES = 28;

interface DbmFixture {
  path: string;
  original: Uint8Array;
  victim: string;
  records: Map<string, SessionRecord>;
  extent: { start: number; end: number };
}

async function prepare(dir: string): Promise<DbmFixture> {
  const path = join(dir, 'sessions.dbm');
  const store = await DbmStore.open({ path });
  const { victim, records } = fixtures(Date.now());
  for (const [id, record] of records) await store.set(id, record);
  await store.close();
  const original = new Uint8Array(await readFile(path));
  const idAt = Buffer.from(original).indexOf(Buffer.from(victim, 'ascii'), DATA_START);
  const start = idAt - EXTENT_HEADER_BYTES;
  if (idAt < 0 || original[start] !== 0x52 || original[start + 1] !== 0x53) {
    throw new Error(`the victim's record extent was not found in ${path}`);
  }
  const dataLength = Buffer.from(original).readUInt32LE(start + 4);
  const end = idAt + victim.length + dataLength;
  return { path, original, victim, records, extent: { start, end } };
}

/** Opens the mutated file and reads every fixture; a returned string is a failure. */
async function readBack(
  fixture: DbmFixture,
  bytes: Uint8Array,
  rule: (id: string, outcome: Awaited<ReturnType<typeof readOutcome>>) => string | undefined,
): Promise<string | undefined> {
  await writeFile(fixture.path, bytes);
  let store: DbmStore;
  try {
    store = await DbmStore.open({ path: fixture.path, globalLockWaitMs: 5000 });
  } catch (error) {
    return isSessionError(error) ? undefined : `open threw ${String(error)}`;
  }
  try {
    for (const id of fixture.records.keys()) {
      const failure = rule(id, await readOutcome(store, id));
      if (failure !== undefined) return failure;
    }
    return undefined;
  } finally {
    await store.close().catch(() => {});
    await writeFile(fixture.path, fixture.original);
  }
}

/** dbm: record extents, every page, and the journal, each mutated in the file itself. */
export async function fuzzDbm(dir: string, runs: number, seed: number): Promise<CheckOutcome[]> {
  const fixture = await prepare(dir);
  const { extent, original, victim, records } = fixture;
  const expected = (id: string) => records.get(id) as SessionRecord;
  const extentBytes = original.slice(extent.start, extent.end);

  const extents = await property(
    'dbm: record extents',
    mutations(extentBytes).filter((m) => m.bytes.length === extentBytes.length),
    (mutation: Mutation) => {
      const bytes = Uint8Array.from(original);
      bytes.set(mutation.bytes, extent.start);
      return readBack(fixture, bytes, (id, outcome) => {
        if (outcome.kind === 'record' && sameRecord(outcome.record, expected(id))) return undefined;
        if (id === victim && outcome.kind === 'corrupt') return undefined;
        return `${mutation.what}: get(${id}) gave ${describeOutcome(outcome)}`;
      });
    },
    { runs, seed },
  );

  let damaged = 0;
  const anywhere = await property(
    'dbm: any byte of the file (header, buckets, free lists)',
    // The header page and everything after the journal: buckets, extents, free lists.
    fc.array(
      fc.record({
        at: fc.nat({ max: PAGE_BYTES + original.length - DATA_START - 1 }),
        mask: fc.integer({ min: 1, max: 255 }),
      }),
      { minLength: 1, maxLength: 4 },
    ),
    (flips) => {
      const bytes = Uint8Array.from(original);
      for (const { at, mask } of flips) {
        const offset = at < PAGE_BYTES ? at : at - PAGE_BYTES + DATA_START;
        bytes[offset] = (bytes[offset] as number) ^ mask;
      }
      return readBack(fixture, bytes, (id, outcome) => {
        if (outcome.kind === 'record' && sameRecord(outcome.record, expected(id))) return undefined;
        // Every bucket entry and page header carries a check, so a flipped entry is reported
        // for its id, never read as absent.
        if (outcome.kind === 'corrupt') return undefined;
        // A damaged bucket page is damage to the file, not to one record: a clear error for
        // every id that hashes to it ("is damaged: bad overflow page pointer").
        if (
          outcome.kind === 'error' &&
          outcome.message.includes('ERR_STORE_IO') &&
          outcome.message.includes('damaged')
        ) {
          damaged++;
          return undefined;
        }
        return `flips ${JSON.stringify(flips)}: get(${id}) gave ${describeOutcome(outcome)}`;
      });
    },
    { runs, seed },
  );
  anywhere.notes?.push(
    `${damaged} reads rejected with ERR_STORE_IO "damaged" (a bucket page's own pointers flipped), not ERR_CORRUPT_RECORD`,
  );

  const journal = await property(
    'dbm: journal (random bytes where the last commit is journaled)',
    fc.uint8Array({ minLength: 1, maxLength: 8192 }),
    (garbage) => {
      const bytes = Uint8Array.from(original);
      bytes.set(garbage, JOURNAL_START);
      return readBack(fixture, bytes, (id, outcome) =>
        outcome.kind === 'record' && sameRecord(outcome.record, expected(id))
          ? undefined
          : `${garbage.length} journal bytes: get(${id}) gave ${describeOutcome(outcome)}`,
      );
    },
    { runs, seed },
  );
  return [extents, anywhere, journal];
}
