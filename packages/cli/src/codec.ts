import { aesGcmCodec, jsonCodec, type SessionCodec } from '@sessile/core';
import { usageError } from './exit-codes.js';

/** The environment variable with the app's AES-256-GCM keys: base64, comma separated, newest first. */
export const AES_KEYS_VARIABLE = 'SESSILE_AES_KEYS';

/** The codec the app uses: `aesGcmCodec` when keys are in the environment, else `jsonCodec`. */
export function codecFromEnvironment(env: NodeJS.ProcessEnv = process.env): SessionCodec {
  const keys = (env[AES_KEYS_VARIABLE] ?? '')
    .split(',')
    .map((key) => key.trim())
    .filter((key) => key !== '');
  if (keys.length === 0) return jsonCodec();
  try {
    return aesGcmCodec({ keys });
  } catch (error) {
    throw usageError(`${AES_KEYS_VARIABLE}: ${(error as Error).message}`);
  }
}
