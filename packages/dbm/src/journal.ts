import { SessionError } from '@sessile/core';
import type { FileIo } from './file-io.js';
import {
  decodeHeader,
  decodeJournal,
  decodeJournalHead,
  encodeJournal,
  HEADER_REGION_BYTES,
  HEADER_USED_BYTES,
  type HeaderState,
  JOURNAL_BYTES,
  JOURNAL_HEAD_BYTES,
  JOURNAL_OFFSET,
  type JournalWrite,
} from './format.js';

/**
 * The redo journal at `JOURNAL_OFFSET`. A change is written here in full, with a checksum,
 * before any of it is applied; whoever reads the header next replays a complete journal newer
 * than it, and ignores a torn one, since nothing a torn journal describes was applied yet.
 */
export class Journal {
  readonly #io: FileIo;
  /** Journals replayed after a writer died mid-change. */
  recoveries = 0;

  constructor(io: FileIo) {
    this.#io = io;
  }

  /**
   * Journals `writes` under sequence number `seq`, then applies them in order. The caller puts
   * the header last. `syncFirst` flushes writes made outside the journal before it. Throws
   * `ERR_STORE_IO` without writing anything when the change does not fit.
   */
  commit(seq: number, writes: JournalWrite[], syncFirst: boolean): void {
    const io = this.#io;
    const journal = encodeJournal(seq, writes);
    if (journal.length > JOURNAL_BYTES) {
      throw new SessionError(
        'ERR_STORE_IO',
        `A single change is too large for the journal of the dbm file ${io.path}`,
      );
    }
    if (syncFirst) io.sync();
    io.write(JOURNAL_OFFSET, journal);
    io.sync();
    for (const write of writes) io.write(write.offset, write.bytes);
    io.sync();
  }

  /**
   * Writes the empty journal of a new file, zeros over its whole region: the region's blocks are
   * then allocated for good, so no commit needs new space for its journal, and on a full disk
   * the changes that free space (`delete`, the sweep, `clear`) still commit. A region left
   * sparse failed every journal longer than the longest one before it with `ENOSPC`.
   */
  reset(): void {
    this.#io.write(JOURNAL_OFFSET, Buffer.alloc(JOURNAL_BYTES));
  }

  /** The header as it is on disk, without replaying anything: for a check made without the lock. */
  peekHeader(): HeaderState {
    return decodeHeader(this.#io.read(0, HEADER_USED_BYTES));
  }

  /** The header as the last complete change left it, replaying a crashed writer's journal first. */
  readHeader(): HeaderState {
    const io = this.#io;
    const buf = io.read(0, HEADER_REGION_BYTES + JOURNAL_HEAD_BYTES);
    const state = decodeHeader(buf.subarray(0, HEADER_USED_BYTES));
    const journal = decodeJournalHead(buf.subarray(HEADER_REGION_BYTES));
    const behind =
      journal !== undefined &&
      (state.kind === 'damaged' || (state.kind === 'ok' && journal.seq > state.header.appliedSeq));
    if (!behind) return state;
    // A writer died after its journal was complete: replay it. A torn journal is ignored, since
    // nothing it describes was applied yet.
    const whole = io.read(JOURNAL_OFFSET, JOURNAL_HEAD_BYTES + journal.bodyBytes);
    const writes = decodeJournal(whole, journal);
    if (writes === undefined || !endsWithOwnHeader(writes, journal.seq)) return state;
    for (const write of writes) io.write(write.offset, write.bytes);
    io.sync();
    this.recoveries++;
    return decodeHeader(io.read(0, HEADER_USED_BYTES));
  }
}

/**
 * True when the journal's last write is the header image of its own sequence number. Journals are
 * written front to back, so a new image means a complete journal: a guard beside the check
 * against a kill that cut the journal before its last page and left the previous journal's tail.
 */
function endsWithOwnHeader(writes: JournalWrite[], seq: number): boolean {
  const last = writes[writes.length - 1];
  if (last === undefined || last.offset !== 0 || last.bytes.length !== HEADER_USED_BYTES) {
    return false;
  }
  const image = decodeHeader(
    Buffer.from(last.bytes.buffer, last.bytes.byteOffset, last.bytes.length),
  );
  return image.kind === 'ok' && image.header.appliedSeq === seq;
}

/** Merges overlapping and adjacent writes into one each, later writes winning, so fewer syscalls apply them. */
export function coalesce(writes: JournalWrite[]): JournalWrite[] {
  const ordered = writes.map((write, order) => ({ ...write, order }));
  ordered.sort((a, b) => a.offset - b.offset || a.order - b.order);
  const merged: JournalWrite[] = [];
  let cluster: typeof ordered = [];
  let clusterEnd = -1;
  const flush = () => {
    if (cluster.length === 1) merged.push(cluster[0] as JournalWrite);
    else if (cluster.length > 1) {
      const start = (cluster[0] as JournalWrite).offset;
      const bytes = Buffer.alloc(clusterEnd - start);
      cluster.sort((a, b) => a.order - b.order);
      for (const write of cluster) bytes.set(write.bytes, write.offset - start);
      merged.push({ offset: start, bytes });
    }
    cluster = [];
  };
  for (const write of ordered) {
    if (write.offset > clusterEnd) flush();
    cluster.push(write);
    clusterEnd = Math.max(clusterEnd, write.offset + write.bytes.length);
  }
  flush();
  return merged;
}
