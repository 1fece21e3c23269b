import type { RoundPlan } from './workload.js';

/** What the parent does to the child before killing it. */
export type CrashMode = 'writes' | 'sweep' | 'clear' | 'lock';

export interface ChildTask {
  store: string;
  dir: string;
  mode: CrashMode;
  plan: RoundPlan;
  /** Sessions of this round, indexes 0..sessions-1. */
  sessions: number;
  /** Concurrent writers; each owns the sessions whose index is its number modulo `lanes`. */
  lanes: number;
  /** Records written already expired for a `sweep` round. */
  expiring: number;
  lockLeaseMs: number;
}

/** The parent's message to a child that has loaded: open the store and run this task. */
export type ParentMessage = { type: 'go'; task: ChildTask };

/** Messages from the child. An `ack` is sent, and its delivery awaited, before the next step. */
export type ChildMessage =
  | { type: 'loaded' }
  | { type: 'ready' }
  | { type: 'ack'; index: number; step: number }
  | { type: 'sweeping' }
  | { type: 'swept' }
  | { type: 'clearing' }
  | { type: 'cleared' }
  | { type: 'locked'; id: string; expiresAt: number }
  | { type: 'fault'; message: string };

/** The prefix of the already-expired records of a sweep round. */
export function expiringPrefix(plan: RoundPlan): string {
  return `${plan.prefix}x`;
}
