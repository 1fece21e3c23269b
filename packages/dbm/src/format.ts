import * as zlib from 'node:zlib';

/**
 * The on-disk layout of a dbm file, version 5. The README's "File format" section describes the
 * same thing in prose; change both together and bump FORMAT_VERSION.
 */
export const FORMAT_MAGIC = Buffer.from('SESSDBM\0', 'latin1');
export const FORMAT_VERSION = 5;
/** Version 4 differs only in its owner lists, which version 5 still reads: its files open, and their first commit marks them version 5. */
export const OLDEST_READ_VERSION = 4;

export const PAGE_BYTES = 4096;
export const HEADER_REGION_BYTES = 4096;
export const JOURNAL_OFFSET = HEADER_REGION_BYTES;
export const JOURNAL_BYTES = 1024 * 1024;
export const JOURNAL_HEAD_BYTES = 32;
export const DATA_START = JOURNAL_OFFSET + JOURNAL_BYTES;

/** Buckets of a new file; linear hashing then adds one bucket at a time. */
export const INITIAL_BUCKETS = 8;
/** Average entries per bucket above which an insert splits the next bucket. */
export const SPLIT_LOAD = 64;
export const MAX_SEGMENTS = 32;

export const PAGE_HEADER_BYTES = 16;
export const ENTRY_BYTES = 28;
export const ENTRIES_PER_PAGE = Math.floor((PAGE_BYTES - PAGE_HEADER_BYTES) / ENTRY_BYTES);
export const PAGE_MAGIC = 0xb4c7;

export const RECORD_HEADER_BYTES = 28;
export const RECORD_MAGIC = 0x5352;
export const MAX_ID_BYTES = 128;
/** 256 UTF-16 units of well-formed Unicode take at most 3 bytes each in UTF-8. */
export const MAX_OWNER_BYTES = 768;

export const OWNER_LIST_HEADER_BYTES = 16;
/** An owner list of slots, each checked on its own, so one id is added or taken off in place. */
export const OWNER_LIST_MAGIC = 0x4c35;
/** A version-4 owner list, checked as a whole: read, and written anew in slots at its first change. */
export const OWNER_LIST_V4_MAGIC = 0x4c4f;

export const TRUNK_HEADER_BYTES = 16;
export const TRUNK_MAGIC = 0x46524545;
const MAX_TRUNK_SLOTS = (PAGE_BYTES - TRUNK_HEADER_BYTES) / 8;

const JOURNAL_MAGIC = 0x4a524e4c;

/** Extent sizes: 64-byte steps up to one page, then four steps per power of two up to 2 GiB. */
export const CLASS_SIZES: readonly number[] = (() => {
  const sizes: number[] = [];
  for (let size = 64; size <= PAGE_BYTES; size += 64) sizes.push(size);
  for (let exponent = 12; exponent < 31; exponent++) {
    for (const step of [1.25, 1.5, 1.75, 2]) sizes.push(2 ** exponent * step);
  }
  return sizes;
})();
export const CLASS_COUNT = CLASS_SIZES.length;
export const PAGE_CLASS = PAGE_BYTES / 64 - 1;
export const MAX_EXTENT_BYTES = CLASS_SIZES[CLASS_COUNT - 1] as number;

/** The smallest size class that holds `bytes`. */
export function classOf(bytes: number): number {
  if (bytes <= PAGE_BYTES) return Math.max(0, Math.ceil(bytes / 64) - 1);
  let low = PAGE_CLASS + 1;
  let high = CLASS_COUNT - 1;
  while (low < high) {
    const middle = (low + high) >> 1;
    if ((CLASS_SIZES[middle] as number) >= bytes) high = middle;
    else low = middle + 1;
  }
  return low;
}

export function classSize(sizeClass: number): number {
  return CLASS_SIZES[sizeClass] as number;
}

/** Offsets one free-list trunk of this class can list. */
export function trunkSlots(sizeClass: number): number {
  return Math.min(MAX_TRUNK_SLOTS, (classSize(sizeClass) - TRUNK_HEADER_BYTES) / 8);
}

