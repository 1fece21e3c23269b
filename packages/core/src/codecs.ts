import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { SessionError } from './errors.js';
import { isOwner } from './ids.js';
import { assertKnownOptions, describeValue, hasMethods } from './util.js';

/** Session data: a plain JSON object. Values that JSON cannot carry are dropped when saved. */
export type SessionData = Record<string, unknown>;

/**
 * What the manager stores for one session. The store only sees the encoded bytes and
 * `expiresAt`; the timestamps live here so both timeouts survive any backend.
 */
export interface SessionEnvelope<Data extends SessionData = SessionData> {
  /** When the session was first saved, in ms since the epoch. The absolute timeout counts from here. */
  createdAt: number;
  /** The last save, in ms since the epoch. */
  lastAccessedAt: number;
  data: Data;
  /** Who the session belongs to (`session.setOwner`); absent for an anonymous session. */
  owner?: string;
  /** What the app captured at login (user agent, IP, a label), listed by `sessionsOf`. */
  meta?: SessionData;
  /**
   * Set on the old id's record by `regenerate()` with `regenerateGraceMs`: the time, in ms since
   * the epoch, past which no save or touch through that id keeps the record.
   */
  retiredUntil?: number;
}

/**
 * Turns an envelope into stored bytes and back. `id` is the session id the bytes are stored
 * under; a codec may bind the bytes to it. `decode` throws `SessionError('ERR_CORRUPT_RECORD')`
 * for bytes it cannot read, `SessionError('ERR_UNSUPPORTED')` for bytes in a newer format of its
 * own, and never evaluates them as code.
 */
export interface SessionCodec {
  readonly name: string;
  encode(envelope: SessionEnvelope, id: string): Uint8Array;
  decode(bytes: Uint8Array, id: string): SessionEnvelope;
}

/**
 * Refuses anything but a codec, naming it as `name`: a codec factory passed uncalled would
 * otherwise fail every save.
 */
export function assertCodec(codec: unknown, name: string): asserts codec is SessionCodec {
  if (hasMethods(codec, ['encode', 'decode'])) return;
  const call =
    typeof codec === 'function' && codec.name !== 'aesGcmCodec' && codec.name !== ''
      ? `${codec.name}()`
      : 'aesGcmCodec({ keys })';
  const hint =
    typeof codec === 'function' ? ` (a codec factory must be called: ${name}: ${call})` : '';
  throw new TypeError(
    `${name} must be a SessionCodec with encode and decode, got ${describeValue(codec)}${hint}`,
  );
}

function corrupt(reason: string, cause?: unknown): SessionError {
  return new SessionError('ERR_CORRUPT_RECORD', `Stored session cannot be decoded: ${reason}`, {
    cause,
  });
}

/**
 * `JSON.parse`'s error without the text it quotes: around an unexpected token V8 shows part of
 * the record, or all of a short one, and a record holds its owner and the session's data, which
 * no error (reported to `onError`, logged) may show.
 */
