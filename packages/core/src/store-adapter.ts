import { isJsonCodec, jsonCodec, type SessionCodec, type SessionData } from './codecs.js';
import { scratchUtf8 } from './scratch-bytes.js';
import type { SessionStore } from './types.js';
import { assertDuration, assertKnownOptions, describeValue } from './util.js';

/** The options of an adapter that runs a sessile store behind another library's store interface. */
export interface StoreAdapterOptions {
  /** Encodes each session for storage. Default `jsonCodec()`; `aesGcmCodec()` encrypts at rest. */
  codec?: SessionCodec;
  /**
   * Lifetime of a session the library stores without an expiry. Default 24 hours. It arms no
   * timer, so any duration up to `Number.MAX_SAFE_INTEGER` is accepted.
   */
  defaultTtlMs?: number;
}

/**
 * Checks the arguments of a `toXStore(store, options)` adapter and fills in the defaults. Errors
 * name the call as `where` (`'toKoaSessionStore()'`).
 */
export function openStoreAdapter(
  store: unknown,
  options: unknown,
  where: string,
): { store: SessionStore; codec: SessionCodec; defaultTtlMs: number } {
  if (
    typeof store !== 'object' ||
    store === null ||
    typeof (store as SessionStore).get !== 'function'
  ) {
    throw new TypeError(`${where} needs a sessile SessionStore, got ${describeValue(store)}`);
  }
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`${where}: options must be an object, got ${describeValue(options)}`);
  }
  assertKnownOptions(options, ['codec', 'defaultTtlMs'], where);
  const given = options as StoreAdapterOptions;
  const defaultTtlMs = given.defaultTtlMs ?? 24 * 60 * 60_000;
  assertDuration(defaultTtlMs, `${where}: defaultTtlMs`, {
    zero: false,
    max: Number.MAX_SAFE_INTEGER,
  });
  return { store: store as SessionStore, codec: given.codec ?? jsonCodec(), defaultTtlMs };
}

/**
 * `codec`'s bytes for a session a library hands over, saved as its JSON round trip (its `toJSON`
 * methods applied, functions and `undefined` dropped), with both timestamps `now`. With
 * `jsonCodec()` the session is stringified once, placed in the envelope's text, and never parsed
 * back.
 */
export function encodeLibrarySession(
  codec: SessionCodec,
  id: string,
  session: object,
  now: number,
): Uint8Array {
  if (isJsonCodec(codec)) {
    // jsonCodec()'s envelope around the session's own text: its timestamps' text is made once
    // per millisecond, not once per call (a timestamp is a heap number, slow to print).
    const data = JSON.stringify(session) as string | undefined;
    if (data === undefined || data.charCodeAt(0) !== OPEN_BRACE) throw notAnObject(session);
    return scratchUtf8(envelopeHead(now), data, '}');
  }
  const json = JSON.stringify(session) as string | undefined;
  if (json === undefined || !json.startsWith('{')) throw notAnObject(session);
  const data = JSON.parse(json) as SessionData;
  return codec.encode({ createdAt: now, lastAccessedAt: now, data }, id);
}

const OPEN_BRACE = 0x7b;

let headNow = Number.NaN;
let head = '';

/** `{"createdAt":now,"lastAccessedAt":now,"data":`, as JSON.stringify writes it. */
function envelopeHead(now: number): string {
  if (now !== headNow) {
    const time = JSON.stringify(now);
    head = `{"createdAt":${time},"lastAccessedAt":${time},"data":`;
    headNow = now;
  }
  return head;
}

function notAnObject(session: object): TypeError {
  return new TypeError(`A session must be saved as a JSON object, got ${describeValue(session)}`);
}
