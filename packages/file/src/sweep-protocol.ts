/** What the store, the sweep pass and the sweep worker thread exchange. */

/** One directory entry of a shard, as the sweep walks them. */
export interface SweepEntry {
  shard: string;
  name: string;
}

/** The settings `RecordFiles` needs; plain data, so a sweep worker can be given the same. */
export interface RecordFilesSettings {
  /** The store's directory, symlinks resolved. */
  path: string;
  /** mtimes round-trip to the millisecond. */
  mtimeExact: boolean;
  /**
   * `a` and `A` are different names here: a record file whose header names the id with other
   * letter case is then damaged, not another id's record under a folded name.
   */
  caseSensitive: boolean;
  /**
   * Exact mtimes and case-sensitive names: an mtime after `now` then proves a live record of
   * exactly this id, so hot paths can decide from one lstat without opening the file.
   */
  statIsEnough: boolean;
  sweepMode: 'fast' | 'verify';
  graceMs: number;
  maxOpenFiles: number;
  /** For the owner index's entries and directories. */
  fileMode: number;
  directoryMode: number;
  /** `durability: 'full'`. */
  fsync: boolean;
}

/** One step of a sweep pass: the next `size` entries after `after`, in (shard, name) order. */
export interface SweepStepRequest {
  /** The store's shard directories, sorted; those before `after.shard` are skipped. */
  shards: string[];
  /** The last entry already handled (`name` '' before a shard's first). */
  after: SweepEntry;
  size: number;
  now: number;
  /**
   * When the call's budget ends, in `Date.now()` ms (Infinity for none). Past its first
   * `MIN_STEP_ENTRIES` entries the step stops there, so a slow disk cannot stretch the call.
   */
  deadline: number;
  /** Paths with a write in flight in the store's thread: left for the next pass. */
  busy: string[];
}

/** What tells a running step to stop before its next entry: an `AbortSignal`, or the worker's flag. */
export interface StopSignal {
  readonly aborted: boolean;
}

export interface SweepStep {
  removed: number;
  scanned: number;
  /** The last entry examined, where the next step starts; undefined when none was. */
  last: SweepEntry | undefined;
  /** The pass reached the end of the last shard (a step that stopped early has not). */
  ended: boolean;
  /** Some entry was left because a write to it was in flight, or a shard could not be listed. */
  leftBusy: boolean;
  /** The earliest instant at which a record the step kept expires (Infinity when none). */
  liveUntil: number;
}

/** Where the sweep's per-entry work runs: on this thread, or on a worker thread. */
export interface Sweeper {
  /**
   * Lists what it needs and sweeps the next entries of the pass; one round trip per step.
   * Once `stop` aborts, the step ends before its next entry.
   */
  sweepStep(request: SweepStepRequest, stop?: AbortSignal): Promise<SweepStep>;
  close(): Promise<void>;
}

/** What the sweep worker needs to rebuild the store's `RecordFiles` on its own thread. */
export interface SweepWorkerInit {
  settings: RecordFilesSettings;
  guardsDirectory: string;
  guardStaleMs: number;
  fileMode: number;
  directoryMode: number;
  /** One Int32: the id of the request the store told to stop (see `WorkerSweeper.sweepStep`). */
  stop: SharedArrayBuffer;
}

export type SweepRequest = SweepStepRequest & { id: number };

export type SweepReply =
  | { id: number; result: unknown }
  | { id: number; error: { message: string; code?: string } };
