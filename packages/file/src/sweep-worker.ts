// The sweep worker thread: the same record rules as the store, with synchronous calls.
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { HostGuards } from '@sessile/core/store';
import { errorCode, syncFileSystem } from './fs.js';
import { RecordFiles, TEMP_SUFFIX, uniqueSuffix } from './record-files.js';
import type { SweepReply, SweepRequest, SweepWorkerInit } from './sweep-protocol.js';

/** The sweep thread's nice value (0 is normal, 19 the lowest priority). */
const SWEEP_THREAD_NICE = 10;
const init = workerData as SweepWorkerInit;

// The sweep is background work: on Linux, give this thread (not the process) a lower CPU
// priority, so requests on the event loop's thread come first when the cores are busy.
try {
  const thread = Number(readlinkSync('/proc/thread-self').split('/').pop());
  if (Number.isInteger(thread)) setPriority(thread, SWEEP_THREAD_NICE);
} catch {
  // Not Linux, or not allowed: the sweep runs at normal priority.
}
// Never takes a guard: it only judges and removes stale ones, as the sweep on the main thread would.
const guards = new HostGuards({
  directory: init.guardsDirectory,
  staleMs: init.guardStaleMs,
  fileMode: init.fileMode,
  directoryMode: init.directoryMode,
  fs: syncFileSystem,
  asideName: (file) => `${file}.${uniqueSuffix()}${TEMP_SUFFIX}`,
});
const files = new RecordFiles(init.settings, syncFileSystem, guards);
const stopped = new Int32Array(init.stop);

parentPort?.on('message', async (request: SweepRequest) => {
  // The store writes a step's id here to stop it: a message would wait for the step to end.
  const stop = {
    get aborted() {
      return Atomics.load(stopped, 0) === request.id;
    },
  };
  let reply: SweepReply;
  try {
    reply = { id: request.id, result: await files.sweepStep(request, stop) };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const code = errorCode(error);
    reply = { id: request.id, error: code === undefined ? { message } : { message, code } };
  }
  parentPort?.postMessage(reply);
});
