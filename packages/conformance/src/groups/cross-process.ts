import { afterEach, describe, expect, it } from 'vitest';
import { decodeValue, expectCode, newId, record } from '../helpers.js';
import type { ConformanceOptions } from '../options.js';
import { type ChildHandle, requireCrossProcess, spawnChild } from './spawn.js';

export function crossProcessTests(options: ConformanceOptions, shared: string): void {
  const scale = options.timeScale ?? 1;
  const children: ChildHandle[] = [];
  const requireCross = () => requireCrossProcess(options, shared);

  describe('cross-process', () => {
    afterEach(() => {
      for (const child of children.splice(0)) child.kill();
    });

    it(
      '4 child processes x 100 locked increments on one session end at exactly 400',
      async () => {
        const cross = requireCross();
        const store = await options.open();
        try {
          const id = newId();
          await store.set(id, record({ n: 0 }));
          const workers = Array.from({ length: 4 }, () =>
            spawnChild(cross, { kind: 'increment', id, times: 100 }),
          );
          children.push(...workers);
          await Promise.all(workers.map((worker) => worker.next('done')));
          expect(decodeValue((await store.get(id))?.data ?? new Uint8Array())).toEqual({ n: 400 });
        } finally {
          await store.close();
        }
      },
      300_000 * scale,
    );

    it(
      "only: 'absent' and only: 'present' are atomic across processes: one creator per id, and no update brings back a session deleted in another process",
      async () => {
        const cross = requireCross();
        const store = await options.open();
        try {
          const ids = Array.from({ length: 30 }, () => newId());
          const race = async (ops: Array<'create' | 'update' | 'delete'>) => {
            const racers = ops.map((op, n) =>
              spawnChild(cross, { kind: 'race', ids, op, tag: `child ${n}` }),
            );
            children.push(...racers);
            // Each starts once all are open, so their calls on each id meet.
            await Promise.all(racers.map((racer) => racer.next('ready')));
            for (const racer of racers) racer.process.send('go');
            await Promise.all(racers.map((racer) => racer.next('raced')));
            return racers.map((racer) =>
              racer.messages.flatMap((message) =>
                message.type === 'raced' ? message.changed : [],
              ),
            );
          };
          const created = await race(['create', 'create', 'create', 'create']);
          const creators = ids.map((id) =>
            created.flatMap((changed, n) => (changed.includes(id) ? [`child ${n}`] : [])),
          );
          expect(
            creators.flatMap((each, n) => (each.length === 1 ? [] : [`id #${n}: ${each.length}`])),
            "only: 'absent' in 4 processes at once: exactly one create of each id wins (check and write must be one atomic step in the backend, not guarded by this process alone)",
          ).toEqual([]);
          for (const [n, id] of ids.entries()) {
            expect(decodeValue((await store.get(id))?.data ?? new Uint8Array())).toEqual({
              by: creators[n]?.[0],
            });
          }
          await race(['delete', 'update', 'update']);
          const back = [];
          for (const [n, id] of ids.entries()) {
            if ((await store.get(id)) !== undefined) back.push(`id #${n}`);
          }
          expect(
            back,
            "only: 'present' racing a delete in another process never brings the session back",
          ).toEqual([]);
        } finally {
          await store.close();
        }
      },
      300_000 * scale,
    );

    it(
      'a lock held when its store closes is free for another process once its release() resolves',
      async () => {
        const cross = requireCross();
        const store = await options.open();
        const id = newId();
        const lock = await store.locks.acquire(id, { leaseMs: 600_000 });
        // A shutdown while a request still holds its session: close() either frees the lock
        // itself or leaves release() working, and the other process need not wait out the lease.
        await store.close();
        await lock.release();
        const next = spawnChild(cross, { kind: 'hold', id, leaseMs: 10_000 });
        children.push(next);
        await next.next('held');
      },
      120_000 * scale,
    );

    it(
      'a holder killed with SIGKILL blocks others no longer than its lease',
      async () => {
        const cross = requireCross();
        const store = await options.open();
        try {
          const id = newId();
          const leaseMs = 1500 * scale;
          const holder = spawnChild(cross, { kind: 'hold', id, leaseMs });
          children.push(holder);
          await holder.next('held');
          // The lock really is held by the other process...
          await expectCode(store.locks.acquire(id, { waitMs: 0 }), 'ERR_LOCK_TIMEOUT');
          holder.process.kill('SIGKILL');
          // ...and its lease frees it even though the holder never released.
          const lock = await store.locks.acquire(id, {
            waitMs: leaseMs + 20_000 * scale,
            leaseMs: 10_000,
          });
          expect(lock.signal.aborted).toBe(false);
          await lock.release();
        } finally {
          await store.close();
        }
      },
      120_000 * scale,
    );

    it(
      'a holder in another process whose lease was taken over cannot write',
      async () => {
        const cross = requireCross();
        const store = await options.open();
        try {
          const id = newId();
          const leaseMs = 500 * scale;
          const holder = spawnChild(cross, { kind: 'fenced-write', id, leaseMs });
          children.push(holder);
          await holder.next('held');
          // Stopped, the holder can neither extend nor notice that its lease ran out.
          holder.process.kill('SIGSTOP');
          const lock = await store.locks.acquire(id, {
            waitMs: leaseMs + 20_000 * scale,
            leaseMs: 60_000,
          });
          expect(await store.set(id, record({ by: 'new holder' }), { lock })).toBe(true);
          holder.process.kill('SIGCONT');
          holder.process.send('write');
          await holder.next('written');
          const written = holder.messages.find((message) => message.type === 'written');
          expect(written, 'the stale holder must be refused').toEqual({
            type: 'written',
            outcome: 'ERR_LOCK_LOST',
          });
          expect(decodeValue((await store.get(id))?.data ?? new Uint8Array())).toEqual({
            by: 'new holder',
          });
          await lock.release();
        } finally {
          await store.close();
        }
      },
      120_000 * scale,
    );
  });
}
