/**
 * Short-lived byte copies cut from a shared 64 KiB slab. Allocating an ArrayBuffer costs about as
 * much as stringifying a small session, and Node's own 8 KiB pool needs one every dozen sessions,
 * so the adapter path takes its bytes from here. A slab lives as long as any copy cut from it, so
 * only bytes that are soon dropped (sent to a backend, decoded, returned to a caller) belong here,
 * never bytes a store keeps.
 */

const SLAB_BYTES = 64 * 1024;
/** Larger pieces get their own buffer, so one slab holds many of them. */
const MAX_PIECE_BYTES = SLAB_BYTES / 8;

let slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
let used = 0;

/** Room for `bytes` more in the current slab, starting a new one when it is full. */
function reserve(bytes: number): void {
  if (used + bytes > SLAB_BYTES) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
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

/** A copy of `bytes` that shares no memory with them. */
export function scratchCopy(bytes: Uint8Array): Buffer {
  const length = bytes.byteLength;
  if (length > MAX_PIECE_BYTES) return Buffer.from(bytes);
  reserve(length);
  const start = used;
  slab.set(bytes, start);
  used += length;
  return slab.subarray(start, used);
}
