import { fstatSync } from 'node:fs';
import type { FileIo } from './file-io.js';
import {
  CLASS_SIZES,
  classOf,
  classSize,
  DATA_START,
  encodeHeader,
  type FileHeader,
  type JournalWrite,
  PAGE_BYTES,
  TRUNK_HEADER_BYTES,
  TRUNK_MAGIC,
  trunkSlots,
} from './format.js';
import { coalesce, type Journal } from './journal.js';

export interface Extent {
  offset: number;
  size: number;
  /** True when nothing committed refers to this space, so it may be written before the commit. */
  fresh: boolean;
}

/**
 * One atomic change to the file. Writes to space the committed state refers to are buffered,
 * written to the journal first, then applied, header last; a crash before the journal is
 * complete loses the change, a crash after it is replayed. Writes to unreferenced space go to
 * the file before the journal, those that adjoin (a new record and a new owner list at the
 * file's end) in one system call.
 */
export class Transaction {
  readonly header: FileHeader;
  readonly #io: FileIo;
  readonly #journal: Journal;
  readonly #writes = new Map<string, JournalWrite>();
  /** Writes to unreferenced space, by offset and length: the last one to each place counts. */
  readonly #fresh = new Map<string, FreshWrite>();
  readonly #freed = new Set<number>();
  /** Free-list trunk headers this transaction has read or written, so each is read once. */
  readonly #trunks = new Map<number, { next: number; count: number }>();
  #pendingBytes = 0;
  /** Where the committed state's allocations end: nothing past it is referenced. */
  #committedEnd: number;

  readonly #onCommit: (header: FileHeader) => void;

  /** `onCommit` runs after each commit that reached the file, with the header it left. */
  constructor(
    io: FileIo,
    journal: Journal,
    header: FileHeader,
    onCommit: (header: FileHeader) => void = () => {},
  ) {
    this.#io = io;
    this.#journal = journal;
    this.header = header;
    this.#committedEnd = header.fileEnd;
    this.#onCommit = onCommit;
  }

  /** The database file's path, for error messages. */
  get path(): string {
    return this.#io.path;
  }

  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** Reads as this transaction would leave the file. */
  read(offset: number, length: number): Buffer {
    const buf = this.#io.read(offset, length);
    if (this.#fresh.size > 0) overlay(buf, offset, this.#fresh);
    if (this.#writes.size > 0) overlay(buf, offset, this.#writes);
    return buf;
  }

  write(offset: number, bytes: Uint8Array): void {
    this.#buffer(offset, Uint8Array.from(bytes));
  }

  /** As `write`, for bytes that nobody changes afterwards: they are kept without a copy. */
  writeFinal(offset: number, bytes: Uint8Array): void {
    this.#buffer(offset, bytes);
  }

  #buffer(offset: number, bytes: Uint8Array): void {
    const key = `${offset}:${bytes.length}`;
    const previous = this.#writes.get(key);
    if (previous !== undefined) {
      this.#pendingBytes -= 12 + previous.bytes.length;
      this.#writes.delete(key);
    }
    this.#writes.set(key, { offset, bytes });
    this.#pendingBytes += 12 + bytes.length;
  }

  /** Writes to space nothing committed refers to: they reach the file first at commit. */
  writeFresh(offset: number, bytes: Uint8Array): void {
    this.#writeFresh(offset, Uint8Array.from(bytes), offset + bytes.length);
  }

  /** `extentEnd`: where the unreferenced space written into ends, at or past the bytes' end. */
  #writeFresh(offset: number, bytes: Uint8Array, extentEnd: number): void {
    const key = `${offset}:${bytes.length}`;
    this.#fresh.delete(key);
    this.#fresh.set(key, { offset, bytes, extentEnd });
  }

  /** Writes `bytes`, which nobody changes afterwards, into `extent` the way its freshness allows. */
  writeExtent(extent: Extent, bytes: Uint8Array): void {
    if (extent.fresh) this.#writeFresh(extent.offset, bytes, extent.offset + extent.size);
    else this.writeFinal(extent.offset, bytes);
  }

