import { inspect } from 'node:util';
import { describe, expect, it, vi } from 'vitest';
import {
  aesGcmCodec,
  generateAesKey,
  generateSessionId,
  isSessionError,
  jsonCodec,
  type SessionEnvelope,
} from '../src/index.js';
import { decodeLibrarySession, encodeLibrarySession } from '../src/store.js';

// The machine is shared with other suites: allow slow runs; no test asserts on time.
vi.setConfig({ testTimeout: 60_000 });

const envelope: SessionEnvelope = {
  createdAt: 1_700_000_000_000,
  lastAccessedAt: 1_700_000_100_000,
  data: { user: 'alice', cart: [1, 2, 3], nested: { ok: true } },
};

function expectCorrupt(run: () => unknown): void {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  expect(isSessionError(caught, 'ERR_CORRUPT_RECORD')).toBe(true);
}

describe('jsonCodec', () => {
  const codec = jsonCodec();
  const id = generateSessionId();

  it('round-trips the envelope as readable JSON', () => {
    const bytes = codec.encode(envelope, id);
    expect(JSON.parse(new TextDecoder().decode(bytes))).toEqual(envelope);
    expect(codec.decode(bytes, id)).toEqual(envelope);
  });

  it('rejects bytes that are not a session envelope with ERR_CORRUPT_RECORD', () => {
    const encoder = new TextEncoder();
    expectCorrupt(() => codec.decode(encoder.encode('{"createdAt":1,'), id));
    expectCorrupt(() => codec.decode(Uint8Array.of(0xff, 0xfe, 0x00), id));
    expectCorrupt(() => codec.decode(encoder.encode('[1,2]'), id));
    expectCorrupt(() =>
      codec.decode(encoder.encode('{"createdAt":1,"lastAccessedAt":2,"data":[]}'), id),
    );
    expectCorrupt(() =>
      codec.decode(encoder.encode('{"createdAt":"x","lastAccessedAt":2,"data":{}}'), id),
    );
  });

  it("carries a session's owner and login meta, and leaves them out of an anonymous session's bytes", () => {
    const owned: SessionEnvelope = {
      ...envelope,
      owner: 'user-42',
      meta: { userAgent: 'Firefox' },
    };
    expect(codec.decode(codec.encode(owned, id), id)).toEqual(owned);
    expect(new TextDecoder().decode(codec.encode(envelope, id))).not.toMatch(/owner|meta/);
  });

  it('rejects a stored owner or meta of the wrong shape with ERR_CORRUPT_RECORD', () => {
    const encode = (extra: object) =>
      new TextEncoder().encode(JSON.stringify({ ...envelope, ...extra }));
    for (const extra of [
      { owner: '' },
      { owner: 42 },
      { owner: 'x'.repeat(257) },
      { meta: [1] },
      { meta: 'x' },
    ]) {
      expectCorrupt(() => codec.decode(encode(extra), id));
    }
  });

  it("shows none of a record's text in the error of bytes that do not parse, nor its cause", () => {
    const owned: SessionEnvelope = { ...envelope, owner: 'alice@example.com' };
    // A flipped byte where the owner's string begins: an unexpected token in its place.
    const text = new TextDecoder().decode(codec.encode(owned, id)).replace('"alice', 'xalice');
    const parseError = (() => {
      try {
        JSON.parse(text);
      } catch (error) {
        return error as SyntaxError;
      }
      throw new Error('parsed');
    })();
    // What the cause would show as it is: V8 quotes the text around the token.
    expect(parseError.message).toContain('alice');
    let caught: unknown;
    try {
      codec.decode(new TextEncoder().encode(text), id);
    } catch (error) {
      caught = error;
    }
    expect(isSessionError(caught, 'ERR_CORRUPT_RECORD')).toBe(true);
    const cause = (caught as Error).cause;
    expect(cause).toBeInstanceOf(SyntaxError);
    expect((cause as Error).message).toBe(`${parseError.message.split(', ')[0]} in JSON`);
    expect(inspect(caught, { depth: 8 })).not.toMatch(/alice|example\.com/);
  });

  it('never evaluates stored bytes', () => {
    const hostile = new TextEncoder().encode(
      '{"createdAt":1,"lastAccessedAt":1,"data":{"__proto__":{"polluted":true},"fn":"(() => { throw 1 })()"}}',
    );
    const decoded = codec.decode(hostile, id);
    expect(decoded.data.fn).toBe('(() => { throw 1 })()');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('encodeLibrarySession', () => {
  const session = {
    cookie: { originalMaxAge: 60_000, expires: new Date(1_700_000_060_000), path: '/' },
    user: { name: 'Ada', roles: ['admin'] },
    dropped: undefined,
    note: 'é ✓ 😀',
  };

  it('writes the bytes jsonCodec() writes for the session JSON round trip, at any time', () => {
    const codec = jsonCodec();
    const id = generateSessionId();
    // Repeated and changing times, a fraction and a negative zero all print as JSON prints them.
    for (const now of [1_700_000_000_000, 1_700_000_000_000, 1_700_000_000_001, 12.5, -0]) {
      const bytes = encodeLibrarySession(codec, id, session, now);
      const data = JSON.parse(JSON.stringify(session));
      expect(Buffer.from(bytes).toString()).toBe(
        Buffer.from(codec.encode({ createdAt: now, lastAccessedAt: now, data }, id)).toString(),
      );
      const read = JSON.parse(JSON.stringify(now)) as number;
      expect(codec.decode(bytes, id)).toEqual({ createdAt: read, lastAccessedAt: read, data });
    }
  });

  it('keeps each session its own bytes, however many are encoded and however large', () => {
    const codec = jsonCodec();
    const id = generateSessionId();
    // Enough sessions to fill several 64 KiB scratch slabs, then one larger than a slab piece.
    const sessions = Array.from({ length: 400 }, (_, i) => ({
      ...session,
      n: i,
      pad: 'é'.repeat(i),
    }));
    sessions.push({ ...session, n: -1, pad: '✓'.repeat(20_000) });
    const encoded = sessions.map((each) => encodeLibrarySession(codec, id, each, 5));
    encoded.forEach((bytes, i) => {
      expect(codec.decode(bytes, id).data).toEqual(JSON.parse(JSON.stringify(sessions[i])));
    });
  });

  it('refuses a session that is not saved as a JSON object', () => {
    const id = generateSessionId();
    for (const value of [[1, 2], { toJSON: () => '{"a":1}' }, { toJSON: () => undefined }]) {
      expect(() => encodeLibrarySession(jsonCodec(), id, value, 1)).toThrow(
        /must be saved as a JSON object/,
      );
    }
  });
});

describe('decodeLibrarySession', () => {
  const id = generateSessionId();
  const bytesOf = (text: string) => new TextEncoder().encode(text);

  it("gives codec.decode()'s data for every form a jsonCodec() record takes", () => {
    const codec = jsonCodec();
    const data = { user: 'Ada', nested: { data: { x: 1 } }, note: 'é ✓ 😀', '}': '"data":{' };
    const records = [
      encodeLibrarySession(codec, id, data, 1_700_000_000_000),
      codec.encode({ createdAt: 1, lastAccessedAt: 2, data }, id),
      // An owner and metadata follow the data; fractional and negative times.
      codec.encode({ createdAt: 3, lastAccessedAt: 4, data, owner: 'u1', meta: { ua: 'x' } }, id),
      codec.encode({ createdAt: 1.5, lastAccessedAt: -2, data }, id),
      // Text the codec never writes, but which parses: a repeated key's last value wins.
      bytesOf('{"createdAt":1,"lastAccessedAt":2,"data":{"a":1},"data":{"b":2}}'),
      bytesOf('{"createdAt":1,"lastAccessedAt":2,"data":{"a":1} }'),
      bytesOf('{"createdAt":1,"lastAccessedAt":2,"data":{"__proto__":{"polluted":true}}}'),
    ];
    for (const bytes of records) {
      const decoded = decodeLibrarySession(codec, bytes, id);
      expect(decoded).toEqual(codec.decode(bytes, id).data);
      expect(Object.getPrototypeOf(decoded)).toBe(Object.prototype);
    }
    expect(decodeLibrarySession(codec, records[4] as Uint8Array, id)).toEqual({ b: 2 });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('refuses what codec.decode() refuses, with ERR_CORRUPT_RECORD', () => {
    const codec = jsonCodec();
    const bad = [
      bytesOf('{"createdAt":1,"lastAccessedAt":2,"data":{"a":1}'),
      bytesOf('{"createdAt":1,"lastAccessedAt":2,"data":[1]}'),
      bytesOf('{"createdAt":1,"lastAccessedAt":2,"data":{"a":1}},'),
      bytesOf('{"createdAt":1,"data":{"a":1}}'),
      // Invalid UTF-8 inside the data.
      Uint8Array.from([
        ...bytesOf('{"createdAt":1,"lastAccessedAt":2,"data":{"a":"'),
        0xff,
        0x22,
        0x7d,
        0x7d,
      ]),
    ];
    for (const bytes of bad) {
      expect(() => codec.decode(bytes, id)).toThrow();
      let caught: unknown;
      try {
        decodeLibrarySession(codec, bytes, id);
      } catch (error) {
        caught = error;
      }
      expect(isSessionError(caught, 'ERR_CORRUPT_RECORD')).toBe(true);
    }
  });

  it("reads any other codec's records through that codec", () => {
    const codec = aesGcmCodec({ keys: [generateAesKey()] });
    const data = { user: 'Ada' };
    const bytes = encodeLibrarySession(codec, id, data, 5);
    expect(decodeLibrarySession(codec, bytes, id)).toEqual(data);
    expect(() => decodeLibrarySession(codec, bytes, generateSessionId())).toThrow(
      /authentication failed/,
    );
  });
});

describe('aesGcmCodec', () => {
  const id = generateSessionId();

  it('round-trips, and the stored bytes do not contain the plaintext', () => {
    const codec = aesGcmCodec({ keys: [generateAesKey()] });
    const bytes = codec.encode(envelope, id);
    expect(Buffer.from(bytes).includes('alice')).toBe(false);
    expect(codec.decode(bytes, id)).toEqual(envelope);
  });

  it('uses a fresh IV for every encode', () => {
    const codec = aesGcmCodec({ keys: [generateAesKey()] });
    expect(
      Buffer.from(codec.encode(envelope, id)).equals(Buffer.from(codec.encode(envelope, id))),
    ).toBe(false);
  });

  it('detects any flipped byte with ERR_CORRUPT_RECORD', () => {
    const codec = aesGcmCodec({ keys: [generateAesKey()] });
    const bytes = codec.encode(envelope, id);
    for (let index = 0; index < bytes.length; index++) {
      const tampered = Uint8Array.from(bytes);
      tampered[index] = (tampered[index] as number) ^ 0x01;
      expectCorrupt(() => codec.decode(tampered, id));
    }
    expectCorrupt(() => codec.decode(bytes.subarray(0, bytes.length - 1), id));
    expectCorrupt(() => codec.decode(new Uint8Array(0), id));
  });

  it("reads a later format version (a newer release's record) as ERR_UNSUPPORTED, not as damage", () => {
    const codec = aesGcmCodec({ keys: [generateAesKey()] });
    const bytes = codec.encode(envelope, id);
    for (const newer of [
      Uint8Array.of(2, ...bytes.subarray(1)),
      Uint8Array.of(2),
      Uint8Array.of(255, 0),
    ]) {
      let caught: unknown;
      try {
        codec.decode(newer, id);
      } catch (error) {
        caught = error;
      }
      expect(isSessionError(caught, 'ERR_UNSUPPORTED'), String(caught)).toBe(true);
      expect(String(caught)).toMatch(
        /format \d+, written by a newer version; this version reads format 1/,
      );
    }
    expectCorrupt(() => codec.decode(Uint8Array.of(0, ...bytes.subarray(1)), id));
  });

  it('binds the bytes to the session id, so copying them to another id is detected', () => {
    const codec = aesGcmCodec({ keys: [generateAesKey()] });
    const bytes = codec.encode(envelope, id);
    expectCorrupt(() => codec.decode(bytes, generateSessionId()));
  });

  it('rotates keys: encrypts with the first key and decrypts with any', () => {
    const oldKey = generateAesKey();
    const newKey = generateAesKey();
    const before = aesGcmCodec({ keys: [oldKey] });
    const during = aesGcmCodec({ keys: [newKey, oldKey] });
    const after = aesGcmCodec({ keys: [newKey] });
    const writtenBefore = before.encode(envelope, id);
    expect(during.decode(writtenBefore, id)).toEqual(envelope);
    const writtenDuring = during.encode(envelope, id);
    expect(after.decode(writtenDuring, id)).toEqual(envelope);
    expectCorrupt(() => before.decode(writtenDuring, id));
    expectCorrupt(() => after.decode(writtenBefore, id));
  });

  it('accepts keys as bytes or base64 and rejects keys that are not 32 bytes', () => {
    const raw = Buffer.alloc(32, 7);
    const fromBytes = aesGcmCodec({ keys: [raw] });
    const fromString = aesGcmCodec({ keys: [raw.toString('base64')] });
    expect(fromString.decode(fromBytes.encode(envelope, id), id)).toEqual(envelope);
    expect(() => aesGcmCodec({ keys: [Buffer.alloc(16)] })).toThrow(TypeError);
    expect(() => aesGcmCodec({ keys: [] })).toThrow(TypeError);
    expect(() => aesGcmCodec({ keys: [raw], iner: jsonCodec() } as never)).toThrow(
      /'iner'.*'inner'/,
    );
  });

  it('refuses an inner that is not a codec when made, not at every save (a factory passed uncalled)', () => {
    const keys = [generateAesKey()];
    expect(() => aesGcmCodec({ keys, inner: jsonCodec as never })).toThrow(
      /aesGcmCodec: inner must be a SessionCodec.*a codec factory must be called: aesGcmCodec: inner: jsonCodec\(\)/,
    );
    for (const inner of [5, null, {}]) {
      expect(() => aesGcmCodec({ keys, inner: inner as never }), String(inner)).toThrow(TypeError);
    }
  });
});
