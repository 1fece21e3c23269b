import { describe, expect, it } from 'vitest';
import { KeyedQueue } from '../src/store.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('KeyedQueue', () => {
  it('runs operations on one key one at a time, in call order', async () => {
    const queue = new KeyedQueue();
    const events: string[] = [];
    const op = (name: string) => async () => {
      events.push(`${name} start`);
      await tick();
      events.push(`${name} end`);
    };
    await Promise.all([queue.run('a', op('1')), queue.run('a', op('2')), queue.run('a', op('3'))]);
    expect(events).toEqual(['1 start', '1 end', '2 start', '2 end', '3 start', '3 end']);
  });

  it('never makes different keys wait, and frees a key when its last operation ends', async () => {
    const queue = new KeyedQueue();
    let releaseA!: () => void;
    const a = queue.run('a', () => new Promise<void>((resolve) => (releaseA = resolve)));
    expect(await queue.run('b', async () => 'b ran')).toBe('b ran');
    expect(queue.keys()).toEqual(['a']);
    releaseA();
    await a;
    expect(queue.size).toBe(0);
  });

  it('whenIdle waits for the operations queued on a key so far, and for none queued after', async () => {
    const queue = new KeyedQueue();
    const events: string[] = [];
    expect(queue.whenIdle('a')).toBeUndefined();
    expect(queue.has('a')).toBe(false);
    const first = queue.run('a', async () => {
      await tick();
      events.push('first');
    });
    const second = queue.run('a', async () => {
      await tick();
      events.push('second');
    });
    const idle = queue.whenIdle('a') as Promise<void>;
    expect([queue.has('a'), queue.has('b')]).toEqual([true, false]);
    const later = queue.run('a', async () => {
      await tick();
      await tick();
      events.push('later');
    });
    await idle;
    events.push('idle');
    await Promise.all([first, second, later]);
    expect(events).toEqual(['first', 'second', 'idle', 'later']);
    expect(queue.whenIdle('a')).toBeUndefined();
  });

  it('runAll waits for every key, and a failed operation lets the next one run', async () => {
    const queue = new KeyedQueue();
    const events: string[] = [];
    const failing = queue.run('a', async () => {
      await tick();
      throw new Error('boom');
    });
    const both = queue.runAll(['a', 'b', 'a'], async () => events.push('all'));
    await expect(failing).rejects.toThrow('boom');
    await both;
    expect(events).toEqual(['all']);
    expect(queue.size).toBe(0);
  });
});
