import { join } from 'node:path';
import type { SessionRecord } from '@sessile/core';
import { SqliteStore } from '@sessile/sqlite';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import type { CheckOutcome } from '../results.js';
import {
  describeOutcome,
  fixtures,
  othersReadable,
  property,
  readOutcome,
  sameRecord,
  withoutVictim,
} from './common.js';

const DAY_MS = 86_400_000;

/** Values another tool could leave in a column: blobs, text, integers, reals. */
function sqlValue(now: number): fc.Arbitrary<Buffer | string | number | bigint> {
  return fc.oneof(
    fc.uint8Array({ maxLength: 512 }).map((bytes) => Buffer.from(bytes)),
    fc.string({ maxLength: 64 }),
    fc.string({ unit: 'binary', maxLength: 32 }),
    fc
      .integer({ min: -DAY_MS, max: DAY_MS })
      .map((delta) => now + Math.sign(delta || 1) * DAY_MS + delta),
    fc.double({ noNaN: true }),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    fc.constantFrom('', '1e999', 'NaN', String(now + 2 * DAY_MS)),
  );
}

/** SQLite rows: data and expires_at rewritten by a raw UPDATE, read through the store. */
export async function fuzzSqliteRows(
  dir: string,
  runs: number,
  seed: number,
): Promise<CheckOutcome> {
  const path = join(dir, 'sessions.sqlite');
  const store = await SqliteStore.open({ path });
  const now = Date.now();
  const { victim, records } = fixtures(now);
  for (const [id, record] of records) await store.set(id, record);
  const raw = new Database(path);
  raw.defaultSafeIntegers(true);
  const update = raw.prepare('UPDATE sessions SET data = ?, expires_at = ? WHERE id = ?');
  const stored = raw.prepare(
    'SELECT typeof(data) AS dataType, data, typeof(expires_at) AS expiresType, expires_at AS expiresAt, expires_at > ? AS live FROM sessions WHERE id = ?',
  );
  const others = withoutVictim(records, victim);
  try {
    return await property(
      'sqlite: rows',
      fc.tuple(sqlValue(now), sqlValue(now)),
      async ([data, expiresAt]) => {
        update.run(data, expiresAt, victim);
        const row = stored.get(Date.now(), victim) as {
          dataType: string;
          data: unknown;
          expiresType: string;
          expiresAt: unknown;
          live: bigint;
        };
        const outcome = await readOutcome(store, victim);
        const numeric = row.expiresType === 'integer' || row.expiresType === 'real';
        let allowed: string;
        if (row.live === 0n) {
          allowed = outcome.kind === 'absent' ? 'ok' : 'absent (expired by SQL)';
        } else if (row.dataType === 'blob' && numeric) {
          const record: SessionRecord = {
            data: new Uint8Array(row.data as Buffer),
            expiresAt: Number(row.expiresAt),
          };
          // Integers beyond 2^53 cannot be an exact expiresAt; refusing them is right too.
          allowed =
            (outcome.kind === 'record' && sameRecord(outcome.record, record)) ||
            outcome.kind === 'corrupt'
              ? 'ok'
              : `the row's bytes expiring at ${record.expiresAt}`;
        } else {
          allowed = outcome.kind === 'corrupt' ? 'ok' : 'ERR_CORRUPT_RECORD';
        }
        if (allowed !== 'ok') {
          return `data ${row.dataType}, expires_at ${row.expiresType} ${String(row.expiresAt)}: get() gave ${describeOutcome(outcome)}, expected ${allowed}`;
        }
        return othersReadable(store, others);
      },
      { runs, seed },
    );
  } finally {
    raw.close();
    await store.close();
  }
}
