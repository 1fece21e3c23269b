import { randomBytes } from 'node:crypto';
import { isSessionError, type SessionRecord, type SessionStore } from '@sessile/core';
import { yieldToEventLoop } from '@sessile/core/store';
import { sameRecord } from '../fuzz/common.js';

/** What traffic against a disrupted server did: per id, the states a read may find. */
export interface Traffic {
  operations: number;
  acknowledged: number;
  /** Rejections by code (anything but a SessionError counts under its message). */
  failures: Map<string, number>;
  /** The longest any rejected write took to reject. */
  slowestRejectionMs: number;
  states: Map<string, (SessionRecord | undefined)[]>;
}

const LANES = 8;
const IDS_PER_LANE = 8;

function record(): SessionRecord {
  return { data: new Uint8Array(randomBytes(64)), expiresAt: Date.now() + 3_600_000 };
}

/**
 * Writes from eight lanes while `disrupt` runs, for at least `durationMs` and until `disrupt`
 * settles. A write that resolved leaves exactly its state; one that rejected leaves the previous
 * state or its own, unknown which.
 */
export async function runTraffic(
  store: SessionStore,
  tag: string,
  durationMs: number,
  disrupt: () => Promise<void>,
): Promise<Traffic> {
  const traffic: Traffic = {
    operations: 0,
    acknowledged: 0,
    failures: new Map(),
    slowestRejectionMs: 0,
    states: new Map(),
  };
  const until = Date.now() + durationMs;
  let disrupting = true;
  const disruption = disrupt().finally(() => {
    disrupting = false;
  });
  const lane = async (number: number) => {
    for (let turn = 0; disrupting || Date.now() < until; turn++) {
      const id = `${tag}-lane${number}-session-${turn % IDS_PER_LANE}`;
      const before = traffic.states.get(id) ?? [undefined];
      const remove = turn % 5 === 4;
      const next = remove ? undefined : record();
      traffic.operations++;
      const started = Date.now();
      try {
        if (remove) await store.delete(id);
        else await store.set(id, next as SessionRecord);
        traffic.acknowledged++;
        traffic.states.set(id, [next]);
        // A store that answers from the event loop's own thread would otherwise starve timers.
        await yieldToEventLoop();
      } catch (error) {
        const code = isSessionError(error) ? error.code : `not a SessionError: ${String(error)}`;
        traffic.failures.set(code, (traffic.failures.get(code) ?? 0) + 1);
        traffic.slowestRejectionMs = Math.max(traffic.slowestRejectionMs, Date.now() - started);
        traffic.states.set(id, [...before, next]);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  };
  await Promise.all([...Array.from({ length: LANES }, (_, n) => lane(n)), disruption]);
  return traffic;
}

/** Every id holds one of the states its writes allow; returns what does not. */
export async function unexplained(store: SessionStore, traffic: Traffic): Promise<string[]> {
  const failures: string[] = [];
  for (const [id, candidates] of traffic.states) {
    const actual = await store.get(id);
    const ok = candidates.some((candidate) =>
      candidate === undefined || actual === undefined
        ? candidate === actual
        : sameRecord(actual, candidate),
    );
    if (!ok)
      failures.push(
        `${id}: found ${actual === undefined ? 'nothing' : 'other bytes'} after its writes`,
      );
  }
  return failures;
}

/** Tries a write and a read until both work, for up to `withinMs`. */
export async function recovers(
  store: SessionStore,
  tag: string,
  withinMs: number,
): Promise<number | undefined> {
  const started = Date.now();
  while (Date.now() - started < withinMs) {
    try {
      const value = record();
      await store.set(`${tag}-recovery-session-0001`, value);
      const back = await store.get(`${tag}-recovery-session-0001`);
      if (back !== undefined && sameRecord(back, value)) return Date.now() - started;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return undefined;
}
