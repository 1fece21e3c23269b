import { damaged } from './errors.js';
import {
  DATA_START,
  ENTRIES_PER_PAGE,
  type Entry,
  entryHash,
  type FileHeader,
  isSealedPage,
  newPage,
  PAGE_BYTES,
  PAGE_MAGIC,
  readEntry,
  sealPage,
  writeEntry,
} from './format.js';
import type { Transaction } from './transaction.js';

/** The bucket an entry of hash `hash` belongs to, by linear hashing. */
export function bucketOf(header: FileHeader, hash: number): number {
  const modulus = header.initialBuckets * 2 ** header.level;
  const bucket = hash % modulus;
  return bucket < header.split ? hash % (2 * modulus) : bucket;
}

/** Where bucket number `bucket`'s primary page is: in the segment that holds it, at its index. */
function bucketOffset(tx: Transaction, bucket: number): number {
  const header = tx.header;
  const quotient = Math.floor(bucket / header.initialBuckets);
  const segment = quotient === 0 ? 0 : 32 - Math.clz32(quotient);
  const first = segment === 0 ? 0 : header.initialBuckets * 2 ** (segment - 1);
  const base = header.segments[segment] ?? 0;
  if (base === 0) throw damaged(tx.path, 'missing bucket segment');
  return base + (bucket - first) * PAGE_BYTES;
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
 *
 * A page that fails its check (a bit flipped on disk, a file cut short before it) loses the
 * bucket's entries from that page on, and only them: the chain holds the pages before it (none
 * when the primary page is bad, as an empty bucket) and is `lost`, so a read of an id it does
 * not hold reports a damaged record rather than an absent one. Its first flush writes the pages
 * kept, ending there, so writes to the bucket work again; the pages and extents that the lost
 * entries used stay allocated until `clear()`.
 */
export class Chain {
  readonly #tx: Transaction;
  readonly #pages: ChainPage[];
  readonly #dirty = new Set<ChainPage>();
  #length: number;
  /** Entries of this bucket were on a page that failed its check, and are gone from it. */
  readonly lost: boolean;

  private constructor(tx: Transaction, pages: ChainPage[], lost = false) {
    this.#tx = tx;
    this.#pages = pages;
    this.#length = pages.reduce((sum, page) => sum + page.count, 0);
    this.lost = lost;
  }

  private static load(tx: Transaction, primaryOffset: number): Chain {
    if (primaryOffset < DATA_START || primaryOffset + PAGE_BYTES > tx.header.fileEnd) {
      throw damaged(tx.path, 'bad bucket segment');
    }
    const pages: ChainPage[] = [];
    // More pages than the file holds: the next pointers go round in a loop.
    const mostPages = tx.header.fileEnd / PAGE_BYTES;
    let offset = primaryOffset;
    let lost = false;
    while (offset !== 0) {
      if (
        offset < DATA_START ||
        offset + PAGE_BYTES > tx.header.fileEnd ||
        pages.length > mostPages
      ) {
        lost = true;
        break;
      }
      const buf = tx.read(offset, PAGE_BYTES);
      const count = buf.readUInt16LE(8);
      const previous = pages[pages.length - 1];
      if (
        !isSealedPage(buf) ||
        count > ENTRIES_PER_PAGE ||
        (previous !== undefined && previous.count !== ENTRIES_PER_PAGE)
      ) {
        lost = true;
        break;
      }
      pages.push({ offset, buf, count, fresh: false });
      offset = buf.readDoubleLE(0);
    }
    if (!lost) return new Chain(tx, pages);
    const last = pages[pages.length - 1];
    const end = last ?? { offset: primaryOffset, buf: newPage(), count: 0, fresh: false };
    if (last === undefined) pages.push(end);
    // The chain ends at the last page that read back: so it is written when anything is.
    end.buf.writeDoubleLE(0, 0);
    const chain = new Chain(tx, pages, true);
    chain.#dirty.add(end);
    return chain;
  }

  /** The chain of bucket number `bucket`. */
  static loadBucket(tx: Transaction, bucket: number): Chain {
    return Chain.load(tx, bucketOffset(tx, bucket));
  }

  /** An empty bucket number `bucket`, whose primary page nothing refers to yet. */
  static createBucket(tx: Transaction, bucket: number): Chain {
    return Chain.create(tx, bucketOffset(tx, bucket));
  }

  /** An empty bucket whose primary page nothing refers to yet. */
  private static create(tx: Transaction, primaryOffset: number): Chain {
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

  /** Entry `index`'s hash field, without checking the entry. */
  hashAt(index: number): number {
    const page = this.#pages[Math.floor(index / ENTRIES_PER_PAGE)] as ChainPage;
    return entryHash(page.buf, index % ENTRIES_PER_PAGE);
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
      sealPage(page.buf);
      if (page.fresh) this.#tx.writeFresh(page.offset, page.buf);
      else this.#tx.write(page.offset, page.buf);
    }
    this.#dirty.clear();
  }
}
