import { fdatasyncSync, ftruncateSync, readSync, writeSync } from 'node:fs';
import type { SessionRecord } from '@sessile/core';
import { fnv1a32, isSessionId, SessionError } from '@sessile/core';
import {
  bucketHash,
  CLASS_SIZES,
  classOf,
  classSize,
  crc32,
  DATA_START,
  decodeHeader,
  decodeJournal,
  decodeJournalHead,
  decodeRecordHead,
  ENTRIES_PER_PAGE,
  type Entry,
  encodeHeader,
  encodeJournal,
  type FileHeader,
  HEADER_REGION_BYTES,
  HEADER_USED_BYTES,
  type HeaderState,
  JOURNAL_BYTES,
  JOURNAL_HEAD_BYTES,
  JOURNAL_OFFSET,
  type JournalWrite,
  MAX_SEGMENTS,
  newHeader,
  newPage,
  PAGE_BYTES,
  PAGE_MAGIC,
  type RecordHead,
  readEntry,
  recordBytes,
  TRUNK_HEADER_BYTES,
  TRUNK_MAGIC,
  touchedRecordTail,
  trunkSlots,
  writeEntry,
} from './format.js';

/** Records up to this size are rewritten in place (through the journal) when their class fits. */
const IN_PLACE_MAX_BYTES = 64 * 1024;
/** Larger records always go to unreferenced space, so the journal never has to copy them. */
const JOURNALED_RECORD_MAX_BYTES = 32 * 1024;
/** A sweep commits and starts a new transaction once its journal grows past this. */
const JOURNAL_SOFT_LIMIT_BYTES = 256 * 1024;

function damaged(what: string): SessionError {
  return new SessionError('ERR_STORE_IO', `The dbm file is damaged: ${what}`);
}

function corruptRecord(): SessionError {
  return new SessionError(
    'ERR_CORRUPT_RECORD',
    'The stored record for this session id cannot be decoded',
  );
}

/** Positional, synchronous reads and writes on one descriptor. */
class FileIo {
  constructor(
    readonly fd: number,
    readonly fsync: boolean,
  ) {}

  /** Reads `length` bytes; bytes past the end of the file read as zeros. */
  read(offset: number, length: number): Buffer {
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const read = readSync(this.fd, buf, done, length - done, offset + done);
      if (read === 0) break;
      done += read;
    }
    return buf;
  }

  write(offset: number, bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length) {
      done += writeSync(this.fd, bytes, done, bytes.length - done, offset + done);
    }
  }

  sync(): void {
    if (this.fsync) fdatasyncSync(this.fd);
  }
}

export interface Extent {
  offset: number;
  size: number;
  /** True when nothing committed refers to this space, so it may be written before the commit. */
  fresh: boolean;
}

/**
 * One atomic change to the file. Writes to space the committed state refers to are buffered,
 * written to the journal first, then applied, header last; a crash before the journal is
 * complete loses the change, a crash after it is replayed. Writes to unreferenced space go
 * straight to the file.
 */
export class Transaction {
  readonly header: FileHeader;
  readonly #io: FileIo;
  readonly #writes = new Map<string, JournalWrite>();
  readonly #freed = new Set<number>();
  /** Free-list trunk headers this transaction has read or written, so each is read once. */
  readonly #trunks = new Map<number, { next: number; count: number }>();
  #pendingBytes = 0;
  #wroteFresh = false;

  constructor(io: FileIo, header: FileHeader) {
    this.#io = io;
    this.header = header;
  }

  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** Reads as this transaction would leave the file. */
  read(offset: number, length: number): Buffer {
    const buf = this.#io.read(offset, length);
    const end = offset + length;
    for (const write of this.#writes.values()) {
      const writeEnd = write.offset + write.bytes.length;
      if (writeEnd <= offset || write.offset >= end) continue;
      const from = Math.max(offset, write.offset);
      const to = Math.min(end, writeEnd);
      buf.set(write.bytes.subarray(from - write.offset, to - write.offset), from - offset);
    }
    return buf;
  }

