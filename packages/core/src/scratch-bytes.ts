/**
 * Short-lived byte copies cut from a shared 64 KiB slab. Allocating an ArrayBuffer costs about as
 * much as stringifying a small session, and Node's own 8 KiB pool needs one every dozen sessions,
 * so the adapter path takes its bytes from here. A slab lives as long as any copy cut from it, so
 * only bytes that are soon dropped (sent to a backend, decoded, returned to a caller) belong here,
 * never bytes a store keeps.
 */

import { markAsUntransferable } from 'node:worker_threads';

const SLAB_BYTES = 64 * 1024;
/** Larger pieces get their own buffer, so one slab holds many of them. */
const MAX_PIECE_BYTES = SLAB_BYTES / 8;

/**
 * A slab whose memory a caller cannot take, as Node does for its own buffer pool: transferring a
 * piece's `buffer` (to a worker, or by `structuredClone` with `transfer`) copies it on Node 20
 * and throws `DataCloneError` on later versions, instead of detaching the slab under every other
 * piece and every later write.
 */
function newSlab(): Buffer {
  const fresh = Buffer.allocUnsafeSlow(SLAB_BYTES);
  markAsUntransferable(fresh.buffer);
  return fresh;
}

let slab = newSlab();
let used = 0;

/** Room for `bytes` more in the current slab, starting a new one when it is full. */
function reserve(bytes: number): void {
  if (used + bytes > SLAB_BYTES) {
    slab = newSlab();
    used = 0;
  }
}

/**
 * `head`, `text` and `tail` encoded as UTF-8, one after the other. Writing the parts apart
 * spares the flat copy of their concatenation that encoding it would make first.
 */
export function scratchUtf8(head: string, text: string, tail: string): Buffer {
  // A UTF-16 code unit never takes more than 3 bytes in UTF-8.
  const room = (head.length + text.length + tail.length) * 3;
  if (room > MAX_PIECE_BYTES) return Buffer.from(head + text + tail);
  reserve(room);
  const start = used;
  used += slab.write(head, used);
  used += slab.write(text, used);
  used += slab.write(tail, used);
  return slab.subarray(start, used);
}

/** `text`'s characters as bytes, one each, for text that `latin1Text` made from bytes. */
export function scratchLatin1(text: string): Buffer {
  const length = text.length;
  if (length > MAX_PIECE_BYTES) return Buffer.from(text, 'latin1');
  reserve(length);
  const start = used;
  used += slab.write(text, start, 'latin1');
  return slab.subarray(start, used);
}

type Latin1Slice = (this: Uint8Array, start: number, end: number) => string;
/** Node's own method behind `toString('latin1')`, without its argument handling; absent in some runtimes. */
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice?: Latin1Slice }).latin1Slice;

/** `bytes` as a one-byte string, one character per byte: as compact as the bytes, and ASCII bytes read as their text. */
export function latin1Text(bytes: Uint8Array): string {
  if (latin1Slice !== undefined) return latin1Slice.call(bytes, 0, bytes.byteLength);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}