  /**
   * Space for `bytes`, from the class's free list or the end of the file. `mustBeFresh` skips
   * free space that would have to be written through the journal.
   */
  allocate(bytes: number, mustBeFresh: boolean): Extent {
    const sizeClass = classOf(bytes);
    const size = classSize(sizeClass);
    const header = this.header;
    const list = this.#freeList(sizeClass);
    if (list !== undefined) {
      const { head, trunk } = list;
      if (trunk.count > 0) {
        const slotAt = head + TRUNK_HEADER_BYTES + 8 * (trunk.count - 1);
        const offset = this.read(slotAt, 8).readDoubleLE(0);
        if (!this.isPlausibleExtent(offset, size)) {
          // A slot that names no extent of this class: the list is dropped as a damaged page is.
          this.#dropList(sizeClass);
        } else {
          const fresh = !this.#freed.has(offset);
          if (fresh || !mustBeFresh) {
            this.#setTrunkCount(head, trunk, trunk.count - 1);
            return { offset, size, fresh };
          }
        }
      } else if (!mustBeFresh) {
        this.#trunks.delete(head);
        header.freeHeads[sizeClass] = trunk.next;
        return { offset: head, size, fresh: false };
      }
    }
    const offset = header.fileEnd;
    header.fileEnd += size;
    return { offset, size, fresh: true };
  }

  /** Returns an extent to its class's free list. */
  release(offset: number, size: number): void {
    const sizeClass = classOf(size);
    const header = this.header;
    this.#freed.add(offset);
    const list = this.#freeList(sizeClass);
    if (list !== undefined && list.trunk.count < trunkSlots(sizeClass)) {
      const slot = Buffer.allocUnsafe(8);
      slot.writeDoubleLE(offset, 0);
      this.write(list.head + TRUNK_HEADER_BYTES + 8 * list.trunk.count, slot);
      this.#setTrunkCount(list.head, list.trunk, list.trunk.count + 1);
      return;
    }
    const head = header.freeHeads[sizeClass] ?? 0;
    const trunk = Buffer.alloc(TRUNK_HEADER_BYTES);
    trunk.writeDoubleLE(head, 0);
    trunk.writeUInt32LE(TRUNK_MAGIC, 12);
    this.write(offset, trunk);
    this.#trunks.set(offset, { next: head, count: 0 });
    header.freeHeads[sizeClass] = offset;
  }