const nativeCrc32 = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;
let crcTable: Uint32Array | undefined;

/** CRC-32 (the zlib polynomial), continuing from `value`. */
export function crc32(data: Uint8Array, value = 0): number {
  if (nativeCrc32 !== undefined) return nativeCrc32(data, value);
  if (crcTable === undefined) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = (value ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) {
    crc = ((crcTable[(crc ^ (data[i] as number)) & 0xff] as number) ^ (crc >>> 8)) >>> 0;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** Spreads FNV-1a's bits so that the low bits, which address buckets, are well mixed. */
export function bucketHash(fnv: number): number {
  let h = fnv >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

// ---------------------------------------------------------------------------------------------
// File header

export interface FileHeader {
  initialBuckets: number;
  splitLoad: number;
  /** Linear hashing: round number and next bucket to split. */
  level: number;
  split: number;
  bucketCount: number;
  /** Entries in the table, expired or not. */
  recordCount: number;
  /** First byte past the allocated space. */
  fileEnd: number;
  /** Sequence number of the last journal applied. */
  appliedSeq: number;
  sweepCursorBucket: number;
  /** Entries of the cursor bucket not yet examined in this pass, or -1 for all of them. */
  sweepCursorPos: number;
  /** The earliest expiry among the records this pass examined and kept; Infinity at its start. */
  sweepPassMinLiveExpiresAt: number;
  segments: number[];
  freeHeads: number[];
}

const H_VERSION = 8;
const H_PAGE_BYTES = 12;
const H_INITIAL_BUCKETS = 16;
const H_SPLIT_LOAD = 20;
const H_LEVEL = 24;
const H_SPLIT = 28;
const H_BUCKET_COUNT = 32;
const H_CURSOR_POS = 36;
const H_CURSOR_BUCKET = 40;
const H_RECORD_COUNT = 48;
const H_FILE_END = 56;
const H_APPLIED_SEQ = 64;
const H_PASS_MIN_LIVE = 72;
const H_SEGMENTS = 80;
const H_FREE_HEADS = H_SEGMENTS + MAX_SEGMENTS * 8;
const H_CRC = H_FREE_HEADS + CLASS_COUNT * 8;
export const HEADER_USED_BYTES = H_CRC + 4;

export function newHeader(): FileHeader {
  const segments = new Array<number>(MAX_SEGMENTS).fill(0);
  segments[0] = DATA_START;
  return {
    initialBuckets: INITIAL_BUCKETS,
    splitLoad: SPLIT_LOAD,
    level: 0,
    split: 0,
    bucketCount: INITIAL_BUCKETS,
    recordCount: 0,
    fileEnd: DATA_START + INITIAL_BUCKETS * PAGE_BYTES,
    appliedSeq: 0,
    sweepCursorBucket: 0,
    sweepCursorPos: -1,
    sweepPassMinLiveExpiresAt: Number.POSITIVE_INFINITY,
    segments,
    freeHeads: new Array<number>(CLASS_COUNT).fill(0),
  };
}

export function cloneHeader(header: FileHeader): FileHeader {
  return { ...header, segments: header.segments.slice(), freeHeads: header.freeHeads.slice() };
}

export function encodeHeader(header: FileHeader): Buffer {
  const buf = Buffer.alloc(HEADER_USED_BYTES);
  FORMAT_MAGIC.copy(buf, 0);
  buf.writeUInt32LE(FORMAT_VERSION, H_VERSION);
  buf.writeUInt32LE(PAGE_BYTES, H_PAGE_BYTES);
  buf.writeUInt32LE(header.initialBuckets, H_INITIAL_BUCKETS);
  buf.writeUInt32LE(header.splitLoad, H_SPLIT_LOAD);
  buf.writeUInt32LE(header.level, H_LEVEL);
  buf.writeUInt32LE(header.split, H_SPLIT);
  buf.writeUInt32LE(header.bucketCount, H_BUCKET_COUNT);
  buf.writeInt32LE(header.sweepCursorPos, H_CURSOR_POS);
  buf.writeUInt32LE(header.sweepCursorBucket, H_CURSOR_BUCKET);
  buf.writeDoubleLE(header.recordCount, H_RECORD_COUNT);
  buf.writeDoubleLE(header.fileEnd, H_FILE_END);
  buf.writeDoubleLE(header.appliedSeq, H_APPLIED_SEQ);
  buf.writeDoubleLE(header.sweepPassMinLiveExpiresAt, H_PASS_MIN_LIVE);
  for (let i = 0; i < MAX_SEGMENTS; i++)
    buf.writeDoubleLE(header.segments[i] ?? 0, H_SEGMENTS + i * 8);
  for (let i = 0; i < CLASS_COUNT; i++)
    buf.writeDoubleLE(header.freeHeads[i] ?? 0, H_FREE_HEADS + i * 8);
  buf.writeUInt32LE(crc32(buf.subarray(0, H_CRC)), H_CRC);
  return buf;
}

export type HeaderState =
  | { kind: 'empty' }
  | { kind: 'foreign' }
  | { kind: 'unsupported'; version: number; checked: boolean }
  | { kind: 'damaged' }
  | { kind: 'ok'; header: FileHeader };

/** Reads the header bytes; 'empty' for a new (all-zero) file, 'damaged' for a bad checksum. */
export function decodeHeader(buf: Buffer): HeaderState {
  if (buf.length < HEADER_USED_BYTES) return { kind: 'empty' };
  if (!buf.subarray(0, FORMAT_MAGIC.length).equals(FORMAT_MAGIC)) {
    for (let i = 0; i < HEADER_USED_BYTES; i++) if (buf[i] !== 0) return { kind: 'foreign' };
    return { kind: 'empty' };
  }
  const version = buf.readUInt32LE(H_VERSION);
  const checked = crc32(buf.subarray(0, H_CRC)) === buf.readUInt32LE(H_CRC);
  if (version < OLDEST_READ_VERSION || version > FORMAT_VERSION) {
    // A later version's header may be laid out otherwise, so its check proves nothing here; an
    // earlier version that fails this one is damage (a torn or cut header reads as version 0).
    if (!checked && version < OLDEST_READ_VERSION) return { kind: 'damaged' };
    return { kind: 'unsupported', version, checked };
  }
  if (!checked) return { kind: 'damaged' };
  if (buf.readUInt32LE(H_PAGE_BYTES) !== PAGE_BYTES) return { kind: 'damaged' };
  const segments: number[] = [];
  for (let i = 0; i < MAX_SEGMENTS; i++) segments.push(buf.readDoubleLE(H_SEGMENTS + i * 8));
  const freeHeads: number[] = [];
  for (let i = 0; i < CLASS_COUNT; i++) freeHeads.push(buf.readDoubleLE(H_FREE_HEADS + i * 8));
  return {
    kind: 'ok',
    header: {
      initialBuckets: buf.readUInt32LE(H_INITIAL_BUCKETS),
      splitLoad: buf.readUInt32LE(H_SPLIT_LOAD),
      level: buf.readUInt32LE(H_LEVEL),
      split: buf.readUInt32LE(H_SPLIT),
      bucketCount: buf.readUInt32LE(H_BUCKET_COUNT),
      sweepCursorPos: buf.readInt32LE(H_CURSOR_POS),
      sweepCursorBucket: buf.readUInt32LE(H_CURSOR_BUCKET),
      recordCount: buf.readDoubleLE(H_RECORD_COUNT),
      fileEnd: buf.readDoubleLE(H_FILE_END),
      appliedSeq: buf.readDoubleLE(H_APPLIED_SEQ),
      sweepPassMinLiveExpiresAt: buf.readDoubleLE(H_PASS_MIN_LIVE),
      segments,
      freeHeads,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Journal: a redo log of one transaction's writes, at JOURNAL_OFFSET.

export interface JournalWrite {
  offset: number;
  bytes: Uint8Array;
}

export function journalBodyBytes(writes: Iterable<JournalWrite>): number {
  let total = 0;
  for (const write of writes) total += 12 + write.bytes.length;
  return total;
}

export function encodeJournal(seq: number, writes: JournalWrite[]): Buffer {
  const bodyBytes = journalBodyBytes(writes);
  const buf = Buffer.allocUnsafe(JOURNAL_HEAD_BYTES + bodyBytes);
  buf.writeUInt32LE(JOURNAL_MAGIC, 0);
  buf.writeDoubleLE(seq, 8);
  buf.writeUInt32LE(writes.length, 16);
  buf.writeUInt32LE(bodyBytes, 20);
  buf.fill(0, 24, JOURNAL_HEAD_BYTES);
  let at = JOURNAL_HEAD_BYTES;
  for (const write of writes) {
    buf.writeDoubleLE(write.offset, at);
    buf.writeUInt32LE(write.bytes.length, at + 8);
    buf.set(write.bytes, at + 12);
    at += 12 + write.bytes.length;
  }
  const [low, high] = journalCheck(buf, seq, buf.length);
  buf.writeUInt32LE(low, 4);
  buf.writeUInt32LE(high, 24);
  return buf;
}

/**
 * The journal's check, 64 bits: two lanes take each 32-bit word of the journal after its first
 * eight bytes (its check's own words left out), starting from its sequence number. Each step of
 * each lane is a bijection of the lane, so a change confined to one word always shows. A CRC is
 * linear: a block that ends in its own CRC-32 (a header image, a bucket page's first 16 bytes)
 * can be swapped for another such block of the same length and a CRC-32 over the whole journal
 * stays the same, which a torn or reordered write after a power loss can do. The lanes'
 * multiplications make this check non-linear, so such a swap changes it like any other change.
 */
export function journalCheck(journal: Buffer, seq: number, end: number): [number, number] {
  let a = (seq >>> 0) ^ 0x2545f491;
  let b = Math.floor(seq / 0x1_0000_0000) ^ 0x6c8e9cf5;
  for (let at = 8; at < end; at += 4) {
    // Bytes 24 to 27 hold the check's high word.
    if (at === 24) continue;
    let word: number;
    if (at + 4 <= end) {
      word =
        (journal[at] as number) |
        ((journal[at + 1] as number) << 8) |
        ((journal[at + 2] as number) << 16) |
        ((journal[at + 3] as number) << 24);
    } else {
      word = 0;
      for (let i = end - 1; i >= at; i--) word = (word << 8) | (journal[i] as number);
    }
    a = Math.imul(a ^ word, 0x9e3779b1);
    a ^= a >>> 15;
    b = Math.imul((b + word) | 0, 0x85ebca77);
    b ^= b >>> 13;
  }
  a = Math.imul(a ^ end, 0xc2b2ae3d);
  b = Math.imul(b ^ a, 0x27d4eb2f);
  a ^= b >>> 16;
  b ^= a >>> 15;
  return [a >>> 0, b >>> 0];
}

export interface JournalHead {
  seq: number;
  count: number;
  bodyBytes: number;
  /** `journalCheck`'s two words. */
  checkLow: number;
  checkHigh: number;
}

export function decodeJournalHead(buf: Buffer): JournalHead | undefined {
  if (buf.length < JOURNAL_HEAD_BYTES || buf.readUInt32LE(0) !== JOURNAL_MAGIC) return undefined;
  const bodyBytes = buf.readUInt32LE(20);
  if (bodyBytes > JOURNAL_BYTES - JOURNAL_HEAD_BYTES) return undefined;
  return {
    checkLow: buf.readUInt32LE(4),
    checkHigh: buf.readUInt32LE(24),
    seq: buf.readDoubleLE(8),
    count: buf.readUInt32LE(16),
    bodyBytes,
  };
}

/** The writes of a complete journal, or undefined when it is torn (its check does not match). */
export function decodeJournal(whole: Buffer, head: JournalHead): JournalWrite[] | undefined {
  const end = JOURNAL_HEAD_BYTES + head.bodyBytes;
  if (whole.length < end) return undefined;
  const [low, high] = journalCheck(whole, head.seq, end);
  if (low !== head.checkLow || high !== head.checkHigh) return undefined;
  const writes: JournalWrite[] = [];
  let at = JOURNAL_HEAD_BYTES;
  for (let i = 0; i < head.count; i++) {
    const offset = whole.readDoubleLE(at);
    const length = whole.readUInt32LE(at + 8);
    writes.push({ offset, bytes: whole.subarray(at + 12, at + 12 + length) });
    at += 12 + length;
  }
  return writes;
}

// ---------------------------------------------------------------------------------------------
// Bucket pages: [next page f64][count u16][magic u16][crc u32 of the 12 bytes before] then ENTRIES_PER_PAGE entries
// of [hash u32][extent bytes u32][record offset f64][expiresAt f64][check u32 of the 24 bytes before].

const ENTRY_CHECK = ENTRY_BYTES - 4;

/**
 * An entry's check: its six words mixed in turn, each step a bijection of the running value, so a
 * change confined to one word always changes the result. It costs a fraction of a CRC call, and
 * every lookup that misses checks each entry of the bucket.
 */
function entryCheck(page: Buffer, at: number): number {
  let h = 0x2545f491;
  for (let word = at; word < at + ENTRY_CHECK; word += 4) {
    h = Math.imul(h ^ page.readUInt32LE(word), 0x9e3779b1);
    h ^= h >>> 15;
  }
  return h >>> 0;
}

export interface Entry {
  hash: number;
  extentBytes: number;
  recordOffset: number;
  expiresAt: number;
  /**
   * Set when the entry's check does not hold: none of its fields can be trusted, so its extent
   * is neither read as a record nor freed. Moving the entry keeps it damaged.
   */
  damaged?: boolean;
}

/** The hash field of an entry, unchecked: enough to pass by entries of other ids. */
export function entryHash(page: Buffer, slot: number): number {
  return page.readUInt32LE(PAGE_HEADER_BYTES + slot * ENTRY_BYTES);
}

export function readEntry(page: Buffer, slot: number): Entry {
  const at = PAGE_HEADER_BYTES + slot * ENTRY_BYTES;
  const entry: Entry = {
    hash: page.readUInt32LE(at),
    extentBytes: page.readUInt32LE(at + 4),
    recordOffset: page.readDoubleLE(at + 8),
    expiresAt: page.readDoubleLE(at + 16),
  };
  if (entryCheck(page, at) !== page.readUInt32LE(at + ENTRY_CHECK)) {
    entry.damaged = true;
  }
  return entry;
}

export function writeEntry(page: Buffer, slot: number, entry: Entry): void {
  const at = PAGE_HEADER_BYTES + slot * ENTRY_BYTES;
  page.writeUInt32LE(entry.hash, at);
  page.writeUInt32LE(entry.extentBytes, at + 4);
  page.writeDoubleLE(entry.recordOffset, at + 8);
  page.writeDoubleLE(entry.expiresAt, at + 16);
  const check = entryCheck(page, at);
  page.writeUInt32LE(entry.damaged === true ? ~check >>> 0 : check, at + ENTRY_CHECK);
}

export function newPage(): Buffer {
  const page = Buffer.alloc(PAGE_BYTES);
  page.writeUInt16LE(PAGE_MAGIC, 10);
  sealPage(page);
  return page;
}

/** Writes the checksum of a page's next pointer, count and magic; call after changing them. */
export function sealPage(page: Buffer): void {
  page.writeUInt32LE(crc32(page.subarray(0, 12)), 12);
}

/** Whether a page's magic and header checksum hold. */
export function isSealedPage(page: Buffer): boolean {
  return (
    page.readUInt16LE(10) === PAGE_MAGIC && crc32(page.subarray(0, 12)) === page.readUInt32LE(12)
  );
}
