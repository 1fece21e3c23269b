import { isAscii } from 'node:buffer';
import {
  BaseStore,
  type BaseStoreOptions,
  type HookAnswer,
  type SweepProgress,
} from './base-store.js';
import { ExpiryHeap } from './expiry-heap.js';
import { KeyedLocks } from './locks/keyed.js';
import { RECORD_TEXT, TAKES_TEXT, TextRecord } from './record-text.js';
import { latin1Text, scratchLatin1, scratchUtf8 } from './scratch-bytes.js';
import type {
  LockManager,
  OwnedSession,
  SessionRecord,
  StoreCapabilities,
  SweepResult,
} from './types.js';
import { assertKnownOptions, describeValue, yieldToEventLoop } from './util.js';

export interface MemoryStoreOptions extends BaseStoreOptions {}

const SWEEP_BATCH = 500;
/** The longest a sweep batch runs before it yields the event loop. */
const SLICE_MS = 1;
const SLICE_CHECK = 32;

/**
 * Sessions in a `Map`, for tests, development and single-process apps that accept losing
 * sessions on restart. An expiry heap makes a sweep cost grow with expired records only, and an
 * owner index (owner to ids) makes `ownedBy` cost grow with that owner's sessions only.
 */
export class MemoryStore extends BaseStore {
  readonly capabilities: StoreCapabilities = {
    shared: 'process',
    expiry: 'sweep',
    durable: false,
    expiryIndex: true,
    ownerIndex: true,
  };
  readonly locks: LockManager = new KeyedLocks();
  readonly #records = new Map<string, Kept>();
  readonly #expiry = new ExpiryHeap();
  /** Owner to the ids of its records; each record knows its slot, so removal is a swap. */
  readonly #owned = new Map<string, string[]>();

  /** The store's `set` takes core's library adapters' records as their text (see `Kept`). */
  static [TAKES_TEXT](store: object): boolean {
    return #records in store;
  }

  /** `Kept` copies a record's bytes in `_set`, which runs before `set` returns. */
  protected override get copiesOnSet(): boolean {
    return true;
  }

  static async open(options: MemoryStoreOptions = {}): Promise<MemoryStore> {
    return new MemoryStore(options);
  }

  constructor(options: MemoryStoreOptions = {}) {
    if (typeof options !== 'object' || options === null) {
      throw new TypeError(`MemoryStore options must be an object, got ${describeValue(options)}`);
    }
    assertKnownOptions(options, ['maxRecordBytes'], 'MemoryStore');
    super(options);
  }

  // The hooks answer at once with plain values, so a call costs no promise beyond the one
  // BaseStore hands the caller.

  protected _get(id: string, now: number): HookAnswer<SessionRecord | undefined> {
    const record = this.#live(id, now);
    return record === undefined ? undefined : handOut(record);
  }

  protected override _lend<T>(
    id: string,
    now: number,
    read: (record: Readonly<SessionRecord>, id: string) => T,
  ): HookAnswer<T | undefined> {
    const record = this.#live(id, now);
    return record === undefined ? undefined : read(new Lent(record), id);
  }

  protected _set(
    id: string,
    record: SessionRecord,
    only: 'absent' | 'present' | undefined,
    now: number,
  ): HookAnswer<boolean> {
    const previous = this.#records.get(id);
    if (only !== undefined) {
      const exists = previous !== undefined && previous.expiresAt > now;
      if (exists !== (only === 'present')) return false;
    }
    this.#put(id, new Kept(record), previous);
    return true;
  }

  protected _touch(id: string, expiresAt: number, now: number): HookAnswer<boolean> {
    const record = this.#live(id, now);
    if (record === undefined) return false;
    // The old heap entry no longer matches the record, so a sweep skips it.
    record.expiresAt = expiresAt;
    this.#index(id, expiresAt);
    return true;
  }

  protected _delete(id: string, now: number): HookAnswer<boolean> {
    const live = this.#live(id, now) !== undefined;
    this.#remove(id);
    return live;
  }

