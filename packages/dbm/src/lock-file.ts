import { closeSync, openSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { sleep } from '@sessile/core/store';

/** What a lock file says about its holder. */
export interface LockHolder {
  token: string;
  /** Lease end, ms since the epoch. */
  expiresAt: number;
  pid: number;
  /** A short digest of the session id, so waiters can tell a stripe collision from a same-id wait. */
  tag: string;
}

/** Every holder file (global lock and stripes) is padded to this size and rewritten in place. */
export const HOLDER_BYTES = 128;
/** A lock file that stays empty or garbled this long belongs to a writer that died creating it. */
const UNREADABLE_STALE_MS = 5_000;
/** A guard is held for microseconds; one this old belongs to a process that died holding it. */
export const GUARD_STALE_MS = 2_000;

export function encodeHolder(holder: LockHolder): Buffer {
  const text = `${holder.token} ${holder.expiresAt} ${holder.pid} ${holder.tag}\n`;
  const buf = Buffer.alloc(HOLDER_BYTES, 0x20);
  buf.write(text, 0, 'latin1');
  return buf;
}

function decodeHolder(buf: Buffer): LockHolder | undefined {
  const [token, expiresAt, pid, tag] = buf.toString('latin1').trim().split(' ');
  if (token === undefined || expiresAt === undefined || pid === undefined || tag === undefined)
    return undefined;
  const lease = Number(expiresAt);
  const processId = Number(pid);
  if (!token || !Number.isFinite(lease) || !Number.isInteger(processId)) return undefined;
  return { token, expiresAt: lease, pid: processId, tag };
}

export type HolderState =
  | { kind: 'absent' }
  | { kind: 'unreadable'; ageMs: number }
  | { kind: 'held'; holder: LockHolder };

export function readHolder(path: string): HolderState {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (error) {
    if (isCode(error, 'ENOENT')) return { kind: 'absent' };
    throw error;
  }
  const holder = decodeHolder(buf);
  if (holder !== undefined) return { kind: 'held', holder };
  try {
    return { kind: 'unreadable', ageMs: Date.now() - statSync(path).mtimeMs };
  } catch (error) {
    if (isCode(error, 'ENOENT')) return { kind: 'absent' };
    throw error;
  }
}

export function removeIfPresent(path: string): void {
  try {
    unlinkSync(path);
  } catch (error) {
    if (!isCode(error, 'ENOENT')) throw error;
  }
}

/** True when a process with this id exists on this host. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return isCode(error, 'EPERM');
  }
}

/** True when the holder state shows a lock nobody holds any more. */
export function isStale(state: HolderState, now: number, checkProcess: boolean): boolean {
  if (state.kind === 'absent') return false;
  if (state.kind === 'unreadable') return state.ageMs > UNREADABLE_STALE_MS;
  const { holder } = state;
  if (holder.expiresAt <= now) return true;
  return checkProcess && holder.pid !== process.pid && !processAlive(holder.pid);
}

/**
 * Runs `critical` (synchronous) while holding the guard file beside a lock. Every change to an
 * existing lock file (takeover, extend, release) happens under its guard, so a check of the
 * holder and the change that depends on it cannot interleave with another process's.
 */
export async function withGuard<T>(guardPath: string, critical: () => T): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      closeSync(openSync(guardPath, 'wx', 0o600));
      break;
    } catch (error) {
      if (!isCode(error, 'EEXIST')) throw error;
    }
    try {
      if (Date.now() - statSync(guardPath).mtimeMs > GUARD_STALE_MS) {
        removeIfPresent(guardPath);
        continue;
      }
    } catch (error) {
      if (!isCode(error, 'ENOENT')) throw error;
      continue;
    }
    await sleep(Math.min(10, 1 + attempt));
  }
  try {
    return critical();
  } finally {
    removeIfPresent(guardPath);
  }
}

export function isCode(error: unknown, code: string): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}
