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
  /** The turn calls wait for, once one is due, until it has come. */
  #turn: Promise<void> | undefined;

  constructor(onEventLoop: boolean) {
    this.#onEventLoop = onEventLoop;
  }

  /**
   * Runs `call`, after a turn of the event loop when calls have gone on without one for too
   * long. Calls made while a turn is awaited start after it, in the order they were made.
   */
  run<T>(call: () => Promise<T>): Promise<T> {
    if (!this.#onEventLoop) return call();
    if (this.#turn === undefined) {
      if (performance.now() - this.#lastTurnAt < EVENT_LOOP_TURN_MS) return call();
      this.#turn = yieldToEventLoop().then(() => {
        this.#lastTurnAt = performance.now();
        this.#turn = undefined;
      });
    }
    return this.#turn.then(call);
  }
}