function withoutQuotedText(error: unknown): unknown {
  if (!(error instanceof SyntaxError)) return error;
  const quoted = error.message.search(/, (?:\.\.\.)?"/);
  return quoted === -1 ? error : new SyntaxError(`${error.message.slice(0, quoted)} in JSON`);
}

export function isPlainObject(value: unknown): value is SessionData {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/** Checks the shape of a decoded envelope; anything else is a corrupt record. */
export function assertEnvelope(value: unknown): asserts value is SessionEnvelope {
  if (!isPlainObject(value)) throw corrupt('not an object');
  const { createdAt, lastAccessedAt, data } = value as Partial<SessionEnvelope>;
  if (typeof createdAt !== 'number' || !Number.isFinite(createdAt)) throw corrupt('bad createdAt');
  if (typeof lastAccessedAt !== 'number' || !Number.isFinite(lastAccessedAt)) {
    throw corrupt('bad lastAccessedAt');
  }
  if (!isPlainObject(data)) throw corrupt('data is not an object');
  const { owner, meta } = value as Partial<SessionEnvelope>;
  if (owner !== undefined && !isOwner(owner)) throw corrupt('bad owner');
  if (meta !== undefined && !isPlainObject(meta)) throw corrupt('meta is not an object');
  const { retiredUntil } = value as Partial<SessionEnvelope>;
  if (retiredUntil !== undefined && !Number.isFinite(retiredUntil))
    throw corrupt('bad retiredUntil');
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

/** Every codec `jsonCodec()` made, so adapters can encode a session's JSON text without parsing it back. */
const jsonCodecs = new WeakSet<SessionCodec>();

/** True when `codec` came from `jsonCodec()`, so its bytes are known to be the JSON envelope. */
export function isJsonCodec(codec: SessionCodec): boolean {
  return jsonCodecs.has(codec);
}

/**
 * The default codec: UTF-8 JSON `{"createdAt":…,"lastAccessedAt":…,"data":{…}}`, plus `"owner"`
 * and `"meta"` once a session has an owner. Readable in any backend's tools, and `JSON.parse`
 * never runs code.
 */
export function jsonCodec(): SessionCodec {
  const codec: SessionCodec = {
    name: 'json',
    encode(envelope) {
      return textEncoder.encode(
        JSON.stringify({
          createdAt: envelope.createdAt,
          lastAccessedAt: envelope.lastAccessedAt,
          data: envelope.data,
          owner: envelope.owner,
          meta: envelope.meta,
          retiredUntil: envelope.retiredUntil,
        }),
      );
    },
    decode(bytes) {
      let value: unknown;
      try {
        value = JSON.parse(textDecoder.decode(bytes));
      } catch (error) {
        throw corrupt('invalid UTF-8 JSON', withoutQuotedText(error));
      }
      assertEnvelope(value);
      return value;
    },
  };
  jsonCodecs.add(codec);
  return codec;
}

export interface AesGcmCodecOptions {
  /**
   * 32-byte keys, as bytes or as base64/base64url strings. The first key encrypts; every key
   * decrypts, so rotate by putting a new key first and dropping the old one once every session
   * written with it has expired.
   */
  keys: ReadonlyArray<Uint8Array | string>;
  /** The codec whose bytes are encrypted. Default `jsonCodec()`. */
  inner?: SessionCodec;
}

const AES_FORMAT_VERSION = 1;
const KEY_ID_BYTES = 4;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + KEY_ID_BYTES + IV_BYTES;

interface AesKey {
  key: Buffer;
  keyId: Buffer;
}

function toKey(input: Uint8Array | string, index: number): AesKey {
  let key: Buffer;
  if (typeof input === 'string') key = Buffer.from(input, 'base64');
  else if (input instanceof Uint8Array) key = Buffer.from(input);
  else throw new TypeError(`keys[${index}] must be a Uint8Array or a base64 string`);
  if (key.length !== 32) {
    throw new TypeError(`keys[${index}] must be 32 bytes for AES-256-GCM, got ${key.length}`);
  }
  // A one-way tag lets decode pick the key without trying each, and reveals nothing of the key.
  const keyId = createHmac('sha256', key)
    .update('sessile aes-gcm key id')
    .digest()
    .subarray(0, KEY_ID_BYTES);
  return { key, keyId };
}

/**
 * Encryption at rest with AES-256-GCM (node:crypto). Layout: version (1 byte), key id (4),
 * IV (12), ciphertext, auth tag (16). The session id is authenticated data, so bytes copied to
 * another id, like any other change, fail with `ERR_CORRUPT_RECORD`; a later format version
 * (a newer release's record) fails with `ERR_UNSUPPORTED`.
 */
export function aesGcmCodec(options: AesGcmCodecOptions): SessionCodec {
  if (typeof options !== 'object' || options === null || !Array.isArray(options.keys)) {
    throw new TypeError('aesGcmCodec needs { keys: [key, ...] }');
  }
  assertKnownOptions(options, ['keys', 'inner'], 'aesGcmCodec');
  if (options.keys.length === 0) throw new TypeError('aesGcmCodec needs at least one key');
  if (options.inner !== undefined) assertCodec(options.inner, 'aesGcmCodec: inner');
  const keys = options.keys.map(toKey);
  const inner = options.inner ?? jsonCodec();
  const encryptKey = keys[0] as AesKey;
  return {
    name: `aes-256-gcm(${inner.name})`,
    encode(envelope, id) {
      const plaintext = inner.encode(envelope, id);
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', encryptKey.key, iv);
      cipher.setAAD(Buffer.from(id, 'utf8'));
      const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return Buffer.concat([
        Buffer.of(AES_FORMAT_VERSION),
        encryptKey.keyId,
        iv,
        ciphertext,
        cipher.getAuthTag(),
      ]);
    },
    decode(bytes, id) {
      const input = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      // Before the length check: a newer format may lay its bytes out otherwise.
      const version = input[0];
      if (version !== undefined && version > AES_FORMAT_VERSION) {
        // A newer release's record (a rolling deploy): not damage, so never replaced or evicted.
        throw new SessionError(
          'ERR_UNSUPPORTED',
          `Stored session has AES-GCM format ${version}, written by a newer version; this version reads format ${AES_FORMAT_VERSION}`,
        );
      }
      if (input.length < HEADER_BYTES + TAG_BYTES) throw corrupt('too short for AES-GCM');
      if (version !== AES_FORMAT_VERSION) throw corrupt('unknown AES-GCM format version');
      const keyId = input.subarray(1, 1 + KEY_ID_BYTES);
      const iv = input.subarray(1 + KEY_ID_BYTES, HEADER_BYTES);
      const ciphertext = input.subarray(HEADER_BYTES, input.length - TAG_BYTES);
      const tag = input.subarray(input.length - TAG_BYTES);
      const candidates = keys.filter((entry) => entry.keyId.equals(keyId));
      if (candidates.length === 0) throw corrupt('encrypted with a key that is not configured');
      for (const candidate of candidates) {
        let plaintext: Buffer;
        try {
          const decipher = createDecipheriv('aes-256-gcm', candidate.key, iv);
          decipher.setAAD(Buffer.from(id, 'utf8'));
          decipher.setAuthTag(tag);
          plaintext = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
        } catch {
          continue;
        }
        return inner.decode(plaintext, id);
      }
      throw corrupt('authentication failed (tampered, or stored under another id)');
    },
  };
}

/** A new random 32-byte key for `aesGcmCodec`, base64 encoded. */
export function generateAesKey(): string {
  return randomBytes(32).toString('base64');
}
