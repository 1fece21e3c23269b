import { type ChildProcess, fork, spawn } from 'node:child_process';
import { readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { isSessionError } from '@sessile/core';
import { describe, expect, it } from 'vitest';
import { DbmStore } from '../src/index.js';
import { payloadOf, steadyId } from './fixtures/steady-ops.mjs';
import { useTestPaths } from './helpers.js';

const { newPath, children } = useTestPaths('stalled');

interface WriterMessage {
  type: string;
  n?: number;
  code?: string;
}

/** A steady-writer.mjs child and what it reported. */
interface Writer {
  child: ChildProcess;
  prefix: string;
  recordBytes: number;
  acked: number[];
  failures: string[];
}

/**
 * `otherHost`: the writer runs in a UTS namespace of its own (needs root) under another host
 * name, as a process on another host sharing the file would: its liveness cannot be seen here.
 */
function spawnWriter(
  path: string,
  prefix: string,
  recordBytes: number,
  otherHost = false,
): Promise<Writer> {
  const script = fileURLToPath(new URL('./fixtures/steady-writer.mjs', import.meta.url));
  const child = fork(script, [path, prefix, String(recordBytes)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    ...(otherHost
      ? {
          execPath: 'unshare',
          execArgv: [
            '--uts',
            'sh',
            '-c',
            'hostname sessile-other-host && exec "$0" "$@"',
            process.execPath,
          ],
        }
      : {}),
  });
  children.push(child);
  const writer: Writer = { child, prefix, recordBytes, acked: [], failures: [] };
  child.on('message', (message: WriterMessage) => {
    if (message.type === 'acked') writer.acked.push(message.n as number);
    if (message.type === 'failed') writer.failures.push(message.code as string);
  });
  return nextMessage(child, 'ready').then(() => writer);
}

function nextMessage(child: ChildProcess, type: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: WriterMessage) => {
      if (message.type !== type) return;
      child.off('message', onMessage);
      resolve();
    };
    child.on('message', onMessage);
    child.once('exit', (code, signal) =>
      reject(new Error(`child exited early (${code ?? signal})`)),
    );
  });
}

/** The pid in the global lock's lease file, or undefined when nobody holds the lock. */
function globalLockPid(path: string): number | undefined {
  try {
    return (JSON.parse(readFileSync(`${path}.locks/0.lock`, 'latin1')) as { pid: number }).pid;
  } catch {
    return undefined;
  }
}

function stopped(pid: number): boolean {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T');
}

/** Stops `child` (SIGSTOP) at a moment it holds the global lock, in the middle of a hold. */
async function stopWhileHolding(child: ChildProcess, path: string): Promise<void> {
  const pid = child.pid as number;
  for (let tries = 0; tries < 2000; tries++) {
    child.kill('SIGSTOP');
    while (!stopped(pid)) await sleep(1);
    if (globalLockPid(path) === pid) return;
    child.kill('SIGCONT');
    await sleep(Math.random() * 5);
  }
  throw new Error('the writer never held the global lock when stopped');
}

async function stopWriter(writer: Writer): Promise<void> {
  const done = nextMessage(writer.child, 'stopped');
  writer.child.send('stop');
  await done;
}

/** Fails unless every acknowledged set reads back whole, and every record in the file is one that was written. */
async function expectIntact(path: string, writers: Writer[]): Promise<void> {
  const store = await DbmStore.open({ path, maxRecordBytes: 4 * 1024 * 1024 });
  try {
    const byPrefix = new Map(writers.map((writer) => [writer.prefix, writer]));
    for (const writer of writers) {
      for (const n of writer.acked) {
        const record = await store.get(steadyId(writer.prefix, n));
        const written = payloadOf(writer.prefix, n, writer.recordBytes);
        expect(`${writer.prefix} ${n} ${sameBytes(record?.data, written)}`).toBe(
          `${writer.prefix} ${n} whole`,
        );
      }
    }
    // A set that failed may have landed (its journal was complete): whole, never torn.
    const ids: string[] = [];
    for await (const id of store.ids()) ids.push(id);
    for (const id of ids) {
      const [prefix, , number] = id.split('-');
      const writer = byPrefix.get(prefix as string) as Writer;
      const data = (await store.get(id))?.data;
      const written = payloadOf(writer.prefix, Number(number), writer.recordBytes);
      expect(`${id} ${sameBytes(data, written)}`).toBe(`${id} whole`);
    }
  } finally {
    await store.close();
  }
}

