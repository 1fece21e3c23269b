/**
 * A record's bytes as text, passed between core's library adapters and a store that keeps or
 * sends records as text (MemoryStore, RedisStore), so neither side encodes or decodes a copy
 * the other never needed. On MemoryStore's read path decoding cost about as much as everything
 * else but the JSON parse; on its create path encoding, copying the bytes back into a string
 * and checking them for ASCII cost about a tenth of a create. For first-party stores, exported
 * from `@sessile/core/store`; documented in the README's section on writing a store.
 */

import { scratchUtf8 } from './scratch-bytes.js';
import type { SessionRecord } from './types.js';

/**
 * On a record, lent or given to `set`: the text whose UTF-8 encoding is its `data`, where its
 * store has it at hand. A reader that wants the text reads it instead of decoding `data`.
 */
export const RECORD_TEXT = Symbol('sessile.recordText');

/**
 * A store class's brand check, `static [TAKES_TEXT](store)`: true when `store` is a real
 * instance (`#field in store`, false for a proxy), whose `set` then takes a `TextRecord`,
 * reading the text where it can and `data` only where it must. Every other store gets records
 * with plain bytes.
 */
export const TAKES_TEXT = Symbol('sessile.takesText');

interface TextTaker {
  readonly prototype: unknown;
  [TAKES_TEXT]?: (store: object) => boolean;
}

/**
 * True when `store`'s class has its own `TAKES_TEXT` and answers it for `store`, an instance of
 * that class itself: a subclass (which inherits the check) may copy or clone the record in its
 * `set`, and a `TextRecord`'s `data` is a getter.
 */
export function takesText(store: object): boolean {
  const kind = (store as { constructor?: unknown }).constructor;
  if (typeof kind !== 'function' || !Object.hasOwn(kind, TAKES_TEXT)) return false;
  const test = (kind as unknown as TextTaker)[TAKES_TEXT];
  return (
    typeof test === 'function' &&
    Object.getPrototypeOf(store) === (kind as unknown as TextTaker).prototype &&
    test.call(kind, store) === true
  );
}

/**
 * On a `lend()` reader: true when it reads a record's `RECORD_TEXT` where there is one (core's
 * library adapters with the JSON codec). A store that must choose between fetching text and
 * fetching bytes (RedisStore) fetches text only for such a reader.
 */
export const READS_TEXT = Symbol('sessile.readsText');

/** True when `reader` says it reads records' text (see `READS_TEXT`). */
export function readsText(reader: object): boolean {
  return (reader as { [READS_TEXT]?: unknown })[READS_TEXT] === true;
}

/** A lent record that may carry its bytes' text. */
interface MaybeText {
  readonly [RECORD_TEXT]?: string;
}

/** The text of `record.data` when its store has it at hand (see `RECORD_TEXT`), else undefined. */
export function recordText(record: object): string | undefined {
  return (record as MaybeText)[RECORD_TEXT];
}

/**
 * A record written as the text `head + body + tail`, where `head` and `tail` are ASCII. Its bytes
 * are encoded only if a reader asks for `data`, once; a store that keeps text takes the text
 * itself. Frozen, with no owner: `set` takes it as it is, unchecked but its expiry.
 */
export class TextRecord implements SessionRecord {
  readonly expiresAt: number;
  readonly #head: string;
  readonly #body: string;
  readonly #tail: string;
  #byteLength = -1;
  #data: Uint8Array | undefined;

  constructor(head: string, body: string, tail: string, expiresAt: number) {
    this.#head = head;
    this.#body = body;
    this.#tail = tail;
    this.expiresAt = expiresAt;
    Object.freeze(this);
  }

  /** The UTF-8 length of the text, which is `data.byteLength`; counted once, when first asked. */
  get byteLength(): number {
    if (this.#byteLength < 0) {
      this.#byteLength = this.#head.length + Buffer.byteLength(this.#body) + this.#tail.length;
    }
    return this.#byteLength;
  }

  /**
   * True when the text takes more than `limit` bytes in UTF-8. A UTF-16 code unit takes at most
   * 3 bytes, so a text short enough is not counted at all: counting cost a create through a
   * library adapter about as much as checking the session id.
   */
  exceeds(limit: number): boolean {
    const length = this.#head.length + this.#body.length + this.#tail.length;
    return length * 3 > limit && this.byteLength > limit;
  }

  get data(): Uint8Array {
    this.#data ??= scratchUtf8(this.#head, this.#body, this.#tail);
    return this.#data;
  }

  /** The whole text, whatever its characters: `data` is its UTF-8 encoding. */
  get [RECORD_TEXT](): string {
    return this.#head + this.#body + this.#tail;
  }

  /** The text when every character is ASCII, so that it takes one byte per character; else undefined. */
  get asciiText(): string | undefined {
    const length = this.#head.length + this.#body.length + this.#tail.length;
    return this.byteLength === length ? this[RECORD_TEXT] : undefined;
  }
}

/**
 * A record a store lends from its text (see `RECORD_TEXT`): its `data` is encoded from the
 * text only if the reader asks for it, once.
 */
export class LentText implements SessionRecord {
  readonly expiresAt: number;
  declare readonly owner?: string;
  readonly #text: string;
  #data: Uint8Array | undefined;

  /** `text` must be the whole data's text: valid UTF-16 whose UTF-8 is the record's bytes. */
  constructor(text: string, expiresAt: number, owner: string | undefined) {
    this.#text = text;
    this.expiresAt = expiresAt;
    if (owner !== undefined) this.owner = owner;
  }

  get data(): Uint8Array {
    this.#data ??= Buffer.from(this.#text, 'utf8');
    return this.#data;
  }

  get [RECORD_TEXT](): string {
    return this.#text;
  }
}