  protected async _sweep(progress: SweepProgress): Promise<SweepResult> {
    for (;;) {
      const batch = progress.nextBatchSize(SWEEP_BATCH);
      if (batch === 0) break;
      // A batch also ends after SLICE_MS, so a slow moment (a GC step, a loaded CPU) cannot
      // stretch it into a long stall; the clock is read every SLICE_CHECK records.
      const sliceEnd = performance.now() + SLICE_MS;
      for (let i = 0; i < batch; i++) {
        if (i % SLICE_CHECK === SLICE_CHECK - 1 && performance.now() >= sliceEnd) break;
        const expiresAt = this.#expiry.earliestExpiresAt;
        if (expiresAt > progress.now) return progress.result(true);
        const id = this.#expiry.earliestId as string;
        this.#expiry.dropEarliest();
        progress.scanned++;
        const record = this.#records.get(id);
        if (record !== undefined && record.expiresAt === expiresAt) {
          this.#remove(id);
          progress.removed++;
        }
      }
      await yieldToEventLoop();
    }
    return progress.result(this.#expiry.earliestExpiresAt > progress.now);
  }

  protected async _count(now: number): Promise<number> {
    let count = 0;
    for (const record of this.#records.values()) if (record.expiresAt > now) count++;
    return count;
  }

  protected async *_ids(now: number): AsyncIterable<string> {
    for (const [id, record] of this.#records) if (record.expiresAt > now) yield id;
  }

  protected override async _ownedBy(owner: string, now: number): Promise<OwnedSession[]> {
    const sessions: OwnedSession[] = [];
    for (const id of this.#owned.get(owner) ?? []) {
      const record = this.#live(id, now);
      if (record !== undefined) sessions.push({ id, record: handOut(record) });
    }
    return sessions;
  }

  protected async _clear(): Promise<void> {
    this.#records.clear();
    this.#expiry.clear();
    this.#owned.clear();
  }

  protected async _close(): Promise<void> {
    await this._clear();
  }

  #live(id: string, now: number): Kept | undefined {
    const record = this.#records.get(id);
    return record !== undefined && record.expiresAt > now ? record : undefined;
  }

  /** Removes `id` from the records and from its owner's entry in the index. */
  #remove(id: string): void {
    const record = this.#records.get(id);
    if (record === undefined) return;
    this.#records.delete(id);
    if (record.owner !== undefined) this.#unindex(record.owner, record.ownerSlot);
  }

  /** Takes the id at `slot` out of `owner`'s list, moving the list's last id into its place. */
  #unindex(owner: string, slot: number): void {
    const ids = this.#owned.get(owner) as string[];
    const last = ids.pop() as string;
    if (slot < ids.length) {
      ids[slot] = last;
      (this.#records.get(last) as Kept).ownerSlot = slot;
    }
    if (ids.length === 0) this.#owned.delete(owner);
  }

  /** Stores `record` over `replaced`, moving `id` in the owner index when its owner changed. */
  #put(id: string, record: Kept, replaced: Kept | undefined): void {
    this.#records.set(id, record);
    const owner = record.owner;
    if (replaced !== undefined && replaced.owner === owner) {
      record.ownerSlot = replaced.ownerSlot;
    } else {
      if (replaced?.owner !== undefined) this.#unindex(replaced.owner, replaced.ownerSlot);
      if (owner !== undefined) {
        const ids = this.#owned.get(owner);
        if (ids === undefined) {
          record.ownerSlot = 0;
          this.#owned.set(owner, [id]);
        } else {
          record.ownerSlot = ids.push(id) - 1;
        }
      }
    }
    this.#index(id, record.expiresAt);
  }

  /** Adds `id`'s new expiry to the heap. */
  #index(id: string, expiresAt: number): void {
    this.#expiry.push(expiresAt, id);
    // Touches leave stale heap entries behind; compact before they outnumber the records.
    if (this.#expiry.size > 2 * this.#records.size + 1024) {
      this.#expiry.rebuild(
        Array.from(this.#records, ([entryId, entry]) => ({
          id: entryId,
          expiresAt: entry.expiresAt,
        })),
      );
    }
  }
}

/** `Kept.stored` is the text whose UTF-8 encoding is the bytes. */
const TEXT = 0;
/** `Kept.stored` holds the bytes one per character, and they are all ASCII: it is their text too. */
const ASCII = 1;
/** `Kept.stored` holds the bytes one per character, and they are not all ASCII. */
const BYTES = 2;

/**
 * A record as the store keeps it, in one shape for every record: one string, either its bytes'
 * text or its bytes themselves as a one-byte string, one character per byte. Bytes take no more
 * memory as such a string than as bytes, and pin no pool slab; when they are all ASCII (a JSON
 * session without other characters) the string is also their text. A library adapter's record
 * is kept as the text it came as (two bytes a character if one is beyond U+00FF), unchecked:
 * counting its UTF-8 bytes to learn whether it is ASCII cost a create through `toExpressStore`
 * more than the store's own steps. The library adapters parse the text as it is instead of
 * decoding a copy.
 */
class Kept {
  readonly stored: string;
  /** What `stored` is: see `TEXT`, `ASCII` and `BYTES`. */
  readonly form: number;
  expiresAt: number;
  readonly owner: string | undefined;
  /** Where this record's id sits in its owner's list; unused without an owner. */
  ownerSlot = -1;

  constructor(record: SessionRecord) {
    if (record instanceof TextRecord) {
      this.stored = record[RECORD_TEXT];
      this.form = TEXT;
    } else {
      this.stored = latin1Text(record.data);
      this.form = isAscii(record.data) ? ASCII : BYTES;
    }
    this.expiresAt = record.expiresAt;
    this.owner = record.owner;
  }

  /** A copy of the bytes, short-lived as a `get` answer's are. */
  get data(): Buffer {
    return this.form === TEXT ? scratchUtf8('', this.stored, '') : scratchLatin1(this.stored);
  }

  /** The bytes' text, when the store has it. */
  get text(): string | undefined {
    return this.form === BYTES ? undefined : this.stored;
  }
}

/**
 * What `lend()` hands its reader: the record's bytes copied out only if the reader asks for
 * them, once (the library adapters take the text instead), with its expiry and owner.
 */
class Lent {
  readonly expiresAt: number;
  readonly owner: string | undefined;
  readonly #kept: Kept;
  #data: Buffer | undefined;

  constructor(kept: Kept) {
    this.expiresAt = kept.expiresAt;
    this.owner = kept.owner;
    this.#kept = kept;
  }

  get data(): Buffer {
    this.#data ??= this.#kept.data;
    return this.#data;
  }

  get [RECORD_TEXT](): string | undefined {
    return this.#kept.text;
  }
}

/** A copy for the caller, who may change it freely; it is usually decoded and dropped at once. */
function handOut(record: Kept): SessionRecord {
  const data = record.data;
  // Built whole, so a record with an owner takes no shape change after it was made.
  return record.owner === undefined
    ? { data, expiresAt: record.expiresAt }
    : { data, expiresAt: record.expiresAt, owner: record.owner };
}
