import { isSessionError, type SessionRecord } from '@sessile/core';

export const HOUR_MS = 3_600_000;

/** A record holding `text`, live for an hour unless told. */
export function recordOf(text: string, expiresAt = Date.now() + HOUR_MS): SessionRecord {
  return { data: new TextEncoder().encode(text), expiresAt };
}

export function textOf(record: SessionRecord | undefined): string | undefined {
  return record === undefined ? undefined : new TextDecoder().decode(record.data);
}

/** `'ok'` when `promise` resolves, else its `SessionError` code (or the error as text). */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'ok';
  } catch (error) {
    return isSessionError(error) ? error.code : String(error);
  }
}
