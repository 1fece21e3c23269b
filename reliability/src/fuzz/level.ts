import { join } from 'node:path';
import type { SessionRecord } from '@sessile/core';
import { LevelStore } from '@sessile/level';
import { ClassicLevel } from 'classic-level';
import fc from 'fast-check';
import type { CheckOutcome } from '../results.js';
import {
  describeOutcome,
  fixtures,
  mutations,
  othersReadable,
  property,
  readOutcome,
  sameRecord,
  withoutVictim,
} from './common.js';

const FORMAT = 0x01;

/** What the documented format says `value` holds: a record, expired, or nothing readable. */
function decoded(value: Uint8Array): SessionRecord | 'expired' | 'unreadable' {
  if (value.length < 9 || value[0] !== FORMAT) return 'unreadable';
  const expiresAt = Buffer.from(value).readDoubleBE(1);
  if (!(expiresAt > Date.now())) return 'expired';
  return { data: value.slice(9), expiresAt };
}

/** Level values: raw classic-level puts under the record's key, read through the store. */
export async function fuzzLevelValues(
  dir: string,
  runs: number,
  seed: number,
): Promise<CheckOutcome> {
  const path = join(dir, 'level');
  let store = await LevelStore.open({ path });
  const { victim, records } = fixtures(Date.now());
  for (const [id, record] of records) await store.set(id, record);
  await store.close();
  const key = Buffer.from(`r${victim}`, 'ascii');
  const raw = new ClassicLevel<Buffer, Buffer>(path, {
    keyEncoding: 'buffer',
    valueEncoding: 'buffer',
  });
  const original = new Uint8Array((await raw.get(key)) as Buffer);
  await raw.close();
  const others = withoutVictim(records, victim);
  try {
    return await property(
      'level: record values',
      fc.oneof(
        mutations(original),
        // Well-formed values with any expiresAt, so the decoder's accepting path is fuzzed too.
        fc.tuple(fc.double(), fc.uint8Array({ maxLength: 256 })).map(([expiresAt, data]) => {
          const bytes = Buffer.alloc(9 + data.length);
          bytes[0] = FORMAT;
          bytes.writeDoubleBE(expiresAt, 1);
          bytes.set(data, 9);
          return { bytes: new Uint8Array(bytes), what: `format 1, expiresAt ${expiresAt}` };
        }),
      ),
      async (mutation) => {
        const db = new ClassicLevel<Buffer, Buffer>(path, {
          keyEncoding: 'buffer',
          valueEncoding: 'buffer',
        });
        await db.put(key, Buffer.from(mutation.bytes));
        await db.close();
        store = await LevelStore.open({ path });
        const outcome = await readOutcome(store, victim);
        const expected = decoded(mutation.bytes);
        let ok: boolean;
        if (expected === 'unreadable') ok = outcome.kind === 'corrupt';
        else if (expected === 'expired')
          ok = outcome.kind === 'absent' || outcome.kind === 'corrupt';
        else
          ok =
            (outcome.kind === 'record' && sameRecord(outcome.record, expected)) ||
            outcome.kind === 'corrupt';
        const failure = ok
          ? await othersReadable(store, others)
          : `${mutation.what}: get() gave ${describeOutcome(outcome)}, the format says ${typeof expected === 'string' ? expected : 'a record'}`;
        await store.close();
        return failure;
      },
      { runs, seed },
    );
  } finally {
    await store.close();
  }
}
