/**
 * Runs `work` for each item with at most `concurrency` in flight, reading the source only as
 * fast as the work drains. Stops starting new work once `signal` aborts or any work fails; the
 * first failure, of the work or of the source, is rethrown after everything in flight has
 * settled. Resolves whether it stopped early.
 */
export async function forEachConcurrently<T>(
  items: AsyncIterable<T>,
  concurrency: number,
  signal: AbortSignal,
  work: (item: T) => Promise<void>,
): Promise<{ interrupted: boolean }> {
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  let interrupted = false;
  try {
    for await (const item of items) {
      if (failure !== undefined) break;
      if (signal.aborted) {
        interrupted = true;
        break;
      }
      const task: Promise<void> = work(item).then(
        () => {
          inFlight.delete(task);
        },
        (error: unknown) => {
          inFlight.delete(task);
          failure ??= { error };
        },
      );
      inFlight.add(task);
      if (inFlight.size >= concurrency) await Promise.race(inFlight);
    }
  } finally {
    // A source that fails part way still leaves work in flight: what it writes is counted
    // before the failure is reported, and is done before the stores close.
    await Promise.all(inFlight);
  }
  if (failure !== undefined) throw failure.error;
  return { interrupted };
}
