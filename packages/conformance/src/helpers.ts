import {
  generateSessionId,
  isSessionError,
  type SessionErrorCode,
  type SessionStore,
} from '@sessile/core';
import { expect } from 'vitest';
import type { ConformanceOptions } from './options.js';

export const HOUR_MS = 3_600_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function newId(): string {
  return generateSessionId();
}

export function bytesOf(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

export function decodeValue(data: Uint8Array): unknown {
  return JSON.parse(decoder.decode(data));
}

export function record(value: unknown, expiresAt = Date.now() + HOUR_MS) {
  return { data: bytesOf(value), expiresAt };
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function expectCode(promise: Promise<unknown>, code: SessionErrorCode): Promise<void> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected a SessionError ${code}`).toBeDefined();
  expect(isSessionError(caught), `expected a SessionError ${code}, got ${String(caught)}`).toBe(
    true,
  );
  expect((caught as { code: string }).code).toBe(code);
}

export async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const ids: string[] = [];
  for await (const id of iterable) ids.push(id);
  return ids;
}

/** A seeded PRNG, so a failing concurrency run can be replayed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs `body` against a fresh store and always closes it. */
export async function withStore<T>(
  options: ConformanceOptions,
  body: (store: SessionStore) => Promise<T>,
): Promise<T> {
  const store = await options.open();
  try {
    return await body(store);
  } finally {
    await store.close();
  }
}

/** Writes `count` records in parallel chunks. */
export async function fill(
  store: SessionStore,
  count: number,
  expiresAt: number,
  chunk = 250,
): Promise<string[]> {
  const ids = Array.from({ length: count }, () => newId());
  for (let i = 0; i < ids.length; i += chunk) {
    await Promise.all(
      ids
        .slice(i, i + chunk)
        .map((id, offset) => store.set(id, record({ n: i + offset }, expiresAt))),
    );
  }
  return ids;
}

/** Sweeps as of `now` until the store reports done, failing if it never does. */
export async function sweepToDone(
  store: SessionStore,
  now: number,
  extra: { limit?: number; budgetMs?: number } = {},
  maxCalls = 10_000,
): Promise<{ removed: number; calls: number }> {
  let removed = 0;
  for (let calls = 1; calls <= maxCalls; calls++) {
    const result = await store.sweep({ now, ...extra });
    expect(
      result.scanned,
      'a sweep examines every record it removes, so scanned is at least removed',
    ).toBeGreaterThanOrEqual(result.removed);
    removed += result.removed;
    if (result.done) return { removed, calls };
  }
  throw new Error(`sweep did not report done after ${maxCalls} calls`);
}

/**
 * What a call settled with: `ok`, a SessionError code, or a short description of anything else.
 * A method that throws instead of returning a promise that rejects is named as such: callers
 * that `.catch()` it would never see the error.
 */
export async function outcomeOf(call: () => unknown): Promise<string> {
  let pending: unknown;
  try {
    pending = call();
  } catch (error) {
    return `threw instead of rejecting: ${describeFailure(error)}`;
  }
  try {
    await pending;
    return 'ok';
  } catch (error) {
    return describeFailure(error);
  }
}

function describeFailure(error: unknown): string {
  if (isSessionError(error)) return error.code;
  return `${(error as Error)?.name ?? 'error'}: ${(error as Error)?.message ?? String(error)}`;
}

/**
 * Fails unless `call` returns a promise that rejects with a TypeError whose message matches
 * `message`. A call that throws at once is named as such: `await` in a caller's try block would
 * catch it, but a caller's `.catch()` never sees it.
 */
export async function expectTypeError(
  what: string,
  call: () => unknown,
  message?: RegExp,
): Promise<void> {
  let pending: unknown;
  try {
    pending = call();
  } catch (error) {
    throw new Error(
      `${what} threw ${describeFailure(error)} instead of returning a promise that rejects with it`,
    );
  }
  let caught: unknown;
  try {
    await pending;
  } catch (error) {
    caught = error;
  }
  if (caught === undefined)
    throw new Error(`${what} must reject with a TypeError, but it resolved`);
  expect(caught, `${what} must reject with a TypeError`).toBeInstanceOf(TypeError);
  if (message !== undefined) {
    expect((caught as Error).message, `${what}: the TypeError names the problem`).toMatch(message);
  }
}

/** Runs each named call and returns the ones whose outcome differs from `expected`. */
export async function unexpectedOutcomes(
  calls: Record<string, () => unknown>,
  expected: string,
): Promise<Record<string, string>> {
  const wrong: Record<string, string> = {};
  for (const [name, call] of Object.entries(calls)) {
    const outcome = await outcomeOf(call);
    if (outcome !== expected) wrong[name] = outcome;
  }
  return wrong;
}
