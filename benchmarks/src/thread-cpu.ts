import { readFileSync } from 'node:fs';

const SCHEDSTAT = '/proc/thread-self/schedstat';

function read(): number | undefined {
  try {
    const onCpuNs = Number(readFileSync(SCHEDSTAT, 'latin1').split(' ')[0]);
    return Number.isFinite(onCpuNs) ? onCpuNs / 1e6 : undefined;
  } catch {
    return undefined;
  }
}

const supported = read() !== undefined;

/**
 * Milliseconds the calling thread has run on a CPU (Linux's schedstat, nanosecond resolution),
 * or `undefined` where the kernel does not say. Between two event-loop probes it tells a stall
 * the process caused from one where the OS ran other processes (a shared, loaded machine).
 */
export function threadOnCpuMs(): number | undefined {
  return supported ? read() : undefined;
}
