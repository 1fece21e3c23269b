// Runs in a worker thread with its own connection, so copying the WAL back into the database
// and the fsyncs that go with it never block the event loop of the process serving requests.
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { WorkerReport } from './checkpointer.js';
import { LOW_SPACE_WAL_PAGES, lowOnSpace, walFileBytes, walSizeLimitBytes } from './wal-space.js';

/** How often an idle worker looks at the WAL. The store wakes it sooner when writes resume. */
const IDLE_INTERVAL_MS = 100;
/** How soon it checkpoints again while writes keep coming. */
const BUSY_INTERVAL_MS = 5;
/**
 * A rewind leaves exactly one frame in the WAL: page 1, which holds `user_version`. A fully
 * copied WAL longer than that holds the store's writes, so the next one would restart it.
 */
const REWOUND_FRAMES = 1;
/** WAL header and frame header sizes, from SQLite's file format. */
const WAL_HEADER_BYTES = 32;
const FRAME_HEADER_BYTES = 24;
/** An idle, fully copied WAL file longer than this many frames (256 KiB at 4 KiB pages) is truncated. */
const IDLE_SLACK_FRAMES = 64;

interface CheckpointResult {
  busy: number;
  log: number;
  checkpointed: number;
}

const { path } = workerData as { path: string };
const db = new Database(path, { fileMustExist: true });
db.pragma('busy_timeout = 0');
db.pragma('synchronous = NORMAL');
const frameBytes = (db.pragma('page_size', { simple: true }) as number) + FRAME_HEADER_BYTES;
let timer: NodeJS.Timeout | undefined;
let lastLog = -1;
let lastCheckpointed = -1;
/** Checkpoints in a row that found the WAL as the one before left it. */
let quietChecks = 0;
let lowSpace: boolean | undefined;
/** The WAL length at which the next forced restart is tried, after one that could not finish. */
let nextRestartAt = LOW_SPACE_WAL_PAGES;

function checkpoint(): void {
  timer = undefined;
  let progressed = false;
  try {
    // PASSIVE copies what it can without waiting for readers or writers.
    const result = walCheckpoint('PASSIVE');
    if (result !== undefined) {
      const { log, checkpointed } = result;
      quietChecks = log === lastLog && checkpointed === lastCheckpointed ? quietChecks + 1 : 0;
      progressed = log > 0 && checkpointed !== lastCheckpointed;
      // A shorter log than last time means the WAL restarted.
      if (log < lastLog) nextRestartAt = LOW_SPACE_WAL_PAGES;
      lastLog = log;
      lastCheckpointed = checkpointed;
      const walBytes = walFileBytes(path);
      setLowSpace(lowOnSpace(path, walBytes));
      if (lowSpace && log >= nextRestartAt) {
        // A reader pinning the WAL makes RESTART hold the write lock while it waits, so after a
        // failure the next try waits for the WAL to grow by as much again.
        if (!restart()) nextRestartAt = log + LOW_SPACE_WAL_PAGES;
      } else if (checkpointed === log) {
        // Rewound here, however short: otherwise the store's next write restarts the WAL and
        // fsyncs its header on the event loop (a sweep batch after each checkpoint, every time).
        if (log > REWOUND_FRAMES) rewind();
        // Quiet for a whole idle interval: no write is coming that would reuse the file.
        else if (quietChecks >= 2 && walBytes > WAL_HEADER_BYTES + IDLE_SLACK_FRAMES * frameBytes) {
          truncate();
        }
      }
    }
  } catch {
    // Another process is checkpointing, or the database is briefly locked: try again later.
  }
  // Tells the store a checkpoint has run, so a sweep waiting between batches goes on; whether
  // this worker now idles, so the store's next write wakes it; and whether space is short.
  const report: WorkerReport = { idle: !progressed, lowSpace: lowSpace === true };
  parentPort?.postMessage(report);
  timer = setTimeout(checkpoint, progressed ? BUSY_INTERVAL_MS : IDLE_INTERVAL_MS);
}

function walCheckpoint(mode: 'PASSIVE' | 'RESTART' | 'TRUNCATE'): CheckpointResult | undefined {
  const [result] = db.pragma(`wal_checkpoint(${mode})`) as CheckpointResult[];
  return result;
}

function setLowSpace(low: boolean): void {
  if (low === lowSpace) return;
  lowSpace = low;
  // The rewinds below restart the WAL, and a restarting commit cuts the file back to this size.
  db.pragma(`journal_size_limit = ${walSizeLimitBytes(low)}`);
}

/**
 * Low on space. SQLite restarts the WAL only when a write starts while it is fully copied, which
 * a steady stream of writes never allows: PASSIVE always finds new frames behind the ones it
 * copied. RESTART takes the write lock to copy those last frames and sync the database, so a
 * pause in the writes restarts the WAL from here. It does not wait for the lock: a RESTART that
 * waits holds the checkpoint lock all the while, and the store's connection, which keeps the
 * WAL short under a stream of writes (see `LOW_SPACE_WAL_PAGES`), cannot checkpoint then.
 */
function restart(): boolean {
  if (walCheckpoint('RESTART')?.busy !== 0) return false;
  rewind();
  return true;
}

/** Idle: cut the WAL file back to nothing, so its space goes back to the disk. */
function truncate(): void {
  if (walCheckpoint('TRUNCATE')?.busy === 0) rewind();
}

/**
 * The first write after a full checkpoint restarts the WAL, and SQLite fsyncs the new WAL header
 * inside that write's commit. Making that write here (rewriting `user_version` with its own
 * value) keeps the fsync on this thread instead of in a request's commit on the event loop.
 */
function rewind(): void {
  try {
    db.exec('BEGIN IMMEDIATE');
  } catch {
    return; // A writer holds the lock; it will rewind the WAL itself.
  }
  try {
    const version = db.pragma('user_version', { simple: true }) as number;
    db.pragma(`user_version = ${version}`);
    db.exec('COMMIT');
  } catch {
    if (db.inTransaction) db.exec('ROLLBACK');
  }
}

parentPort?.on('message', (message: unknown) => {
  if (message === 'wake') {
    // The store has written since this worker last looked: look now, not at the next tick.
    if (timer !== undefined) {
      clearTimeout(timer);
      checkpoint();
    }
    return;
  }
  if (message !== 'close') return;
  clearTimeout(timer);
  db.close();
  parentPort?.close();
});

checkpoint();
