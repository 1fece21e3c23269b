import { yieldToEventLoop } from '@sessile/core/store';

/** How long calls may run on the event loop back to back before they give it a turn. */
const EVENT_LOOP_TURN_MS = 2;

/**
 * With `io: 'sync'` a store call settles in microtasks, so a loop of awaited calls (a bulk
 * import, a loop of locked cycles) would never let timers or I/O run, a lock's keep-alive
 * included. Calls run through `run` give the event loop a turn at least every
 * `EVENT_LOOP_TURN_MS`; with thread-pool calls they need none.
 */
export class EventLoopTurns {
  readonly #onEventLoop: boolean;
  #lastTurnAt = performance.now();

  constructor(onEventLoop: boolean) {
    this.#onEventLoop = onEventLoop;
  }

  /** Runs `call`, after a turn of the event loop when calls have gone on without one for too long. */
  run<T>(call: () => Promise<T>): Promise<T> {
    if (!this.#onEventLoop || performance.now() - this.#lastTurnAt < EVENT_LOOP_TURN_MS) {
      return call();
    }
    // Calls made while this turn is pending wait for it too, in order: the time only grows.
    return yieldToEventLoop().then(() => {
      this.#lastTurnAt = performance.now();
      return call();
    });
  }
}
