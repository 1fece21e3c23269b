import { afterEach, describe, expect, it, vi } from 'vitest';
import { Deadlines } from '../src/deadlines.js';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('Deadlines', () => {
  it('expireOverdue fails the operations past their deadline at once, dropping what they left waiting first', async () => {
    const deadlines = new Deadlines(1000, 'Redis at test', (_action, error) => error);
    const signal = deadlines.signal;
    const order: string[] = [];
    signal.addEventListener('abort', () => order.push('dropped'));
    const failing = deadlines.run('set', new Promise(() => {})).catch((error: unknown) => {
      order.push('failed');
      return error;
    });
    // The clock past the deadline, before the timer's next look (up to 250 ms later): a client
    // that reconnects now writes its queue in this turn, so the check cannot wait for the timer.
    const now = performance.now();
    vi.spyOn(performance, 'now').mockReturnValue(now + 1300);
    deadlines.expireOverdue();
    expect(signal.aborted).toBe(true);
    const error = await failing;
    expect(order).toEqual(['dropped', 'failed']);
    expect(error).toMatchObject({ code: 'ERR_STORE_IO' });
    expect((error as Error).message).toContain('set got no answer within commandTimeoutMs');
    // A fresh signal for what is sent from now on.
    expect(deadlines.signal.aborted).toBe(false);
    deadlines.close();
  });

  it('expireOverdue leaves operations within their deadline, and their commands, alone', async () => {
    const deadlines = new Deadlines(60_000, 'Redis at test', (_action, error) => error);
    const signal = deadlines.signal;
    let settled = false;
    const running = deadlines.run('get', new Promise((resolve) => setTimeout(resolve, 20, 'ok')));
    running.then(() => {
      settled = true;
    });
    deadlines.expireOverdue();
    expect(signal.aborted).toBe(false);
    expect(settled).toBe(false);
    expect(await running).toBe('ok');
    deadlines.close();
  });

  it('expireOverdue with nothing in flight does nothing', () => {
    const deadlines = new Deadlines(1000, 'Redis at test', (_action, error) => error);
    const signal = deadlines.signal;
    deadlines.expireOverdue();
    expect(signal.aborted).toBe(false);
  });

  it("drops a client's waiting commands last sent first, and still is an AbortSignal", () => {
    const deadlines = new Deadlines(1000, 'Redis at test', (_action, error) => error);
    const signal = deadlines.signal;
    expect(signal).toBeInstanceOf(AbortSignal);
    const called: number[] = [];
    const listeners = [0, 1, 2, 3].map((n) => () => called.push(n));
    for (const listener of listeners) signal.addEventListener('abort', listener, { once: true });
    // A command written before the drop no longer listens.
    signal.removeEventListener('abort', listeners[1] as () => void);
    deadlines.dropWaiting();
    expect(signal.aborted).toBe(true);
    // node-redis 5 unlinks each from its queue: from the tail backwards, the queue stays whole.
    expect(called).toEqual([3, 2, 0]);
    deadlines.dropWaiting();
    expect(called).toEqual([3, 2, 0]);
  });

  it('forgets each command once written, in order or not, and drops only those still waiting', () => {
    const deadlines = new Deadlines(1000, 'Redis at test', (_action, error) => error);
    const signal = deadlines.signal;
    const called: number[] = [];
    const listeners = Array.from({ length: 3000 }, (_, n) => () => called.push(n));
    for (const listener of listeners) signal.addEventListener('abort', listener);
    // Written out of order (a command queued ahead of others), then the rest in order.
    signal.removeEventListener('abort', listeners[2] as () => void);
    for (const listener of listeners.slice(0, 2990)) signal.removeEventListener('abort', listener);
    signal.removeEventListener('abort', listeners[2995] as () => void);
    deadlines.dropWaiting();
    expect(called).toEqual([2999, 2998, 2997, 2996, 2994, 2993, 2992, 2991, 2990]);
  });
});
