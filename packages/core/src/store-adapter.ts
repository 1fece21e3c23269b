import { isJsonCodec, jsonCodec, type SessionCodec, type SessionData } from './codecs.js';
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
 * `jsonCodec()` the session is stringified once and never parsed back.
 */
export function encodeLibrarySession(
  codec: SessionCodec,
  id: string,
  session: object,
  now: number,
): Uint8Array {
  const json = JSON.stringify(session) as string | undefined;
  if (json === undefined || !json.startsWith('{')) {
    throw new TypeError(`A session must be saved as a JSON object, got ${describeValue(session)}`);
  }
  if (isJsonCodec(codec)) {
    // jsonCodec()'s envelope, written around the text already made. Buffer.from takes small
    // texts from Node's shared pool, where TextEncoder allocates an ArrayBuffer for each.
    const time = JSON.stringify(now);
    return Buffer.from(`{"createdAt":${time},"lastAccessedAt":${time},"data":${json}}`);
  }
  const data = JSON.parse(json) as SessionData;
  return codec.encode({ createdAt: now, lastAccessedAt: now, data }, id);
}
