// Runs in a worker thread with its own connection, so copying the WAL back into the database
// and the fsyncs that go with it never block the event loop of the process serving requests.
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

/** How often an idle worker looks at the WAL. */
const IDLE_INTERVAL_MS = 100;
/** How soon it checkpoints again while writes keep coming. */
const BUSY_INTERVAL_MS = 5;

const { path } = workerData as { path: string };
const db = new Database(path, { fileMustExist: true });
db.pragma('busy_timeout = 0');
db.pragma('synchronous = NORMAL');
let timer: NodeJS.Timeout | undefined;
let lastCheckpointed = -1;

function checkpoint(): void {
  let progressed = false;
  try {
    // PASSIVE copies what it can without waiting for readers or writers.
    const [result] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{
      log: number;
      checkpointed: number;
    }>;
    if (result !== undefined) {
      progressed = result.log > 0 && result.checkpointed !== lastCheckpointed;
      lastCheckpointed = result.checkpointed;
    }
  } catch {
    // Another process is checkpointing, or the database is briefly locked: try again later.
  }
  timer = setTimeout(checkpoint, progressed ? BUSY_INTERVAL_MS : IDLE_INTERVAL_MS);
}

parentPort?.on('message', (message: unknown) => {
  if (message !== 'close') return;
  clearTimeout(timer);
  db.close();
  parentPort?.close();
});

checkpoint();
