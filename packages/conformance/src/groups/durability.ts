import { once } from 'node:events';
import type { SessionStore } from '@sessile/core';
import { describe, expect, it } from 'vitest';
import type { ChildMessage } from '../child.js';
import { bytesOf, decodeValue, HOUR_MS, newId, record } from '../helpers.js';
import type { ConformanceOptions, CrossProcessOptions } from '../options.js';
import { spawnChild } from './spawn.js';

function requireReopen(options: ConformanceOptions): () => Promise<SessionStore> {
  if (options.reopen === undefined) {
    throw new Error('the store declares capabilities.durable, so the suite needs options.reopen');
  }
  return options.reopen;
}

/** A durable store must survive a crash, which only a process of its own can suffer. */
function requireCrashableChild(options: ConformanceOptions): CrossProcessOptions {
  if (options.crossProcess === undefined) {
    throw new Error(
      'the store declares capabilities.durable, so the suite needs options.crossProcess to kill a writing child process',
    );
  }
  return options.crossProcess;
}

/** What the acknowledged steps of a write stream left, leaving out ids a step was cut short on. */
function acknowledgedState(messages: readonly ChildMessage[]) {
  const state = new Map<string, { value: number; expiresAt?: number } | 'deleted'>();
  const cutShort = new Set<string>();
  for (const message of messages) {
    if (message.type === 'stored') state.set(message.id, { value: message.value });
    else if (message.type === 'changing') cutShort.add(message.id);
    else if (message.type === 'deleted') {
      cutShort.delete(message.id);
      state.set(message.id, 'deleted');
    } else if (message.type === 'touched') {
      cutShort.delete(message.id);
      const stored = state.get(message.id);
      if (stored !== undefined && stored !== 'deleted') stored.expiresAt = message.expiresAt;
    }
  }
  for (const id of cutShort) state.delete(id);
  return state;
}

export function durabilityTests(options: ConformanceOptions): void {
  describe('durability', () => {
    it('records, touches and deletes survive close() and reopen()', async () => {
      const reopen = requireReopen(options);
      const kept = newId();
      const touched = newId();
      const deleted = newId();
      const touchedUntil = Date.now() + 7 * HOUR_MS;
      const first = await options.open();
      try {
        await first.set(kept, record({ kept: true }));
        await first.set(touched, record({ touched: true }));
        await first.set(deleted, record({ deleted: true }));
        await first.touch(touched, touchedUntil);
        await first.delete(deleted);
      } finally {
        await first.close();
      }
      const second = await reopen();
      try {
        expect(decodeValue((await second.get(kept))?.data ?? bytesOf(null))).toEqual({
          kept: true,
        });
        expect((await second.get(touched))?.expiresAt).toBe(touchedUntil);
        expect(await second.get(deleted)).toBeUndefined();
        expect(await second.count()).toBe(2);
      } finally {
        await second.close();
      }
    }, 60_000);

    it('acknowledged writes, touches and deletes survive a SIGKILL of the writing process and reopen()', async () => {
      const reopen = requireReopen(options);
      const cross = requireCrashableChild(options);
      // Closed first, so a store that one process at a time may open is free for the child.
      await (await options.open()).close();
      const child = spawnChild(cross, { kind: 'write-stream' });
      try {
        await child.count('deleted', 20);
      } finally {
        child.kill();
        await child.exited;
        // Every message the child handed over before it died is read before judging it.
        if (child.process.connected) await once(child.process, 'disconnect');
      }
      const state = acknowledgedState(child.messages);
      const reopened = await reopen();
      try {
        let checked = 0;
        for (const [id, expected] of state) {
          const stored = await reopened.get(id);
          if (expected === 'deleted') {
            expect(stored, 'an acknowledged delete is not undone by a crash').toBeUndefined();
            continue;
          }
          expect(stored, 'an acknowledged write survives a crash').toBeDefined();
          expect(decodeValue(stored?.data ?? bytesOf(null))).toEqual({ i: expected.value });
          if (expected.expiresAt !== undefined) {
            expect(stored?.expiresAt, 'an acknowledged touch survives a crash').toBe(
              expected.expiresAt,
            );
          }
          checked++;
        }
        expect(checked).toBeGreaterThan(40);
      } finally {
        await reopened.close();
      }
    }, 120_000);
  });
}
