import { ftruncateSync } from 'node:fs';
import type { SessionError, SessionRecord } from '@sessile/core';
import { fnv1a32 } from '@sessile/core/store';
import { bucketOf, Chain } from './chain.js';
import { corruptRecord, damaged, foreignFile, unsupportedVersion } from './errors.js';
import { type DbmDurability, FileIo } from './file-io.js';
import {
  bucketHash,
  classOf,
  classSize,
  DATA_START,
  type Entry,
  encodeHeader,
  MAX_SEGMENTS,
  newHeader,
  newPage,
  PAGE_BYTES,
  type RecordHead,
  recordBytes,
  touchedRecordTail,
} from './format.js';
import { Journal } from './journal.js';
import { readHead, recordData } from './records.js';
import { type ScanVisitor, TableScan } from './table-scan.js';
import { type Extent, Transaction } from './transaction.js';

/** Records up to this size are rewritten in place (through the journal) when their class fits. */
const IN_PLACE_MAX_BYTES = 64 * 1024;
/** Larger records always go to unreferenced space, so the journal never has to copy them. */
const JOURNALED_RECORD_MAX_BYTES = 32 * 1024;
/** A sweep commits and starts a new transaction once its journal grows past this. */
const JOURNAL_SOFT_LIMIT_BYTES = 256 * 1024;

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

export interface FileInfo {
  fileBytes: number;
  buckets: number;
  entries: number;
  level: number;
}

/**
 * The hash table in one file, operated synchronously. Every method but `refusal()` expects the
 * caller to hold the database lock, and re-reads the header (replaying a crashed writer's
 * journal) first.
 */
export class HashFile {
  readonly #io: FileIo;
  readonly #journal: Journal;
  /** Records a full-scan sweep could not decode (it fell back to the index's expiry). */
  undecodable = 0;

  constructor(fd: number, path: string, durability: DbmDurability) {
    this.#io = new FileIo(fd, path, durability);
    this.#journal = new Journal(this.#io);
  }

  /** Journals replayed after a writer died mid-change. */
  get recoveries(): number {
    return this.#journal.recoveries;
  }

  /**
   * Why this file can never be opened, judged from its header without the lock: it is not a
   * sessile dbm file, or has a format version this release does not read. Undefined when it
   * may be fine; `initialize()` then decides under the lock.
   */
  refusal(): SessionError | undefined {
    const state = this.#journal.peekHeader();
    return state.kind === 'foreign' || state.kind === 'unsupported'
      ? this.#refusal(state)
      : undefined;
  }

  /** Creates the layout in an empty file; checks the magic and version of an existing one. */
  initialize(): void {
    const state = this.#journal.readHeader();
    if (state.kind === 'empty') {
      const header = newHeader();
      const pages = Buffer.concat(Array.from({ length: header.initialBuckets }, () => newPage()));
      this.#io.write(DATA_START, pages);
      this.#journal.reset();
      this.#io.sync();
      // The header is written last: until it exists the file counts as empty.
      this.#io.write(0, encodeHeader(header));
      this.#io.sync();
      return;
    }
    this.begin();
  }

  begin(): Transaction {
    const state = this.#journal.readHeader();
    if (state.kind === 'ok') return new Transaction(this.#io, this.#journal, state.header);
    if (state.kind === 'foreign' || state.kind === 'unsupported') throw this.#refusal(state);
    throw damaged(this.#io.path, state.kind === 'empty' ? 'missing header' : 'bad header checksum');
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
    const data = recordData(tx, match.entry, match.head, match.headBytes);
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
        tx = new Transaction(this.#io, this.#journal, header);
      }
      const chain = Chain.loadBucket(tx, header.sweepCursorBucket);
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
  startScan(): TableScan {
    return new TableScan(this.begin().header);
  }

  /** Visits the entries of the scan's next `maxBuckets` buckets; false once the scan is complete. */
  scanBatch(scan: TableScan, maxBuckets: number, visit: ScanVisitor): boolean {
    return scan.batch(this.begin(), maxBuckets, visit);
  }

  #refusal(state: { kind: 'foreign' } | { kind: 'unsupported'; version: number }): SessionError {
    return state.kind === 'foreign'
      ? foreignFile(this.#io.path)
      : unsupportedVersion(this.#io.path, state.version);
  }

  #find(tx: Transaction, id: string): Lookup {
    const hash = bucketHash(fnv1a32(id));
    const chain = Chain.loadBucket(tx, bucketOf(tx.header, hash));
    let candidate: Match | undefined;
    for (let index = 0; index < chain.length; index++) {
      const entry = chain.entry(index);
      if (entry.hash !== hash) continue;
      const { head, headBytes } = readHead(tx, entry);
      if (head?.id === id) return { tx, chain, hash, match: { index, entry, head, headBytes } };
      // Same hash but unreadable: most likely this id's damaged record.
      if (head === undefined && candidate === undefined)
        candidate = { index, entry, head, headBytes };
    }
    return { tx, chain, hash, match: candidate };
  }

  #decodedExpiry(tx: Transaction, entry: Entry): number {
    const { head, headBytes } = readHead(tx, entry);
    if (head !== undefined && recordData(tx, entry, head, headBytes) !== undefined) {
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
    const sourceChain = Chain.loadBucket(tx, source);
    const stay: Entry[] = [];
    const moved = Chain.createBucket(tx, target);
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
