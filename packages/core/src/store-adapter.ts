import {
  assertCodec,
  isJsonCodec,
  jsonCodec,
  type SessionCodec,
  type SessionData,
} from './codecs.js';
import { isSessionId } from './ids.js';
import { MAX_SESSION_TIMEOUT_MS } from './manager-options.js';
import { READS_TEXT, recordText, TextRecord, takesText } from './record-text.js';
import { scratchUtf8 } from './scratch-bytes.js';
import type { SessionRecord, SessionStore } from './types.js';
import {
  assertDuration,
  assertKnownOptions,
  describeValue,
  hasMethods,
  storeHint,
} from './util.js';

/** The options of an adapter that runs a sessile store behind another library's store interface. */
export interface StoreAdapterOptions {
  /** Encodes each session for storage. Default `jsonCodec()`; `aesGcmCodec()` encrypts at rest. */
  codec?: SessionCodec;
  /**
   * Lifetime of a session the library stores without an expiry. Default 24 hours. It arms no
   * timer, so any duration up to `MAX_SESSION_TIMEOUT_MS` (about 137,000 years) is accepted.
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
): {
  store: SessionStore;
  codec: SessionCodec;
  defaultTtlMs: number;
  /** The session data stored under `id`; undefined when absent, expired or not a sessile id. */
  read: (id: string) => Promise<SessionData | undefined>;
  /** The record to store for a session the library hands over; throws as `encodeLibrarySession`. */
  record: (id: string, session: object, now: number, expiresAt: number) => SessionRecord;
} {
  if (!hasMethods(store, STORE_METHODS)) {
    // express-session's own MemoryStore and connect-redis have a `get` too; taken for a sessile
    // store, either would fail every request with an error that names neither.
    throw new TypeError(
      `${where} needs a sessile SessionStore, got ${describeValue(store)}${storeHint(store)}`,
    );
  }
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`${where}: options must be an object, got ${describeValue(options)}`);
  }
  for (const [name, instead] of PEER_OPTIONS) {
    if (name in options) throw new TypeError(`${where}: unknown option '${name}'; ${instead}`);
  }
  assertKnownOptions(options, ['codec', 'defaultTtlMs'], where);
  const given = options as StoreAdapterOptions;
  const defaultTtlMs = given.defaultTtlMs ?? 24 * 60 * 60_000;
  assertDuration(defaultTtlMs, `${where}: defaultTtlMs`, {
    zero: false,
    max: MAX_SESSION_TIMEOUT_MS,
  });
  if (given.codec !== undefined) assertCodec(given.codec, `${where}: codec`);
  const sessionStore = store as SessionStore;
  const codec = given.codec ?? jsonCodec();
  const readsJson = isJsonCodec(codec);
  const decode = (record: Readonly<SessionRecord>, id: string): SessionData => {
    const text = readsJson ? recordText(record) : undefined;
    return (
      (text === undefined ? undefined : envelopeText(text)) ??
      decodeLibrarySession(codec, record.data, id)
    );
  };
  if (readsJson) Object.defineProperty(decode, READS_TEXT, { value: true });
  // A store that lends its records spares the copy that `get` makes, since they are decoded at once.
  const lend = sessionStore.lend?.bind(sessionStore);
  const read = (id: string): Promise<SessionData | undefined> => {
    if (!isSessionId(id)) return ABSENT;
    try {
      if (lend !== undefined) return lend(id, decode);
      return sessionStore
        .get(id)
        .then((record) => (record === undefined ? undefined : decode(record, id)));
    } catch (error) {
      // A store not built on BaseStore may throw at once; the adapters' callers get a rejection.
      return Promise.reject(error);
    }
  };
  // A store that keeps or sends text takes the session's JSON text, never encoded to bytes.
  const asText = readsJson && takesText(sessionStore);
  const record = (id: string, session: object, now: number, expiresAt: number): SessionRecord =>
    asText
      ? new TextRecord(envelopeHead(now), sessionText(session), '}', expiresAt)
      : { data: encodeLibrarySession(codec, id, session, now), expiresAt };
  return { store: sessionStore, codec, defaultTtlMs, read, record };
}

