import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SessionRecord } from '@sessile/core';
import { FileStore } from '@sessile/file';
import type { CheckOutcome } from '../results.js';
import {
  describeOutcome,
  fixtures,
  type Mutation,
  mutations,
  othersReadable,
  property,
  readOutcome,
  sameRecord,
  withoutVictim,
} from './common.js';

/** The header's expiresAt (offsets 8..15) is outside the record checksum, by design. */
const EXPIRY_FIELD = [8, 16] as const;

/** Record files: bytes written straight into `<path>/<shard>/<id>`, read through the store. */
export async function fuzzFileRecords(
  dir: string,
  runs: number,
  seed: number,
): Promise<CheckOutcome> {
  const path = join(dir, 'files');
  const store = await FileStore.open({ path });
  const { victim, records } = fixtures(Date.now());
  for (const [id, record] of records) await store.set(id, record);
  const file = join(path, victim.slice(0, 1), victim);
  const original = new Uint8Array(await readFile(file));
  const expected = records.get(victim) as SessionRecord;
  const others = withoutVictim(records, victim);
  let expiryChanged = 0;
  try {
    return await property(
      'file: record files',
      mutations(original),
      async (mutation: Mutation) => {
        await writeFile(file, mutation.bytes);
        const outcome = await readOutcome(store, victim);
        await writeFile(file, original);
        let expiry = false;
        for (let offset = EXPIRY_FIELD[0]; offset < EXPIRY_FIELD[1]; offset++) {
          if (mutation.changed(offset) && offset < mutation.bytes.length) expiry = true;
        }
        if (outcome.kind === 'corrupt') return othersReadable(store, others);
        if (outcome.kind === 'record') {
          if (sameRecord(outcome.record, expected)) return othersReadable(store, others);
          if (expiry && outcome.record.data.length === expected.data.length) {
            expiryChanged++;
            return othersReadable(store, others);
          }
        }
        if (outcome.kind === 'absent' && expiry) {
          expiryChanged++;
          return othersReadable(store, others);
        }
        return `${mutation.what}: get() gave ${describeOutcome(outcome)}`;
      },
      { runs, seed, notes: [] },
    ).then((outcome) => {
      outcome.notes?.push(
        `${expiryChanged} cases changed only the header's expiresAt, which the CRC does not cover (documented)`,
      );
      return outcome;
    });
  } finally {
    await store.close();
  }
}