  /**
   * The first page of the class's free list, or undefined when the list is empty or that page
   * fails its check. A damaged list is dropped, its space never reused, so that damage to it
   * costs some space instead of every new record of the class.
   */
  #freeList(sizeClass: number): { head: number; trunk: Trunk } | undefined {
    const head = this.header.freeHeads[sizeClass] ?? 0;
    if (head === 0) return undefined;
    const trunk = this.#trunk(head, sizeClass);
    if (trunk === undefined) this.#dropList(sizeClass);
    return trunk === undefined ? undefined : { head, trunk };
  }

  #dropList(sizeClass: number): void {
    this.header.freeHeads[sizeClass] = 0;
  }

  /** True when an entry's extent is one this file could have allocated, so freeing it is safe. */
  isPlausibleExtent(offset: number, size: number): boolean {
    return (
      Number.isInteger(offset) &&
      offset >= DATA_START &&
      offset + size <= this.header.fileEnd &&
      CLASS_SIZES[classOf(size)] === size
    );
  }

  /** Journals and applies every buffered write plus the header. */
  commit(): void {
    const header = this.header;
    header.appliedSeq += 1;
    const writes = [
      ...coalesce([...this.#writes.values()]),
      { offset: 0, bytes: encodeHeader(header) },
    ];
    const wroteFresh = this.#fresh.size > 0;
    try {
      if (wroteFresh) this.#writeFreshRunsOrGiveBack();
      this.#journal.commit(header.appliedSeq, writes, wroteFresh);
    } catch (error) {
      header.appliedSeq -= 1;
      throw error;
    }
    this.#committedEnd = header.fileEnd;
    this.#writes.clear();
    this.#fresh.clear();
    this.#freed.clear();
    this.#trunks.clear();
    this.#pendingBytes = 0;
    this.#onCommit(header);
  }

  /**
   * Writes the fresh writes; when one fails (a full disk), cuts the file back to where the
   * committed state ends, so the blocks the failed writes took past it go back to the disk
   * instead of staying with the file until it grows over them.
   */
  #writeFreshRunsOrGiveBack(): void {
    try {
      this.#writeFreshRuns();
    } catch (error) {
      try {
        if (fstatSync(this.#io.fd).size > this.#committedEnd) {
          this.#io.truncate(this.#committedEnd);
        }
      } catch {
        // The write's own error says what went wrong; the space stays until a write reaches it.
        // A fence that refused the cut (the lock was lost) keeps the file as its new holder left it.
      }
      throw error;
    }
  }

  /**
   * Writes the fresh writes, each run of adjoining extents in one call (the rest of an extent
   * between them written as zeros), or one by one in order when any overlap.
   */
  #writeFreshRuns(): void {
    if (this.#fresh.size <= 1) {
      for (const { offset, bytes } of this.#fresh.values()) this.#io.write(offset, bytes);
      return;
    }
    const fresh = [...this.#fresh.values()];
    const ordered = fresh.slice().sort((a, b) => a.offset - b.offset);
    for (let i = 1; i < ordered.length; i++) {
      if ((ordered[i - 1] as FreshWrite).extentEnd > (ordered[i] as FreshWrite).offset) {
        for (const { offset, bytes } of fresh) this.#io.write(offset, bytes);
        return;
      }
    }
    let start = 0;
    let run: Uint8Array[] = [];
    for (let i = 0; i < ordered.length; i++) {
      const write = ordered[i] as FreshWrite;
      if (run.length === 0) start = write.offset;
      run.push(write.bytes);
      const next = ordered[i + 1];
      const gap = write.extentEnd - (write.offset + write.bytes.length);
      if (next !== undefined && next.offset === write.extentEnd && gap <= ZEROS.length) {
        if (gap > 0) run.push(ZEROS.subarray(0, gap));
        continue;
      }
      this.#io.writeRun(start, run);
      run = [];
    }
  }

  /** The free-list page at `offset` of the class, or undefined when it fails its check. */
  #trunk(offset: number, sizeClass: number): Trunk | undefined {
    let trunk = this.#trunks.get(offset);
    if (trunk === undefined) {
      if (!this.isPlausibleExtent(offset, classSize(sizeClass))) return undefined;
      const buf = this.read(offset, TRUNK_HEADER_BYTES);
      const count = buf.readUInt32LE(8);
      if (buf.readUInt32LE(12) !== TRUNK_MAGIC || count > trunkSlots(sizeClass)) return undefined;
      trunk = { next: buf.readDoubleLE(0), count };
      this.#trunks.set(offset, trunk);
    }
    return trunk;
  }

  #setTrunkCount(offset: number, trunk: Trunk, count: number): void {
    trunk.count = count;
    this.write(offset + 8, u32(count));
  }
}

/** A write to unreferenced space, and where the extent it lies in ends. */
interface FreshWrite extends JournalWrite {
  extentEnd: number;
}

/** The rest of a fresh extent, up to this much, is written as zeros to join it to the next. */
const ZEROS = new Uint8Array(PAGE_BYTES);

/** A free-list page's header: the next page of its list, and how many free extents it names. */
interface Trunk {
  next: number;
  count: number;
}

function u32(value: number): Buffer {
  const buf = Buffer.allocUnsafe(4);
  buf.writeUInt32LE(value, 0);
  return buf;
}

/** Copies into `buf`, read from `offset`, what `writes` put there, in their order. */
function overlay(
  buf: Buffer,
  offset: number,
  writes: Map<string, JournalWrite | FreshWrite>,
): void {
  const end = offset + buf.length;
  for (const write of writes.values()) {
    const writeEnd = write.offset + write.bytes.length;
    if (writeEnd <= offset || write.offset >= end) continue;
    const from = Math.max(offset, write.offset);
    const to = Math.min(end, writeEnd);
    buf.set(write.bytes.subarray(from - write.offset, to - write.offset), from - offset);
  }
}
