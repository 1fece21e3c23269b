import { EXIT, type ExitCode } from '../exit-codes.js';
import { type CommonOptions, printJson, printLines } from '../output.js';
import { Progress } from '../progress.js';
import { expiredNotSwept, interruptSignal, withStore } from '../store-session.js';

export interface SweepCommandOptions extends CommonOptions {
  /** The whole run's time budget in ms; unset runs until done. */
  budget?: number;
  /** Records one sweep call examines. */
  limit?: number;
}

/** `sessile sweep URL`: the store's own bounded sweep, called until it is done or the budget is spent. */
function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

export async function sweep(url: string, options: SweepCommandOptions): Promise<ExitCode> {
  const interrupt = interruptSignal();
  try {
    return await withStore(url, { ...options, mustExist: true }, async (store, address) => {
      const startedAt = Date.now();
      const expired = await expiredNotSwept(store, address, startedAt);
      const progress = new Progress('sweep', expired ?? undefined, !options.json);
      let removed = 0;
      let scanned = 0;
      let calls = 0;
      let done = false;
      try {
        while (!done && !interrupt.signal.aborted) {
          const elapsed = Date.now() - startedAt;
          if (options.budget !== undefined && elapsed >= options.budget && calls > 0) break;
          const result = await store.sweep({
            now: startedAt,
            signal: interrupt.signal,
            ...(options.limit === undefined ? {} : { limit: options.limit }),
            ...(options.budget === undefined
              ? {}
              : { budgetMs: Math.max(options.budget - elapsed, 0) }),
          });
          calls++;
          removed += result.removed;
          scanned += result.scanned;
          done = result.done;
          progress.increment(result.removed);
        }
      } finally {
        progress.stop();
      }
      const interrupted = !done && interrupt.signal.aborted;
      const exitCode = done ? EXIT.ok : interrupted ? EXIT.interrupted : EXIT.incomplete;
      const summary = { store: address.display, removed, scanned, calls, done, interrupted };
      if (options.json) await printJson({ ok: done, ...summary, exitCode });
      else {
        await printLines([
          `${plural(removed, 'expired session')} removed (${scanned} examined in ${plural(calls, 'sweep call')})`,
          ...(done
            ? []
            : [
                `not done: ${interrupted ? 'interrupted' : 'the budget ran out'}; run it again to go on`,
              ]),
        ]);
      }
      return exitCode;
    });
  } finally {
    interrupt.dispose();
  }
}