  write(offset: number, bytes: Uint8Array): void {
    const key = `${offset}:${bytes.length}`;
    const previous = this.#writes.get(key);
    if (previous !== undefined) {
      this.#pendingBytes -= 12 + previous.bytes.length;
      this.#writes.delete(key);
    }
    this.#writes.set(key, { offset, bytes: Uint8Array.from(bytes) });
    this.#pendingBytes += 12 + bytes.length;
  }

  writeFresh(offset: number, bytes: Uint8Array): void {
    this.#io.write(offset, bytes);
    this.#wroteFresh = true;
  }

  /** Writes `bytes` into `extent` the way its freshness allows. */
  writeExtent(extent: Extent, bytes: Uint8Array): void {
    if (extent.fresh) this.writeFresh(extent.offset, bytes);
    else this.write(extent.offset, bytes);
  }

  /**
   * Space for `bytes`, from the class's free list or the end of the file. `mustBeFresh` skips
   * free space that would have to be written through the journal.
   */
  allocate(bytes: number, mustBeFresh: boolean): Extent {
    const sizeClass = classOf(bytes);
    const size = classSize(sizeClass);
    const header = this.header;
    const head = header.freeHeads[sizeClass] ?? 0;
    if (head !== 0) {
      const trunk = this.#trunk(head);
      if (trunk.count > 0) {
        const slotAt = head + TRUNK_HEADER_BYTES + 8 * (trunk.count - 1);
        const offset = this.read(slotAt, 8).readDoubleLE(0);
        this.#assertExtent(offset, size);
        const fresh = !this.#freed.has(offset);
        if (fresh || !mustBeFresh) {
          this.#setTrunkCount(head, trunk, trunk.count - 1);
          return { offset, size, fresh };
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
    const head = header.freeHeads[sizeClass] ?? 0;
    this.#freed.add(offset);
    if (head !== 0) {
      const trunk = this.#trunk(head);
      if (trunk.count < trunkSlots(sizeClass)) {
        const slot = Buffer.allocUnsafe(8);
        slot.writeDoubleLE(offset, 0);
        this.write(head + TRUNK_HEADER_BYTES + 8 * trunk.count, slot);
        this.#setTrunkCount(head, trunk, trunk.count + 1);
        return;
      }
    }
    const trunk = Buffer.alloc(TRUNK_HEADER_BYTES);
    trunk.writeDoubleLE(head, 0);
    trunk.writeUInt32LE(TRUNK_MAGIC, 12);
    this.write(offset, trunk);
    this.#trunks.set(offset, { next: head, count: 0 });
    header.freeHeads[sizeClass] = offset;
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
    const io = this.#io;
    this.header.appliedSeq += 1;
    const writes = [
      ...coalesce([...this.#writes.values()]),
      { offset: 0, bytes: encodeHeader(this.header) },
    ];
    const journal = encodeJournal(this.header.appliedSeq, writes);
    if (journal.length > JOURNAL_BYTES) {
      this.header.appliedSeq -= 1;
      throw new SessionError('ERR_STORE_IO', 'A single change is too large for the dbm journal');
    }
    if (this.#wroteFresh) io.sync();
    io.write(JOURNAL_OFFSET, journal);
    io.sync();
    for (const write of writes) io.write(write.offset, write.bytes);
    io.sync();
    this.#writes.clear();
    this.#freed.clear();
    this.#trunks.clear();
    this.#pendingBytes = 0;
    this.#wroteFresh = false;
  }

  #trunk(offset: number): { next: number; count: number } {
    let trunk = this.#trunks.get(offset);
    if (trunk === undefined) {
      const buf = this.read(offset, TRUNK_HEADER_BYTES);
      if (buf.readUInt32LE(12) !== TRUNK_MAGIC) throw damaged('bad free-list page');
      trunk = { next: buf.readDoubleLE(0), count: buf.readUInt32LE(8) };
      this.#trunks.set(offset, trunk);
    }
    return trunk;
  }

  #setTrunkCount(offset: number, trunk: { next: number; count: number }, count: number): void {
    trunk.count = count;
    this.write(offset + 8, u32(count));
  }

  #assertExtent(offset: number, size: number): void {
    if (!this.isPlausibleExtent(offset, size)) throw damaged('bad free-list entry');
  }
}

/** Merges overlapping and adjacent writes into one each, later writes winning, so fewer syscalls apply them. */
function coalesce(writes: JournalWrite[]): JournalWrite[] {
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

function u32(value: number): Buffer {
  const buf = Buffer.allocUnsafe(4);
  buf.writeUInt32LE(value, 0);
  return buf;
}

interface ChainPage {
  offset: number;
  buf: Buffer;
  count: number;
  fresh: boolean;
}

/**
 * One bucket: a primary page and its overflow pages, every page full except the last, so
 * entry `i` lives in page `i / ENTRIES_PER_PAGE`. Changes stay in memory until `flush()`.
 */
export class Chain {
  readonly #tx: Transaction;
  readonly #pages: ChainPage[];
  readonly #dirty = new Set<ChainPage>();
  #length: number;

  private constructor(tx: Transaction, pages: ChainPage[]) {
    this.#tx = tx;
    this.#pages = pages;
    this.#length = pages.reduce((sum, page) => sum + page.count, 0);
  }

  static load(tx: Transaction, primaryOffset: number): Chain {
    const pages: ChainPage[] = [];
    let offset = primaryOffset;
    while (offset !== 0) {
      if (
        offset < DATA_START ||
        offset + PAGE_BYTES > tx.header.fileEnd ||
        pages.length > 1_000_000
      ) {
        throw damaged('bad overflow page pointer');
      }
      const buf = tx.read(offset, PAGE_BYTES);
      const count = buf.readUInt16LE(8);
      if (buf.readUInt16LE(10) !== PAGE_MAGIC || count > ENTRIES_PER_PAGE) {
        throw damaged('bad bucket page');
      }
      const previous = pages[pages.length - 1];
      if (previous !== undefined && previous.count !== ENTRIES_PER_PAGE) {
        throw damaged('bad bucket chain');
      }
      pages.push({ offset, buf, count, fresh: false });
      offset = buf.readDoubleLE(0);
    }
    return new Chain(tx, pages);
  }

  /** An empty bucket whose primary page nothing refers to yet. */
  static create(tx: Transaction, primaryOffset: number): Chain {
    const page: ChainPage = { offset: primaryOffset, buf: newPage(), count: 0, fresh: true };
    const chain = new Chain(tx, [page]);
    chain.#dirty.add(page);
    return chain;
  }

  get length(): number {
    return this.#length;
  }

  entry(index: number): Entry {
    const page = this.#pages[Math.floor(index / ENTRIES_PER_PAGE)] as ChainPage;
    return readEntry(page.buf, index % ENTRIES_PER_PAGE);
  }

  set(index: number, entry: Entry): void {
    const page = this.#pages[Math.floor(index / ENTRIES_PER_PAGE)] as ChainPage;
    writeEntry(page.buf, index % ENTRIES_PER_PAGE, entry);
    this.#dirty.add(page);
  }

  append(entry: Entry): void {
    let last = this.#pages[this.#pages.length - 1] as ChainPage;
    if (last.count === ENTRIES_PER_PAGE) {
      const extent = this.#tx.allocate(PAGE_BYTES, false);
      const page: ChainPage = {
        offset: extent.offset,
        buf: newPage(),
        count: 0,
        fresh: extent.fresh,
      };
      last.buf.writeDoubleLE(extent.offset, 0);
      this.#dirty.add(last);
      this.#pages.push(page);
      last = page;
    }
    writeEntry(last.buf, last.count, entry);
    last.count++;
    last.buf.writeUInt16LE(last.count, 8);
    this.#dirty.add(last);
    this.#length++;
  }

  /** Removes entry `index` by moving the last entry into its place; returns the removed entry. */
  remove(index: number): Entry {
    const removed = this.entry(index);
    const lastIndex = this.#length - 1;
    if (index !== lastIndex) this.set(index, this.entry(lastIndex));
    const last = this.#pages[this.#pages.length - 1] as ChainPage;
    last.count--;
    last.buf.writeUInt16LE(last.count, 8);
    this.#dirty.add(last);
    this.#length--;
    if (last.count === 0 && this.#pages.length > 1) {
      this.#pages.pop();
      this.#dirty.delete(last);
      this.#tx.release(last.offset, PAGE_BYTES);
      const previous = this.#pages[this.#pages.length - 1] as ChainPage;
      previous.buf.writeDoubleLE(0, 0);
      this.#dirty.add(previous);
    }
    return removed;
  }

  /** Replaces every entry, keeping as many existing pages as needed and freeing the rest. */
  rewrite(entries: Entry[]): void {
    const keep = Math.max(1, Math.ceil(entries.length / ENTRIES_PER_PAGE));
    while (this.#pages.length < keep) {
      const extent = this.#tx.allocate(PAGE_BYTES, false);
      this.#pages.push({ offset: extent.offset, buf: newPage(), count: 0, fresh: extent.fresh });
    }
    const surplus = this.#pages.splice(keep);
    for (let p = 0; p < keep; p++) {
      const page = this.#pages[p] as ChainPage;
      const next = this.#pages[p + 1];
      page.buf.fill(0);
      page.buf.writeUInt16LE(PAGE_MAGIC, 10);
      page.buf.writeDoubleLE(next?.offset ?? 0, 0);
      const slice = entries.slice(p * ENTRIES_PER_PAGE, (p + 1) * ENTRIES_PER_PAGE);
      for (let slot = 0; slot < slice.length; slot++)
        writeEntry(page.buf, slot, slice[slot] as Entry);
      page.count = slice.length;
      page.buf.writeUInt16LE(page.count, 8);
      this.#dirty.add(page);
    }
    for (const page of surplus) {
      this.#dirty.delete(page);
      this.#tx.release(page.offset, PAGE_BYTES);
    }
    this.#length = entries.length;
  }

  entries(): Entry[] {
    const all: Entry[] = [];
    for (let i = 0; i < this.#length; i++) all.push(this.entry(i));
    return all;
  }

  flush(): void {
    for (const page of this.#dirty) {
      if (page.fresh) this.#tx.writeFresh(page.offset, page.buf);
      else this.#tx.write(page.offset, page.buf);
    }
    this.#dirty.clear();
  }
}

interface Match {
  index: number;
  entry: Entry;
  /** Undefined when the record's header or id is damaged. */
  head: RecordHead | undefined;
  headBytes: Buffer;
}

interface Lookup {
  tx: Transaction;
  chain: Chain;
  hash: number;
  match: Match | undefined;
}

export interface SweepBatchResult {
  scanned: number;
  removed: number;
  /** The cursor's bucket when the batch began. */
  startBucket: number;
  /** The cursor's bucket when the batch ended (0 after a pass ended). */
  endBucket: number;
  /** The cursor reached the last bucket and started a new pass. */
  passEnded: boolean;
  /** The pass that ended kept only records that are still live as of this batch's `now`. */
  passDone: boolean;
}

/** Where a bucket-by-bucket scan of count() or ids() is, so it visits each entry once across splits. */
export interface ScanState {
  bucketsAtStart: number;
  modulusAtStart: number;
  splitAtStart: number;
  next: number;
}

export interface FileInfo {
  fileBytes: number;
  buckets: number;
  entries: number;
  level: number;
}

/**
 * The hash table in one file, operated synchronously. Every method expects the caller to hold
 * the database lock, and re-reads the header (replaying a crashed writer's journal) first.
 */
export class HashFile {
  readonly #io: FileIo;
  /** Journals replayed after a writer died mid-change. */
  recoveries = 0;
  /** Records a full-scan sweep could not decode (it fell back to the index's expiry). */
  undecodable = 0;

  constructor(fd: number, fsync: boolean) {
    this.#io = new FileIo(fd, fsync);
  }

  /** Creates the layout in an empty file; checks the magic and version of an existing one. */
  initialize(): void {
    const state = this.#readHeaderState();
    if (state.kind === 'empty') {
      const header = newHeader();
      const pages = Buffer.concat(Array.from({ length: header.initialBuckets }, () => newPage()));
      this.#io.write(DATA_START, pages);
      this.#io.write(JOURNAL_OFFSET, Buffer.alloc(JOURNAL_HEAD_BYTES));
      this.#io.sync();
      // The header is written last: until it exists the file counts as empty.
      this.#io.write(0, encodeHeader(header));
      this.#io.sync();
      return;
    }
    this.begin();
  }

  begin(): Transaction {
    const state = this.#readHeaderState();
    if (state.kind === 'ok') return new Transaction(this.#io, state.header);
    if (state.kind === 'foreign') {
      throw new SessionError('ERR_STORE_IO', 'The file is not a sessile dbm file');
    }
    if (state.kind === 'unsupported') {
      throw new SessionError(
        'ERR_STORE_IO',
        `The dbm file has format version ${state.version}; this version of @sessile/dbm reads version 1`,
      );
    }
    throw damaged(state.kind === 'empty' ? 'missing header' : 'bad header checksum');
  }

  info(): FileInfo {
    const header = this.begin().header;
    return {
      fileBytes: header.fileEnd,
      buckets: header.bucketCount,
      entries: header.recordCount,
      level: header.level,
    };
  }

  get(id: string, now: number): SessionRecord | undefined {
    const { tx, match } = this.#find(this.begin(), id);
    if (match === undefined || match.entry.expiresAt <= now) return undefined;
    if (match.head === undefined) throw corruptRecord();
    const data = this.#recordData(tx, match.entry, match.head, match.headBytes);
    if (data === undefined || match.head.expiresAt !== match.entry.expiresAt) throw corruptRecord();
    return {
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      expiresAt: match.entry.expiresAt,
    };
  }

  set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
  ): boolean {
    const { tx, chain, hash, match } = this.#find(this.begin(), id);
    const live = match?.head !== undefined && match.entry.expiresAt > now;
    if ((only === 'absent' && live) || (only === 'present' && !live)) return false;
    const bytes = recordBytes(id, record.data, record.expiresAt);
    const expiresAt = record.expiresAt;
    if (match !== undefined) {
      const old = match.entry;
      const plausible = tx.isPlausibleExtent(old.recordOffset, old.extentBytes);
      if (
        plausible &&
        classSize(classOf(bytes.length)) === old.extentBytes &&
        old.extentBytes <= IN_PLACE_MAX_BYTES
      ) {
        tx.write(old.recordOffset, bytes);
        chain.set(match.index, { ...old, expiresAt });
      } else {
        const extent = this.#place(tx, bytes);
        chain.set(match.index, {
          hash,
          extentBytes: extent.size,
          recordOffset: extent.offset,
          expiresAt,
        });
        if (plausible) tx.release(old.recordOffset, old.extentBytes);
      }
    } else {
      const extent = this.#place(tx, bytes);
      chain.append({ hash, extentBytes: extent.size, recordOffset: extent.offset, expiresAt });
      tx.header.recordCount++;
    }
    chain.flush();
    tx.commit();
    // Linear hashing: one bucket split per insert keeps every step bounded.
    if (tx.header.recordCount > tx.header.bucketCount * tx.header.splitLoad) this.#split();
    return true;
  }

  touch(id: string, expiresAt: number, now: number): boolean {
    const { tx, chain, match } = this.#find(this.begin(), id);
    if (match === undefined || match.entry.expiresAt <= now) return false;
    if (match.head === undefined) throw corruptRecord();
    chain.set(match.index, { ...match.entry, expiresAt });
    tx.write(
      match.entry.recordOffset + 8,
      touchedRecordTail(match.headBytes, match.head.id.length, expiresAt),
    );
    chain.flush();
    tx.commit();
    return true;
  }

  delete(id: string, now: number): boolean {
    const { tx, chain, match } = this.#find(this.begin(), id);
    if (match === undefined) return false;
    const live = match.entry.expiresAt > now;
    this.#removeAt(tx, chain, match.index);
    chain.flush();
    tx.commit();
    return live;
  }

  clear(): void {
    const tx = this.begin();
    const appliedSeq = tx.header.appliedSeq;
    Object.assign(tx.header, newHeader(), { appliedSeq });
    const pages = Buffer.concat(Array.from({ length: tx.header.initialBuckets }, () => newPage()));
    tx.write(DATA_START, pages);
    tx.commit();
    ftruncateSync(this.#io.fd, tx.header.fileEnd);
  }

  /**
   * Examines up to `maxEntries` entries from the persistent cursor, deleting the expired.
   * `decode` reads and checks every record to take its expiry from the record itself, as
   * DbmSession did; otherwise only the bucket entries are read.
   */
  sweepBatch(
    maxEntries: number,
    maxBuckets: number,
    now: number,
    decode: boolean,
  ): SweepBatchResult {
    let tx = this.begin();
    const header = tx.header;
    const result: SweepBatchResult = {
      scanned: 0,
      removed: 0,
      startBucket: header.sweepCursorBucket,
      endBucket: header.sweepCursorBucket,
      passEnded: false,
      passDone: false,
    };
    let buckets = 0;
    for (;;) {
      if (header.sweepCursorBucket >= header.bucketCount) {
        result.passEnded = true;
        // Every record this pass kept was live until at least that expiry, so none has expired as of `now`.
        result.passDone = header.sweepPassMinLiveExpiresAt > now;
        header.sweepCursorBucket = 0;
        header.sweepCursorPos = -1;
        header.sweepPassMinLiveExpiresAt = Number.POSITIVE_INFINITY;
        break;
      }
      if (result.scanned >= maxEntries || buckets >= maxBuckets) break;
      if (tx.pendingBytes > JOURNAL_SOFT_LIMIT_BYTES) {
        tx.commit();
        tx = new Transaction(this.#io, header);
      }
      const chain = Chain.load(tx, this.#bucketOffset(header, header.sweepCursorBucket));
      let position =
        header.sweepCursorPos < 0 ? chain.length : Math.min(header.sweepCursorPos, chain.length);
      // Backwards, so removing (which moves the last entry into the hole) never skips an entry.
      while (position > 0 && result.scanned < maxEntries) {
        const index = position - 1;
        const entry = chain.entry(index);
        result.scanned++;
        const expiresAt = decode ? this.#decodedExpiry(tx, entry) : entry.expiresAt;
        if (expiresAt <= now) {
          this.#removeAt(tx, chain, index);
          result.removed++;
        } else if (expiresAt < header.sweepPassMinLiveExpiresAt) {
          header.sweepPassMinLiveExpiresAt = expiresAt;
        }
        position = index;
      }
      chain.flush();
      if (position === 0) {
        header.sweepCursorBucket++;
        header.sweepCursorPos = -1;
        buckets++;
      } else {
        header.sweepCursorPos = position;
      }
    }
    tx.commit();
    result.endBucket = header.sweepCursorBucket;
    return result;
  }

  /** Starts a scan of every bucket as the table is now. */
  startScan(): ScanState {
    const header = this.begin().header;
    return {
      bucketsAtStart: header.bucketCount,
      modulusAtStart: header.initialBuckets * 2 ** header.level,
      splitAtStart: header.split,
      next: 0,
    };
  }

  /**
   * Visits the entries of the next `maxBuckets` buckets of a scan. Entries that a split moved
   * since the scan began are visited with the bucket they came from, so none is seen twice or
   * missed. Returns false once the scan is complete.
   */
  scanBatch(
    state: ScanState,
    maxBuckets: number,
    visit: (entry: Entry, readHead: () => RecordHead | undefined) => void,
  ): boolean {
    const tx = this.begin();
    const header = tx.header;
    const end = Math.min(state.bucketsAtStart, state.next + maxBuckets);
    const visitBucket = (bucket: number) => {
      const chain = Chain.load(tx, this.#bucketOffset(header, bucket));
      for (let i = 0; i < chain.length; i++) {
        const entry = chain.entry(i);
        visit(entry, () => this.#readHead(tx, entry).head);
      }
    };
    for (let bucket = state.next; bucket < end; bucket++) {
      if (bucket < header.bucketCount) visitBucket(bucket);
      const modulus =
        bucket < state.splitAtStart || bucket >= state.modulusAtStart
          ? 2 * state.modulusAtStart
          : state.modulusAtStart;
      for (let later = bucket + modulus; later < header.bucketCount; later += modulus) {
        if (later >= state.bucketsAtStart) visitBucket(later);
      }
    }
    state.next = end;
    return end < state.bucketsAtStart;
  }

  /** A record head whose id is a valid session id hashing to this entry, or undefined. */
  static idOf(entry: Entry, head: RecordHead | undefined): string | undefined {
    if (head === undefined || !isSessionId(head.id)) return undefined;
    return bucketHash(fnv1a32(head.id)) === entry.hash ? head.id : undefined;
  }

  #readHeaderState(): HeaderState {
    const buf = this.#io.read(0, HEADER_REGION_BYTES + JOURNAL_HEAD_BYTES);
    const state = decodeHeader(buf.subarray(0, HEADER_USED_BYTES));
    const journal = decodeJournalHead(buf.subarray(HEADER_REGION_BYTES));
    const behind =
      journal !== undefined &&
      (state.kind === 'damaged' || (state.kind === 'ok' && journal.seq > state.header.appliedSeq));
    if (!behind) return state;
    // A writer died after its journal was complete: replay it. A torn journal fails its checksum
    // and is ignored, since nothing it describes was applied yet.
    const whole = this.#io.read(JOURNAL_OFFSET, JOURNAL_HEAD_BYTES + journal.bodyBytes);
    const writes = decodeJournal(whole, journal);
    if (writes === undefined) return state;
    for (const write of writes) this.#io.write(write.offset, write.bytes);
    this.#io.sync();
    this.recoveries++;
    return decodeHeader(this.#io.read(0, HEADER_USED_BYTES));
  }

  #bucketOffset(header: FileHeader, bucket: number): number {
    const quotient = Math.floor(bucket / header.initialBuckets);
    const segment = quotient === 0 ? 0 : 32 - Math.clz32(quotient);
    const first = segment === 0 ? 0 : header.initialBuckets * 2 ** (segment - 1);
    const base = header.segments[segment] ?? 0;
    if (base === 0) throw damaged('missing bucket segment');
    return base + (bucket - first) * PAGE_BYTES;
  }

  #bucketOf(header: FileHeader, hash: number): number {
    const modulus = header.initialBuckets * 2 ** header.level;
    const bucket = hash % modulus;
    return bucket < header.split ? hash % (2 * modulus) : bucket;
  }

  #find(tx: Transaction, id: string): Lookup {
    const hash = bucketHash(fnv1a32(id));
    const chain = Chain.load(tx, this.#bucketOffset(tx.header, this.#bucketOf(tx.header, hash)));
    let candidate: Match | undefined;
    for (let index = 0; index < chain.length; index++) {
      const entry = chain.entry(index);
      if (entry.hash !== hash) continue;
      const { head, headBytes } = this.#readHead(tx, entry);
      if (head?.id === id) return { tx, chain, hash, match: { index, entry, head, headBytes } };
      // Same hash but unreadable: most likely this id's damaged record.
      if (head === undefined && candidate === undefined)
        candidate = { index, entry, head, headBytes };
    }
    return { tx, chain, hash, match: candidate };
  }

  #readHead(tx: Transaction, entry: Entry): { head: RecordHead | undefined; headBytes: Buffer } {
    if (!tx.isPlausibleExtent(entry.recordOffset, entry.extentBytes)) {
      return { head: undefined, headBytes: Buffer.alloc(0) };
    }
    const headBytes = tx.read(entry.recordOffset, Math.min(entry.extentBytes, PAGE_BYTES));
    return { head: decodeRecordHead(headBytes, entry.extentBytes), headBytes };
  }

  /** The record's data if its checksum holds. */
  #recordData(
    tx: Transaction,
    entry: Entry,
    head: RecordHead,
    headBytes: Buffer,
  ): Buffer | undefined {
    const end = head.dataStart + head.dataLength;
    const data =
      end <= headBytes.length
        ? headBytes.subarray(head.dataStart, end)
        : tx.read(entry.recordOffset + head.dataStart, head.dataLength);
    return crc32(data) === head.dataCrc ? data : undefined;
  }

  #decodedExpiry(tx: Transaction, entry: Entry): number {
    const { head, headBytes } = this.#readHead(tx, entry);
    if (head !== undefined && this.#recordData(tx, entry, head, headBytes) !== undefined) {
      return head.expiresAt;
    }
    this.undecodable++;
    return entry.expiresAt;
  }

  #removeAt(tx: Transaction, chain: Chain, index: number): void {
    const removed = chain.remove(index);
    if (tx.isPlausibleExtent(removed.recordOffset, removed.extentBytes)) {
      tx.release(removed.recordOffset, removed.extentBytes);
    }
    tx.header.recordCount--;
  }

  #place(tx: Transaction, bytes: Buffer): Extent {
    const extent = tx.allocate(bytes.length, bytes.length > JOURNALED_RECORD_MAX_BYTES);
    tx.writeExtent(extent, bytes);
    return extent;
  }

  /** Splits the next bucket into itself and one new bucket at the end of the table. */
  #split(): void {
    const tx = this.begin();
    const header = tx.header;
    const modulus = header.initialBuckets * 2 ** header.level;
    const source = header.split;
    const target = modulus + source;
    const quotient = Math.floor(target / header.initialBuckets);
    const segment = 32 - Math.clz32(quotient);
    if (segment >= MAX_SEGMENTS) return;
    if ((header.segments[segment] ?? 0) === 0) {
      // Space for a whole segment of buckets is reserved at once; its pages are written as buckets open.
      header.segments[segment] = header.fileEnd;
      header.fileEnd += header.initialBuckets * 2 ** (segment - 1) * PAGE_BYTES;
    }
    const sourceChain = Chain.load(tx, this.#bucketOffset(header, source));
    const stay: Entry[] = [];
    const moved = Chain.create(tx, this.#bucketOffset(header, target));
    for (const entry of sourceChain.entries()) {
      if (entry.hash % (2 * modulus) === source) stay.push(entry);
      else moved.append(entry);
    }
    sourceChain.rewrite(stay);
    header.split++;
    if (header.split === modulus) {
      header.level++;
      header.split = 0;
    }
    header.bucketCount++;
    if (header.sweepCursorBucket === source) header.sweepCursorPos = -1;
    moved.flush();
    sourceChain.flush();
    tx.commit();
  }
}
