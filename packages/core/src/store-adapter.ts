import { jsonCodec, type SessionCodec } from './codecs.js';
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
