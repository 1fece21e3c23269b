import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeSessionBody } from '../body.js';
import { describeError, round, runLoad } from '../measure.js';
import { LIVE_FOR_MS, type Workload, withFreshTarget } from './context.js';
import { incrementCounter } from './ops.js';

export interface LockFloodResult {
  /** Lock-read-write-release cycles run one after another on a session nobody else uses. */
  uncontendedCycles: number;
  /** Mean time of one of those cycles. */
  uncontendedCycleMs: number;
  /** Cycles started at once on one session, each waiting for its lock with the store's default `waitMs`. */
  cycles: number;
  /** Cycles whose lock was not free within the default `waitMs` (`ERR_LOCK_TIMEOUT`). */
  timeouts: number;
  /** Increments the session's counter shows at the end. */
  saved: number;
  /** Increments whose write resolved but that the counter does not show. */
  lost: number;
  /** Failures other than lock timeouts, over both phases. */
  errors: number;
  firstError?: string;
  /** From starting every cycle to the last one settling, timeouts included. */
  elapsedMs: number;
  /** `elapsedMs` over `saved`; 0 when nothing was saved. */
  msPerSavedCycle: number;
  /** `msPerSavedCycle` over `uncontendedCycleMs`: 1× means waiting in line costs nothing. */
  contendedRatio: number;
  /**
   * The longest the event loop went without a turn during the flood. Waiters handed the lock
   * one after another without yielding starve timers and I/O, their own `waitMs` timers too.
   */
  longestStallMs: number;
}

/** Resolution of the event-loop delay histogram; its max is what counts, not its mean. */
const STALL_RESOLUTION_MS = 10;

function isLockTimeout(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'ERR_LOCK_TIMEOUT';
}

/**
 * Many requests for one session at once (a page firing parallel XHRs, a retry storm): every
 * waiter must get the lock in turn within the default wait, and waiting in line should cost
 * about what the cycles themselves cost.
 */
export const lockFlood: Workload<LockFloodResult, 'lock-flood'> = {
  name: 'lock-flood',
  title: 'Lock flood',
  description:
    'parallel lock-read-increment-write-release cycles on one session, with the default lock wait',
  primary: {
    field: 'contendedRatio',
    label: 'time per saved cycle, contended over uncontended',
    higherIsBetter: false,
  },
  limitMs: (profile) => profile.limitsMs.lockFlood,
  skipReason: (target) =>
    target.kind === 'sessile' ? undefined : 'only sessile stores have a session lock',
  async run(context) {
    const { cycles, uncontendedMs } = context.profile.lockFlood;
    return withFreshTarget(context, async (target) => {
      const lock = target.lock?.bind(target);
      if (lock === undefined) throw new Error(`${context.target.name} has no session lock`);
      // One cycle as an app's request makes it: lock with the store's defaults, read, write, release.
      const lockedIncrement = async (id: string, written?: () => void) => {
        const held = await lock(id, 'default');
        try {
          await incrementCounter(target, id);
          written?.();
        } finally {
          await held.release();
        }
      };
      const [quietId, floodedId] = context.shared.idPool.take(2) as [string, string];
      await target.create(quietId, makeSessionBody(6), Date.now() + LIVE_FOR_MS);
      await target.create(floodedId, makeSessionBody(7), Date.now() + LIVE_FOR_MS);

      const quiet = await runLoad(
        { concurrency: 1, durationMs: uncontendedMs, signal: context.signal },
        () => lockedIncrement(quietId),
      );

      // Counted as each write resolves, so a release failing after it does not hide a lost update.
      let written = 0;
      const delay = monitorEventLoopDelay({ resolution: STALL_RESOLUTION_MS });
      delay.enable();
      // The histogram counts from its first tick on: a stall before that would go unseen.
      await sleep(2 * STALL_RESOLUTION_MS);
      const started = performance.now();
      const outcomes = await Promise.allSettled(
        Array.from({ length: cycles }, () => lockedIncrement(floodedId, () => written++)),
      );
      const elapsedMs = performance.now() - started;
      // A stall that lasted to the end is recorded only once the histogram's timer runs again.
      await sleep(2 * STALL_RESOLUTION_MS);
      delay.disable();
      const failures = outcomes.flatMap((outcome) =>
        outcome.status === 'rejected' ? [outcome.reason as unknown] : [],
      );
      const others = failures.filter((error) => !isLockTimeout(error));
      const saved = (await target.read(floodedId))?.counter ?? 0;
      const firstError =
        quiet.firstError ?? (others.length > 0 ? describeError(others[0]) : undefined);

      const uncontendedCycleMs = quiet.ops > 0 ? quiet.elapsedMs / quiet.ops : 0;
      const msPerSavedCycle = saved > 0 ? elapsedMs / saved : 0;
      return {
        uncontendedCycles: quiet.ops,
        uncontendedCycleMs: round(uncontendedCycleMs),
        cycles,
        timeouts: failures.length - others.length,
        saved,
        lost: written - saved,
        errors: quiet.errors + others.length,
        ...(firstError === undefined ? {} : { firstError }),
        elapsedMs: round(elapsedMs),
        msPerSavedCycle: round(msPerSavedCycle),
        contendedRatio:
          uncontendedCycleMs > 0 && msPerSavedCycle > 0
            ? round(msPerSavedCycle / uncontendedCycleMs)
            : 0,
        longestStallMs: round(delay.max / 1e6),
      };
    });
  },
};
