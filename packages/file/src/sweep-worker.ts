// The sweep worker thread: the same record rules as the store, with synchronous calls.
import { parentPort, workerData } from 'node:worker_threads';
import { errorCode, syncFileSystem } from './fs.js';
import { RecordFiles, TEMP_SUFFIX, uniqueSuffix } from './record-files.js';
import type { SweepReply, SweepRequest, SweepWorkerInit } from './sweeper.js';
import { WriteGuards } from './write-guards.js';

const init = workerData as SweepWorkerInit;
// Never takes a guard: it only judges and removes stale ones, as the sweep on the main thread would.
const guards = new WriteGuards({
  directory: init.guardsDirectory,
  staleMs: init.guardStaleMs,
  fileMode: init.fileMode,
  directoryMode: init.directoryMode,
  fs: syncFileSystem,
  asideName: (file) => `${file}.${uniqueSuffix()}${TEMP_SUFFIX}`,
});
const files = new RecordFiles(init.settings, syncFileSystem, guards);

parentPort?.on('message', async (request: SweepRequest) => {
  let reply: SweepReply;
  try {
    reply = { id: request.id, result: await files.sweepStep(request) };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const code = errorCode(error);
    reply = { id: request.id, error: code === undefined ? { message } : { message, code } };
  }
  parentPort?.postMessage(reply);
});
