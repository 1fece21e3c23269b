import { fstatSync } from 'node:fs';
import type { OwnedSession, SessionError, SessionRecord } from '@sessile/core';
import { bucketOf, Chain } from './chain.js';
import { corruptRecord, damaged, foreignFile, unsupportedVersion } from './errors.js';
import { type DbmDurability, FileIo } from './file-io.js';
import {
  DATA_START,
  type Entry,
  encodeHeader,
  type FileHeader,
  INITIAL_BUCKETS,
  MAX_SEGMENTS,
  newHeader,
  newPage,
  PAGE_BYTES,
} from './format.js';
import { Journal } from './journal.js';
import { OwnerLists } from './owner-lists.js';
import { isOwnerListEntry, recordBytes, touchedRecordTail } from './record-format.js';
import {
  findEntry,
  type Match,
  readHead,
  recordData,
  removeEntry,
  writeExtentBytes,
} from './records.js';
import { type ScanVisitor, TableScan } from './table-scan.js';
import { Transaction } from './transaction.js';

/** A sweep commits and starts a new transaction once its journal grows past this. */
const JOURNAL_SOFT_LIMIT_BYTES = 256 * 1024;
/** A sweep batch ends once its journal holds this much: its commit stays well under a millisecond. */
const SWEEP_BATCH_JOURNAL_BYTES = 64 * 1024;

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
  readonly #owners = new OwnerLists();
  readonly #committed = (header: FileHeader) => this.#owners.committed(header);
  /** Records a full-scan sweep could not decode (it fell back to the index's expiry). */
  undecodable = 0;

  /** `fence` runs before every write: see `FileIo`. */
  constructor(fd: number, path: string, durability: DbmDurability, fence?: () => void) {
    this.#io = new FileIo(fd, path, durability, fence);
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
    if (state.kind === 'empty') {
      // Another process may have finished creating it since: then its header is there now.
      const foreign = !this.#isUnwritten() && this.#journal.peekHeader().kind === 'empty';
      return foreign ? foreignFile(this.#io.path) : undefined;
    }
    return state.kind === 'foreign' || state.kind === 'unsupported'
      ? this.#refusal(state)
      : undefined;
  }

  /** False while the file holds no header yet, judged without the lock: `initialize()` writes one. */
  laidOut(): boolean {
    return this.#journal.peekHeader().kind !== 'empty';
  }

  /** Creates the layout in an empty file; checks the magic and version of an existing one. */
  initialize(): void {
    const state = this.#journal.readHeader();
    if (state.kind === 'empty') {
      if (!this.#isUnwritten()) throw foreignFile(this.#io.path);
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

  /**
   * True for a file this store may lay out: an empty one, or one a creation left when it died
   * before writing the header (which it writes last): zeros, then the first bucket pages. A
   * foreign file that merely starts with zeros (a disk image, a preallocated file) is not.
   */
  #isUnwritten(): boolean {
    const size = fstatSync(this.#io.fd).size;
    if (size === 0) return true;
    if (size > DATA_START + INITIAL_BUCKETS * PAGE_BYTES) return false;
    const bytes = this.#io.read(0, size);
    for (let i = 0; i < Math.min(size, DATA_START); i++) if (bytes[i] !== 0) return false;
    const fresh = newPage();
    for (let offset = DATA_START; offset < size; offset += PAGE_BYTES) {
      const page = bytes.subarray(offset, offset + PAGE_BYTES);
      if (!page.equals(fresh.subarray(0, page.length)) && page.some((byte) => byte !== 0)) {
        return false;
      }
    }
    return true;
  }

  begin(): Transaction {
    const state = this.#journal.readHeader();
    if (state.kind === 'ok') {
      this.#owners.begin(state.header);
      return this.#transaction(state.header);
    }
    if (state.kind === 'foreign' || state.kind === 'unsupported') throw this.#refusal(state);
    throw damaged(this.#io.path, state.kind === 'empty' ? 'missing header' : 'bad header checksum');
  }

  /** A transaction on the file as `header` says it is now; its commit tells the owner lists. */
  #transaction(header: FileHeader): Transaction {
    return new Transaction(this.#io, this.#journal, header, this.#committed);
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
    const tx = this.begin();
    const { chain, match } = findEntry(tx, id);
    // Its record may have gone with a damaged page of its bucket.
    if (match === undefined && chain.lost) throw corruptRecord();
    return this.#read(tx, match, now);
  }

  /**
   * The live records listed for `owner` that carry it, or undefined when its list is incomplete
   * (it was damaged): then a scan must find them for `rebuildOwnerList`. A record of theirs that
   * fails to decode is left out: `get` rejects it for its own id.
   */
  ownedBy(owner: string, now: number): OwnedSession[] | undefined {
    const tx = this.begin();
    const { ids, complete } = this.#owners.ownedIds(tx, owner);
    return complete ? this.#liveOwned(tx, owner, ids, now) : undefined;
  }

  /**
   * Writes `owner`'s list anew, complete, from the ids a scan found carrying it plus those its
   * incomplete list holds, and returns its live records as `ownedBy` does. The scan ran in
   * batches; a record given this owner after the scan passed its bucket was added to the
   * incomplete list meanwhile, so the two together miss none.
   */
  rebuildOwnerList(owner: string, scanned: readonly string[], now: number): OwnedSession[] {
    const tx = this.begin();
    let { ids, complete } = this.#owners.ownedIds(tx, owner);
    if (!complete) {
      ids = [...new Set([...scanned, ...ids])].filter((id) => {
        const match = findEntry(tx, id).match;
        return (
          match?.entry.damaged !== true && match?.head?.id === id && match.head.owner === owner
        );
      });
      this.#owners.replace(tx, owner, ids);
      tx.commit();
    }
    return this.#liveOwned(tx, owner, ids, now);
  }

  #liveOwned(tx: Transaction, owner: string, ids: string[], now: number): OwnedSession[] {
    const sessions: OwnedSession[] = [];
    for (const id of ids) {
      let record: SessionRecord | undefined;
      try {
        record = this.#read(tx, findEntry(tx, id).match, now);
      } catch (error) {
        if ((error as SessionError).code !== 'ERR_CORRUPT_RECORD') throw error;
      }
      if (record?.owner === owner) sessions.push({ id, record });
    }
    return sessions;
  }

  #read(tx: Transaction, match: Match | undefined, now: number): SessionRecord | undefined {
    if (match === undefined) return undefined;
    if (match.entry.damaged === true) throw corruptRecord();
    if (match.entry.expiresAt <= now) return undefined;
    if (match.head === undefined) throw corruptRecord();
    const data = recordData(tx, match.entry, match.head, match.headBytes);
    if (data === undefined || match.head.expiresAt !== match.entry.expiresAt) throw corruptRecord();
    const record: SessionRecord = {
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      expiresAt: match.entry.expiresAt,
    };
    if (match.head.owner !== undefined) record.owner = match.head.owner;
    return record;
  }

  set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
  ): boolean {
    const { tx, chain, hash, match } = findEntry(this.begin(), id);
    const live =
      match?.head !== undefined && match.entry.damaged !== true && match.entry.expiresAt > now;
    if (only === 'present' && !live) return false;
    // A record whose data fails its check is no session (`get` rejects it): a create replaces it.
    if (only === 'absent' && live && match.head !== undefined) {
      if (recordData(tx, match.entry, match.head, match.headBytes) !== undefined) return false;
    }
    const { owner, expiresAt } = record;
    const placed = writeExtentBytes(
      tx,
      match?.entry,
      recordBytes(id, record.data, expiresAt, owner),
    );
    if (match !== undefined) {
      chain.set(match.index, { hash, ...placed, expiresAt });
    } else {
      chain.append({ hash, ...placed, expiresAt });
      tx.header.recordCount++;
    }
    chain.flush();
    // The chain is flushed first: an owner list may live in the same bucket.
    const oldOwner = match?.head?.owner;
    if (oldOwner !== owner) {
      if (oldOwner !== undefined) this.#owners.remove(tx, oldOwner, id);
      if (owner !== undefined) this.#owners.add(tx, owner, id);
    }
    keepPassOpenFor(tx.header, hash, expiresAt);
    tx.commit();
    // Linear hashing: one bucket split per insert keeps every step bounded.
    if (tx.header.recordCount > tx.header.bucketCount * tx.header.splitLoad) this.#split();
    return true;
  }

  touch(id: string, expiresAt: number, now: number): boolean {
    const { tx, chain, hash, match } = findEntry(this.begin(), id);
    if (match?.entry.damaged === true || (match === undefined && chain.lost)) {
      throw corruptRecord();
    }
    if (match === undefined || match.entry.expiresAt <= now) return false;
    if (match.head === undefined) throw corruptRecord();
    chain.set(match.index, { ...match.entry, expiresAt });
    tx.write(
      match.entry.recordOffset + 8,
      touchedRecordTail(match.headBytes, match.head.dataStart, expiresAt),
    );
    chain.flush();
    keepPassOpenFor(tx.header, hash, expiresAt);
    tx.commit();
    return true;
  }

  delete(id: string, now: number): boolean {
    const { tx, chain, match } = findEntry(this.begin(), id);
    if (match === undefined) {
      // Whatever the bucket lost is gone: it is written without it, and the id is absent.
      if (chain.lost) {
        chain.flush();
        tx.commit();
      }
      return false;
    }
    const live = match.entry.damaged === true || match.entry.expiresAt > now;
    removeEntry(tx, chain, match.index);
    chain.flush();
    if (match.head?.owner !== undefined) this.#owners.remove(tx, match.head.owner, id);
    tx.commit();
    return live;
  }

  clear(): void {
    const tx = this.begin();
    const appliedSeq = tx.header.appliedSeq;
    Object.assign(tx.header, newHeader(), { appliedSeq });
    const pages = Buffer.concat(Array.from({ length: tx.header.initialBuckets }, () => newPage()));
    tx.write(DATA_START, pages);
    this.#owners.forget();
    tx.commit();
    this.#io.truncate(tx.header.fileEnd);
  }

  /**
   * Examines up to `maxEntries` entries from the persistent cursor, deleting the expired, and
   * stops early once `deadline` (a `performance.now()` time) has passed.
   * `decode` reads and checks every record to take its expiry from the record itself, as
   * DbmSession did; otherwise only the bucket entries are read.
   */
  sweepBatch(
    maxEntries: number,
    maxBuckets: number,
    now: number,
    decode: boolean,
    deadline: number,
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
    // At least one entry per batch, so a sweep always moves on. The commit's cost grows with
    // what the batch journaled, so that ends a batch too.
    const pastDeadline = () =>
      result.scanned > 0 &&
      (performance.now() >= deadline || tx.pendingBytes >= SWEEP_BATCH_JOURNAL_BYTES);
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
      if (result.scanned >= maxEntries || buckets >= maxBuckets || pastDeadline()) break;
      if (tx.pendingBytes > JOURNAL_SOFT_LIMIT_BYTES) {
        tx.commit();
        tx = this.#transaction(header);
      }
      const chain = Chain.loadBucket(tx, header.sweepCursorBucket);
      let position =
        header.sweepCursorPos < 0 ? chain.length : Math.min(header.sweepCursorPos, chain.length);
      const owned: { owner: string; id: string }[] = [];
      // Backwards, so removing (which moves the last entry into the hole) never skips an entry.
      while (position > 0 && result.scanned < maxEntries && !pastDeadline()) {
        const index = position - 1;
        position = index;
        const entry = chain.entry(index);
        // A damaged entry's expiry is unknown: it stays, for get() to report for its id.
        if (isOwnerListEntry(entry) || entry.damaged === true) continue;
        result.scanned++;
        const expiresAt = decode ? this.#decodedExpiry(tx, entry) : entry.expiresAt;
        if (expiresAt <= now) {
          const head = readHead(tx, entry).head;
          if (head?.owner !== undefined) owned.push({ owner: head.owner, id: head.id });
          removeEntry(tx, chain, index);
          result.removed++;
        } else if (expiresAt < header.sweepPassMinLiveExpiresAt) {
          header.sweepPassMinLiveExpiresAt = expiresAt;
        }
      }
      chain.flush();
      // After the flush: an owner list may live in this bucket. Taking one out moves this
      // bucket's last entry, already examined, into its place, so nothing is skipped.
      for (const { owner, id } of owned) this.#owners.remove(tx, owner, id);
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

  #refusal(
    state: { kind: 'foreign' } | { kind: 'unsupported'; version: number; checked: boolean },
  ): SessionError {
    return state.kind === 'foreign'
      ? foreignFile(this.#io.path)
      : unsupportedVersion(this.#io.path, state.version, state.checked);
  }

  #decodedExpiry(tx: Transaction, entry: Entry): number {
    const { head, headBytes } = readHead(tx, entry);
    if (head !== undefined && recordData(tx, entry, head, headBytes) !== undefined) {
      return head.expiresAt;
    }
    this.undecodable++;
    return entry.expiresAt;
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

/**
 * Counts a record written with `expiresAt` into the bucket of `hash` as one the sweep's current
 * pass kept, where the pass has already passed that bucket (or is inside it): the pass will not
 * see it, and must not be taken as done (no record left that expired by its `now`) while this
 * one may have. A record written ahead of the cursor is one the pass will examine.
 */
function keepPassOpenFor(header: FileHeader, hash: number, expiresAt: number): void {
  const bucket = bucketOf(header, hash);
  const passed =
    bucket < header.sweepCursorBucket ||
    (bucket === header.sweepCursorBucket && header.sweepCursorPos >= 0);
  if (passed && expiresAt < header.sweepPassMinLiveExpiresAt) {
    header.sweepPassMinLiveExpiresAt = expiresAt;
  }
}
