import type { SessionRecord } from '@sessile/core';
import { between, mixSeed, seededRandom } from '../random.js';

/**
 * The crash workload is deterministic: operation `step` on session `index` of a round follows
 * from the round's seed and the state the previous steps left. The child runs it; the parent
 * replays it, so an acknowledgement need only name (index, step) and a lost message can never
 * make the parent expect a state the child never wrote.
 */
export type OperationKind = 'create' | 'update' | 'touch' | 'delete' | 'create-existing';

export interface Operation {
  kind: OperationKind;
  /** The record after the operation (undefined: absent). */
  after: SessionRecord | undefined;
  /** What the store's call resolves to. */
  result: boolean;
}

export interface RoundPlan {
  seed: number;
  /** Prefix of this round's session ids; each id is `${prefix}${index}`. */
  prefix: string;
  /** Expiry times count from here, a day ahead, so nothing expires during a run. */
  baseTime: number;
}

export function sessionId(plan: RoundPlan, index: number): string {
  return `${plan.prefix}${String(index).padStart(6, '0')}`;
}

/** The bytes of session `index` after step `step`: a readable header, then seeded filler. */
export function payload(plan: RoundPlan, index: number, step: number): Uint8Array {
  const random = seededRandom(mixSeed(plan.seed, index, step, 7));
  const header = new TextEncoder().encode(`{"i":${index},"k":${step}}`);
  const bytes = new Uint8Array(header.length + between(random, 0, 3000));
  bytes.set(header);
  for (let position = header.length; position < bytes.length; position++) {
    bytes[position] = Math.floor(random() * 256);
  }
  return bytes;
}

function expiresAt(plan: RoundPlan, index: number, step: number): number {
  return plan.baseTime + 86_400_000 + step * 1000 + index;
}

/** Operation `step` on session `index`, given the record the previous steps left. */
export function operation(
  plan: RoundPlan,
  index: number,
  step: number,
  before: SessionRecord | undefined,
): Operation {
  if (before === undefined) {
    return {
      kind: 'create',
      after: { data: payload(plan, index, step), expiresAt: expiresAt(plan, index, step) },
      result: true,
    };
  }
  const roll = seededRandom(mixSeed(plan.seed, index, step, 3))();
  if (roll < 0.4) {
    return {
      kind: 'update',
      after: { data: payload(plan, index, step), expiresAt: expiresAt(plan, index, step) },
      result: true,
    };
  }
  if (roll < 0.7) {
    return {
      kind: 'touch',
      after: { data: before.data, expiresAt: expiresAt(plan, index, step) },
      result: true,
    };
  }
  if (roll < 0.9) return { kind: 'delete', after: undefined, result: true };
  return { kind: 'create-existing', after: before, result: false };
}

export function sameRecord(
  actual: SessionRecord | undefined,
  expected: SessionRecord | undefined,
): boolean {
  if (actual === undefined || expected === undefined) return actual === expected;
  return actual.expiresAt === expected.expiresAt && equalBytes(actual.data, expected.data);
}

export function equalBytes(left: Uint8Array, right: Uint8Array): boolean {
  if (left.length !== right.length) return false;
  for (let position = 0; position < left.length; position++) {
    if (left[position] !== right[position]) return false;
  }
  return true;
}
