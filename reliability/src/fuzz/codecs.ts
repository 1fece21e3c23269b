import {
  aesGcmCodec,
  generateAesKey,
  isSessionError,
  jsonCodec,
  type SessionCodec,
} from '@sessile/core';
import fc from 'fast-check';
import type { CheckOutcome } from '../results.js';
import { mutations, property } from './common.js';

const ID = 'fuzz-codec-session-0001';
const ENVELOPE = {
  createdAt: 1_700_000_000_000,
  lastAccessedAt: 1_700_000_100_000,
  data: { user: 'ada', cart: [1, 2, 3], note: 'naïve ✓' },
};

type Decoded =
  | { kind: 'envelope'; value: unknown }
  | { kind: 'corrupt' }
  | { kind: 'newer' }
  | { kind: 'error'; message: string };

/** aesGcmCodec's format version, its first byte: a later one is a newer release's record. */
const AES_FORMAT_VERSION = 1;

function decode(codec: SessionCodec, bytes: Uint8Array, id: string): Decoded {
  try {
    return { kind: 'envelope', value: codec.decode(bytes, id) };
  } catch (error) {
    if (isSessionError(error) && error.code === 'ERR_CORRUPT_RECORD') return { kind: 'corrupt' };
    if (isSessionError(error) && error.code === 'ERR_UNSUPPORTED') return { kind: 'newer' };
    return { kind: 'error', message: String(error) };
  }
}

/** What a failing case's decode gave, for its report. */
function describe(result: Decoded): string {
  if (result.kind === 'error') return result.message;
  if (result.kind === 'newer') return 'ERR_UNSUPPORTED (a newer format version)';
  if (result.kind === 'envelope') return JSON.stringify(result.value);
  return 'ERR_CORRUPT_RECORD';
}

function isEnvelope(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const envelope = value as Record<string, unknown>;
  return (
    Number.isFinite(envelope.createdAt) &&
    Number.isFinite(envelope.lastAccessedAt) &&
    typeof envelope.data === 'object' &&
    envelope.data !== null &&
    !Array.isArray(envelope.data)
  );
}

/** Codec payloads: JSON (no integrity, so only well-formed envelopes) and AES-GCM (authenticated). */
export async function fuzzCodecs(runs: number, seed: number): Promise<CheckOutcome[]> {
  const json = jsonCodec();
  const jsonBytes = json.encode(ENVELOPE, ID);
  const jsonOutcome = await property(
    'codec: json',
    mutations(jsonBytes),
    async (mutation) => {
      const result = decode(json, mutation.bytes, ID);
      if (result.kind === 'corrupt') return undefined;
      if (result.kind === 'envelope' && isEnvelope(result.value)) return undefined;
      return `${mutation.what}: decode gave ${describe(result)}`;
    },
    {
      runs,
      seed,
      notes: ['JSON carries no checksum: a mutation that stays a valid envelope decodes to it'],
    },
  );

  const key = generateAesKey();
  const aes = aesGcmCodec({ keys: [key] });
  const aesBytes = aes.encode(ENVELOPE, ID);
  const aesOutcome = await property(
    'codec: aes-256-gcm',
    fc.oneof(
      mutations(aesBytes).map((mutation) => ({ mutation, id: ID })),
      fc.constant({
        mutation: { bytes: aesBytes, what: 'the bytes of another id', changed: () => false },
        id: `${ID}x`,
      }),
    ),
    async ({ mutation, id }) => {
      if (id === ID && Buffer.compare(mutation.bytes, aesBytes) === 0) return undefined;
      const result = decode(aes, mutation.bytes, id);
      if (result.kind === 'corrupt') return undefined;
      // A later format version reads as a newer release's record, kept rather than replaced.
      const newerVersion = (mutation.bytes[0] ?? 0) > AES_FORMAT_VERSION;
      if (result.kind === 'newer' && newerVersion) return undefined;
      return `${mutation.what}: decode gave ${describe(result)}`;
    },
    {
      runs,
      seed,
      notes: [
        'a first byte above the format version reads as ERR_UNSUPPORTED (a newer release wrote it), by design',
      ],
    },
  );
  return [jsonOutcome, aesOutcome];
}
