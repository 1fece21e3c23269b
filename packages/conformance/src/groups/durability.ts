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
    // Each kind of write is the last one before a close() once, so a store that puts one kind
    // on disk only with a later write (a touch changing memory only) cannot pass.
    it('records, touches and deletes survive close() and reopen(), each as the last write before it', async () => {
      const reopen = requireReopen(options);
      const kept = newId();
      const touched = newId();
      const deleted = newId();
      const touchedUntil = Date.now() + 7 * HOUR_MS;
      const between = async (
        open: () => Promise<SessionStore>,
        body: (store: SessionStore) => Promise<void>,
      ) => {
        const store = await open();
        try {
          await body(store);
        } finally {
          await store.close();
        }
      };
      await between(options.open, async (store) => {
        await store.set(kept, record({ kept: true }));
        await store.set(touched, record({ touched: true }));
        await store.set(deleted, record({ deleted: true }));
      });
      await between(reopen, async (store) => {
        expect(await store.count(), 'records set just before close()').toBe(3);
        await store.touch(touched, touchedUntil);
      });
      await between(reopen, async (store) => {
        expect(
          (await store.get(touched))?.expiresAt,
          'a touch made just before close() is kept by reopen()',
        ).toBe(touchedUntil);
        await store.delete(deleted);
      });
      await between(reopen, async (store) => {
        expect(decodeValue((await store.get(kept))?.data ?? bytesOf(null))).toEqual({
          kept: true,
        });
        expect((await store.get(touched))?.expiresAt).toBe(touchedUntil);
        expect(
          await store.get(deleted),
          'a delete made just before close() is kept by reopen()',
        ).toBeUndefined();
        expect(await store.count()).toBe(2);
      });
    }, 60_000);

    // Each kind of write is the last thing its process does before the kill, with no later
    // write or close() to carry it to disk, so a store that keeps one kind in memory for a while
    // (a touch written with the next set) fails here every time, not only when the kill happens
    // to land in that window.
    it('a set, a touch and a delete each survive a SIGKILL that follows it as the last write of its process', async () => {
      const reopen = requireReopen(options);
      const cross = requireCrashableChild(options);
      await (await options.open()).close();
      const kept = newId();
      const deleted = newId();
      const createdUntil = Date.now() + HOUR_MS;
      const touchedUntil = Date.now() + 5 * HOUR_MS;
      const lastWriteThenKill = async (op: 'set' | 'touch' | 'delete', id: string) => {
        const child = spawnChild(cross, {
          kind: 'last-write',
          op,
          id,
          value: id === kept ? 1 : 2,
          expiresAt: op === 'touch' ? touchedUntil : createdUntil,
        });
        try {
          await child.next('acknowledged');
        } finally {
          child.kill();
          await child.exited;
        }
        const answer = child.messages.find((message) => message.type === 'acknowledged');
        expect(answer, `the child's ${op} resolved true`).toEqual({
          type: 'acknowledged',
          result: true,
        });
      };
      const afterReopen = async (check: (store: SessionStore) => Promise<void>) => {
        const store = await reopen();
        try {
          await check(store);
        } finally {
          await store.close();
        }
      };
      await lastWriteThenKill('set', kept);
      await lastWriteThenKill('set', deleted);
      await afterReopen(async (store) => {
        const stored = await store.get(kept);
        expect(stored, 'a set acknowledged just before a crash').toBeDefined();
        expect(decodeValue(stored?.data ?? bytesOf(null))).toEqual({ i: 1 });
        expect(stored?.expiresAt).toBe(createdUntil);
        expect(await store.get(deleted), 'a set acknowledged just before a crash').toBeDefined();
      });
      await lastWriteThenKill('touch', kept);
      await afterReopen(async (store) => {
        expect((await store.get(kept))?.expiresAt, 'a touch acknowledged just before a crash').toBe(
          touchedUntil,
        );
      });
      await lastWriteThenKill('delete', deleted);
      await afterReopen(async (store) => {
        expect(
          await store.get(deleted),
          'a delete acknowledged just before a crash',
        ).toBeUndefined();
        expect(decodeValue((await store.get(kept))?.data ?? bytesOf(null))).toEqual({ i: 1 });
        expect((await store.get(kept))?.expiresAt).toBe(touchedUntil);
      });
    }, 120_000);

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
