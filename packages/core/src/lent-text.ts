/**
 * The text of a lent record, for a store that keeps records as text: `lend()` readers inside
 * core (the library adapters) take it instead of decoding `data`, which on MemoryStore's read
 * path cost about as much as everything else but the JSON parse. Not part of the public API.
 */
export const LENT_TEXT = Symbol('sessile.lentText');

/** A lent record that may carry its bytes' text. */
interface MaybeText {
  readonly [LENT_TEXT]?: string;
}

/** The UTF-8 text of `record.data` when its store keeps it at hand, else undefined. */
export function lentText(record: object): string | undefined {
  return (record as MaybeText)[LENT_TEXT];
}
