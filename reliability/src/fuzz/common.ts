import { isSessionError, type SessionRecord, type SessionStore } from '@sessile/core';
import fc from 'fast-check';
import { equalBytes } from '../crash/workload.js';
import type { CheckOutcome } from '../results.js';

/** What reading one id through the store gave. */
export type ReadOutcome =
  | { kind: 'record'; record: SessionRecord }
  | { kind: 'absent' }
  | { kind: 'corrupt' }
  | { kind: 'error'; message: string }
  | { kind: 'hang' };

/** A read that takes longer than this counts as a hang. */
const HANG_MS = 10_000;

export async function readOutcome(store: SessionStore, id: string): Promise<ReadOutcome> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<ReadOutcome>((resolve) => {
    timer = setTimeout(() => resolve({ kind: 'hang' }), HANG_MS);
  });
  const read = store.get(id).then(
    (record): ReadOutcome =>
      record === undefined ? { kind: 'absent' } : { kind: 'record', record },
    (error: unknown): ReadOutcome =>
      isSessionError(error) && error.code === 'ERR_CORRUPT_RECORD'
        ? { kind: 'corrupt' }
        : {
            kind: 'error',
            message: `${isSessionError(error) ? `${error.code} ` : ''}${String(error)}`,
          },
  );
  try {
    return await Promise.race([read, hang]);
  } finally {
    clearTimeout(timer);
  }
}

export function describeOutcome(outcome: ReadOutcome): string {
  switch (outcome.kind) {
    case 'record':
      return `a record of ${outcome.record.data.length} bytes expiring at ${outcome.record.expiresAt}`;
    case 'error':
      return `an error: ${outcome.message}`;
    case 'hang':
      return `no answer in ${HANG_MS} ms`;
    default:
      return outcome.kind;
  }
}

export function sameRecord(left: SessionRecord, right: SessionRecord): boolean {
  return left.expiresAt === right.expiresAt && equalBytes(left.data, right.data);
}

/** Bytes derived from an original, and which offsets of it changed (all of them: replaced). */
export interface Mutation {
  bytes: Uint8Array;
  changed: (offset: number) => boolean;
  what: string;
}

/** Bit flips, truncation, appended garbage, or entirely random bytes, as fast-check values. */
export function mutations(original: Uint8Array): fc.Arbitrary<Mutation> {
  const flips = fc
    .array(fc.record({ at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) }), {
      minLength: 1,
      maxLength: 6,
    })
    .map((list): Mutation => {
      const bytes = Uint8Array.from(original);
      const offsets = new Set<number>();
      for (const { at, mask } of list) {
        const offset = at % bytes.length;
        bytes[offset] = (bytes[offset] as number) ^ mask;
        offsets.add(offset);
      }
      // Two flips of one byte may cancel out: only offsets that really differ count.
      for (const offset of [...offsets])
        if (bytes[offset] === original[offset]) offsets.delete(offset);
      return { bytes, changed: (offset) => offsets.has(offset), what: `flipped ${[...offsets]}` };
    });
  const truncated = fc.nat({ max: Math.max(0, original.length - 1) }).map(
    (length): Mutation => ({
      bytes: original.slice(0, length),
      changed: (offset) => offset >= length,
      what: `truncated to ${length}`,
    }),
  );
  const extended = fc.uint8Array({ minLength: 1, maxLength: 64 }).map((tail): Mutation => {
    const bytes = new Uint8Array(original.length + tail.length);
    bytes.set(original);
    bytes.set(tail, original.length);
    return {
      bytes,
      changed: (offset) => offset >= original.length,
      what: `${tail.length} bytes appended`,
    };
  });
  const random = fc
    .uint8Array({ maxLength: 2048 })
    .map(
      (bytes): Mutation => ({ bytes, changed: () => true, what: `${bytes.length} random bytes` }),
    );
  return fc.oneof(flips, flips, truncated, extended, random);
}

/**
 * Runs `check` on `runs` values of `values`; a returned string is a failure. fast-check stops at
 * the first failure and reports its seed and counterexample.
 */
export async function property<Value>(
  name: string,
  values: fc.Arbitrary<Value>,
  check: (value: Value) => Promise<string | undefined>,
  options: { runs: number; seed: number; notes?: string[] },
): Promise<CheckOutcome> {
  const outcome: CheckOutcome = { name, cases: 0, failures: [], notes: options.notes ?? [] };
  try {
    await fc.assert(
      fc.asyncProperty(values, async (value) => {
        outcome.cases++;
        const failure = await check(value);
        if (failure !== undefined) throw new Error(failure);
      }),
      { numRuns: options.runs, seed: options.seed, endOnFailure: true },
    );
  } catch (error) {
    outcome.failures.push(
      String(error instanceof Error ? error.message : error)
        .split('\n')
        .slice(0, 6)
        .join(' '),
    );
  }
  return outcome;
}

/** Checks that each of `records` still reads back exactly: corrupt bytes stay with their id. */
export async function othersReadable(
  store: SessionStore,
  records: Map<string, SessionRecord>,
): Promise<string | undefined> {
  for (const [id, expected] of records) {
    const outcome = await readOutcome(store, id);
    if (outcome.kind !== 'record' || !sameRecord(outcome.record, expected)) {
      return `the untouched ${id} read as ${describeOutcome(outcome)}`;
    }
  }
  return undefined;
}

/** A victim record and three neighbours with distinct, recognisable bytes. */
export function fixtures(now: number): { victim: string; records: Map<string, SessionRecord> } {
  const records = new Map<string, SessionRecord>();
  for (const [n, name] of ['victim', 'left', 'right', 'other'].entries()) {
    const data = new Uint8Array(150 + n * 40).map((_, i) => (i * 31 + n * 7) & 255);
    records.set(`fuzz-${name}-session-0001`, { data, expiresAt: now + 86_400_000 + n });
  }
  return { victim: 'fuzz-victim-session-0001', records };
}

export function withoutVictim(
  records: Map<string, SessionRecord>,
  victim: string,
): Map<string, SessionRecord> {
  return new Map([...records].filter(([id]) => id !== victim));
}