/**
 * Options of the stores an app switches from (connect-redis, memorystore, session-file-store,
 * connect-pg-simple), with what takes their place; a plain "did you mean" would miss that
 * their `ttl` counts seconds.
 */
const PEER_OPTIONS: ReadonlyArray<readonly [string, string]> = [
  [
    'ttl',
    "a session's lifetime comes from its cookie; defaultTtlMs (in milliseconds, where the peers' ttl counted seconds) is for a cookie without an expiry",
  ],
  ['serializer', 'codec encodes sessions (jsonCodec(), aesGcmCodec())'],
  ['prefix', "a key prefix is the store's own option, as in RedisStore.open({ prefix })"],
];

/** What an adapter calls on its store. */
const STORE_METHODS = ['get', 'set', 'touch', 'delete', 'count', 'ids', 'clear', 'close'];

const ABSENT: Promise<undefined> = Promise.resolve(undefined);

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
  const text = sessionText(session);
  // jsonCodec()'s envelope around the session's own text: its timestamps' text is made once per
  // millisecond, not once per call (a timestamp is a heap number, slow to print).
  if (isJsonCodec(codec)) return scratchUtf8(envelopeHead(now), text, '}');
  const data = JSON.parse(text) as SessionData;
  return codec.encode({ createdAt: now, lastAccessedAt: now, data }, id);
}

/** `session`'s JSON text, which must be an object's. */
function sessionText(session: object): string {
  const text = JSON.stringify(session) as string | undefined;
  if (text === undefined || text.charCodeAt(0) !== OPEN_BRACE) throw notAnObject(session);
  return text;
}

/**
 * The session data in `codec`'s bytes, as `codec.decode(bytes, id).data` gives it, and throwing
 * what that throws. With `jsonCodec()`, a record that holds a timestamped session and nothing
 * else (what `encodeLibrarySession` writes) has only its data parsed, not the envelope around it.
 */
export function decodeLibrarySession(
  codec: SessionCodec,
  bytes: Uint8Array,
  id: string,
): SessionData {
  if (isJsonCodec(codec)) {
    const data = envelopeData(bytes);
    if (data !== undefined) return data;
  }
  return codec.decode(bytes, id).data;
}

const textDecoder = new TextDecoder('utf-8', { fatal: true });
/**
 * jsonCodec()'s envelope up to its data, with both timestamps whole numbers of ms. Sticky and
 * read through `test` and `lastIndex`, so a match builds no array; `\d+` because `\d{1,16}`
 * cost half as much again, with `MAX_HEAD_LENGTH` bounding the digits instead.
 */
const ENVELOPE_HEAD = /\{"createdAt":\d+,"lastAccessedAt":\d+,"data":(?=\{)/y;
/** The longest head: 32 digits for both timestamps together, so each is a finite number. */
const MAX_HEAD_LENGTH = '{"createdAt":,"lastAccessedAt":,"data":'.length + 32;

/**
 * The data of `{"createdAt":…,"lastAccessedAt":…,"data":{…}}`, or undefined for any other text
 * (an owner or metadata after the data, say), which the codec then reads whole. The text between
 * the head and the closing brace parses alone only if it is exactly the data object, so what
 * this returns is what parsing the whole envelope would give.
 */
function envelopeData(bytes: Uint8Array): SessionData | undefined {
  let text: string;
  try {
    text = textDecoder.decode(bytes);
  } catch {
    return undefined;
  }
  return envelopeText(text);
}

/** As `envelopeData`, given the bytes' text. */
function envelopeText(text: string): SessionData | undefined {
  ENVELOPE_HEAD.lastIndex = 0;
  if (!ENVELOPE_HEAD.test(text)) return undefined;
  const headLength = ENVELOPE_HEAD.lastIndex;
  if (headLength > MAX_HEAD_LENGTH || text.charCodeAt(text.length - 1) !== CLOSE_BRACE) {
    return undefined;
  }
  try {
    return JSON.parse(text.slice(headLength, -1)) as SessionData;
  } catch {
    return undefined;
  }
}

const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

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
