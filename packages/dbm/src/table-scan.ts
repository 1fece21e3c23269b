import { Chain } from './chain.js';
import type { Entry, FileHeader } from './format.js';
import { isOwnerListEntry, type RecordHead } from './record-format.js';
import { readHead } from './records.js';
import type { Transaction } from './transaction.js';

/** Called for each intact record entry a scan visits (owner lists and damaged entries are passed by); `readHead` reads the entry's record head when wanted. */
export type ScanVisitor = (entry: Entry, readHead: () => RecordHead | undefined) => void;

/**
 * A bucket-by-bucket scan of every entry, for `count()` and `ids()`, run in batches with the
 * lock released between them. Entries that a split moved since the scan began are visited with
 * the bucket they came from, so none is seen twice or missed.
 */
export class TableScan {
  readonly #bucketsAtStart: number;
  readonly #modulusAtStart: number;
  readonly #splitAtStart: number;
  #next = 0;

  /** Starts a scan of every bucket as the table is in `header`. */
  constructor(header: FileHeader) {
    this.#bucketsAtStart = header.bucketCount;
    this.#modulusAtStart = header.initialBuckets * 2 ** header.level;
    this.#splitAtStart = header.split;
  }

  /** Visits the entries of the next `maxBuckets` buckets. Returns false once the scan is complete. */
  batch(tx: Transaction, maxBuckets: number, visit: ScanVisitor): boolean {
    const header = tx.header;
    const end = Math.min(this.#bucketsAtStart, this.#next + maxBuckets);
    const visitBucket = (bucket: number) => {
      const chain = Chain.loadBucket(tx, bucket);
      for (let i = 0; i < chain.length; i++) {
        const entry = chain.entry(i);
        if (!isOwnerListEntry(entry) && entry.damaged !== true)
          visit(entry, () => readHead(tx, entry).head);
      }
    };
    for (let bucket = this.#next; bucket < end; bucket++) {
      if (bucket < header.bucketCount) visitBucket(bucket);
      const modulus =
        bucket < this.#splitAtStart || bucket >= this.#modulusAtStart
          ? 2 * this.#modulusAtStart
          : this.#modulusAtStart;
      for (let later = bucket + modulus; later < header.bucketCount; later += modulus) {
        if (later >= this.#bucketsAtStart) visitBucket(later);
      }
    }
    this.#next = end;
    return end < this.#bucketsAtStart;
  }
}