/** `whole` when `data` is `expected`, else what differs: short enough for a failure to print. */
function sameBytes(data: Uint8Array | undefined, expected: Uint8Array): string {
  return data === undefined
    ? 'missing'
    : Buffer.from(data).equals(expected)
      ? 'whole'
      : `torn (${data.length} bytes)`;
}

describe('a holder of the global lock stopped past its lease', () => {
  it('is waited for, never taken over: every acknowledged write of both processes is kept whole', async () => {
    const path = newPath();
    await (await DbmStore.open({ path })).close();
    const [stalled, other] = await Promise.all([
      spawnWriter(path, 'stalled', 512 * 1024),
      spawnWriter(path, 'other', 2048),
    ]);
    for (let round = 0; round < 3; round++) {
      await sleep(100);
      await stopWhileHolding(stalled.child, path);
      // Past the stopped writer's 1 s lease, while the other writer keeps trying.
      await sleep(2500);
      stalled.child.kill('SIGCONT');
    }
    await sleep(200);
    await Promise.all([stopWriter(stalled), stopWriter(other)]);
    expect(stalled.acked.length).toBeGreaterThan(0);
    expect(other.acked.length).toBeGreaterThan(0);
    // The other writer waited (busy) while the lock's holder was stopped; the stopped one, once
    // running again, found its hold past its lease and wrote no more of its change.
    expect(other.failures).toContain('ERR_STORE_BUSY');
    for (const code of [...stalled.failures, ...other.failures]) {
      expect(['ERR_STORE_BUSY', 'ERR_STORE_IO']).toContain(code);
    }
    await expectIntact(path, [stalled, other]);
  }, 60_000);

  it('close() fails at once the operations waiting for it, and resolves', async () => {
    const path = newPath();
    await (await DbmStore.open({ path })).close();
    const stalled = await spawnWriter(path, 'stalled', 512 * 1024);
    const store = await DbmStore.open({ path, globalLockWaitMs: 60_000 });
    await stopWhileHolding(stalled.child, path);
    const waiting = store.get(steadyId('waiting', 0));
    const settled = waiting.then(
      () => 'resolved',
      (error: unknown) => (isSessionError(error) ? error.code : String(error)),
    );
    // Past the stopped holder's lease: it must still not be taken over.
    await sleep(1500);
    await store.close();
    expect(await settled).toBe('ERR_STORE_CLOSED');
    stalled.child.kill('SIGCONT');
    await stopWriter(stalled);
    await expectIntact(path, [stalled]);
  }, 30_000);

  it('a holder on another host is taken over once its lease ends, and, running again, writes nothing more of its change', async () => {
    const path = newPath();
    await (await DbmStore.open({ path })).close();
    const [stalled, other] = await Promise.all([
      spawnWriter(path, 'stalled', 512 * 1024, true),
      spawnWriter(path, 'other', 2048),
    ]);
    const ackedWhileStopped: number[] = [];
    for (let round = 0; round < 3; round++) {
      await sleep(100);
      await stopWhileHolding(stalled.child, path);
      const before = other.acked.length;
      await sleep(2500);
      ackedWhileStopped.push(other.acked.length - before);
      stalled.child.kill('SIGCONT');
    }
    await sleep(200);
    await Promise.all([stopWriter(stalled), stopWriter(other)]);
    // The other writer took the lock over while the holder was stopped.
    expect(Math.max(...ackedWhileStopped)).toBeGreaterThan(0);
    for (const code of [...stalled.failures, ...other.failures]) {
      expect(['ERR_STORE_BUSY', 'ERR_STORE_IO']).toContain(code);
    }
    await expectIntact(path, [stalled, other]);
  }, 60_000);

  /**
   * A running process that is not a store, and a lease of the global lock in its name that ended
   * a minute ago. With `opensFile`, it holds the dbm file open, as every store's process does.
   */
  async function endedLeaseOfRunningProcess(path: string, opensFile = true): Promise<number> {
    const opens = opensFile ? `require('node:fs').openSync(${JSON.stringify(path)}, 'r');` : '';
    const sleeper = spawn(
      process.execPath,
      ['-e', `${opens} process.stdout.write('ready'); setInterval(() => {}, 60_000)`],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    children.push(sleeper);
    await new Promise((resolve) => sleeper.stdout?.once('data', resolve));
    const pid = sleeper.pid as number;
    const lease = {
      token: 'stopped',
      expiresAt: Date.now() - 60_000,
      pid,
      host: hostname().slice(0, 64),
    };
    writeFileSync(`${path}.locks/0.lock`, JSON.stringify(lease));
    return pid;
  }

  it('an ended lease of a live process is waited for, and ERR_STORE_BUSY names the process', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path, globalLockWaitMs: 300 });
    try {
      const pid = await endedLeaseOfRunningProcess(path);
      const error = await store.get(steadyId('waiting', 0)).then(
        () => undefined,
        (failure: unknown) => failure,
      );
      expect(isSessionError(error) && error.code).toBe('ERR_STORE_BUSY');
      expect((error as Error).message).toContain(`process ${pid}, which is alive`);
      expect(store.stats().globalLock.liveHolderWaits).toBeGreaterThan(0);
    } finally {
      await store.close();
    }
  });

  it('an ended lease whose pid names a live process without the file open (a pid of another PID namespace, say) is taken over', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path, globalLockWaitMs: 300 });
    try {
      await endedLeaseOfRunningProcess(path, false);
      expect(await store.get(steadyId('waiting', 0))).toBeUndefined();
      expect(store.stats().globalLock.liveHolderWaits).toBe(0);
      expect(store.stats().globalLock.takeovers).toBeGreaterThan(0);
    } finally {
      await store.close();
    }
  });

  it('an ended lease whose pid now names a process started after it (the holder died) is taken over', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path, globalLockWaitMs: 300 });
    try {
      await endedLeaseOfRunningProcess(path);
      // Written an hour before the process with its pid started.
      const hourAgo = (Date.now() - 3_600_000) / 1000;
      utimesSync(`${path}.locks/0.lock`, hourAgo, hourAgo);
      expect(await store.get(steadyId('waiting', 0))).toBeUndefined();
      expect(store.stats().globalLock.takeovers).toBe(1);
    } finally {
      await store.close();
    }
  });

  it('an ended lease of a process that died, left unreaped by its parent (a zombie), is taken over', async () => {
    const path = newPath();
    const store = await DbmStore.open({ path, globalLockWaitMs: 300 });
    try {
      // `sleep 60` takes the place of the shell and never reaps the shell's exited child.
      const parent = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 60'], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      children.push(parent);
      const pid = Number(
        await new Promise<string>((resolve) => {
          parent.stdout?.once('data', (chunk) => resolve(String(chunk)));
        }),
      );
      while (!readFileSync(`/proc/${pid}/stat`, 'latin1').includes(') Z ')) await sleep(5);
      const lease = {
        token: 'dead',
        expiresAt: Date.now() - 60_000,
        pid,
        host: hostname().slice(0, 64),
      };
      writeFileSync(`${path}.locks/0.lock`, JSON.stringify(lease));
      expect(await store.get(steadyId('waiting', 0))).toBeUndefined();
      expect(store.stats().globalLock.takeovers).toBe(1);
    } finally {
      await store.close();
    }
  });
});
