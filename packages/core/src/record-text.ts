/**
 * A record's bytes as text, passed between core's library adapters and a store that keeps
 * records as text (MemoryStore), so neither side encodes or decodes a copy the other never
 * needed. On MemoryStore's read path decoding cost about as much as everything else but the
 * JSON parse; on its create path encoding, copying the bytes back into a string and checking
 * them for ASCII cost about a tenth of a create. Not part of the public API.
 */

import { scratchUtf8 } from './scratch-bytes.js';
import type { SessionRecord } from './types.js';

/**
 * On a record, lent or given to `set`: the text whose UTF-8 encoding is its `data`, where its
 * store has it at hand (a `TextRecord` gives it only when all ASCII). A reader that wants the
 * text reads it instead of decoding `data`.
 */
export const RECORD_TEXT = Symbol('sessile.recordText');

/**
 * A store class's test of whether a store's `set` takes a `TextRecord`, reading the text where it
 * can and `data` only where it must (`MemoryStore[TAKES_TEXT](store)`). Every other store gets
 * records with plain bytes. A class answers true only for an instance of its own, not of a
 * subclass, whose `set` may copy or clone the record (a `TextRecord`'s `data` is a getter),
 * nor for a proxy.
 */
export const TAKES_TEXT = Symbol('sessile.takesText');

interface TextTaker {
  [TAKES_TEXT]?: (store: object) => boolean;
}

/** True when `store`'s class says its `set` takes a `TextRecord` (see `TAKES_TEXT`). */
export function takesText(store: object): boolean {
  const kind = (store as { constructor?: unknown }).constructor;
  if (typeof kind !== 'function') return false;
  const test = (kind as TextTaker)[TAKES_TEXT];
  return typeof test === 'function' && test.call(kind, store) === true;
}

/** A lent record that may carry its bytes' text. */
interface MaybeText {
  readonly [RECORD_TEXT]?: string;
}

/** The ASCII text of `record.data` when its store keeps it at hand, else undefined. */
export function recordText(record: object): string | undefined {
  return (record as MaybeText)[RECORD_TEXT];
}

/**
 * A record written as the text `head + body + tail`, where `head` and `tail` are ASCII. Its bytes
 * are encoded only if a reader asks for `data`, once; a store that keeps text takes the text
 * itself when it is all ASCII (one byte per character, so the text is also the bytes).
 */
export class TextRecord implements SessionRecord {
  readonly expiresAt: number;
  /** The UTF-8 length of the text, which is `data.byteLength`. */
  readonly byteLength: number;
  readonly #head: string;
  readonly #body: string;
  readonly #tail: string;
  #data: Uint8Array | undefined;

  constructor(head: string, body: string, tail: string, expiresAt: number) {
    this.#head = head;
    this.#body = body;
    this.#tail = tail;
    this.expiresAt = expiresAt;
    this.byteLength = head.length + Buffer.byteLength(body) + tail.length;
  }

  get data(): Uint8Array {
    this.#data ??= scratchUtf8(this.#head, this.#body, this.#tail);
    return this.#data;
  }

  /** The whole text, whatever its characters: `data` is its UTF-8 encoding. */
  get text(): string {
    return this.#head + this.#body + this.#tail;
  }

  /** The text, when every character is ASCII: UTF-8 then takes one byte per character. */
  get [RECORD_TEXT](): string | undefined {
    const length = this.#head.length + this.#body.length + this.#tail.length;
    return this.byteLength === length ? this.text : undefined;
  }
}
