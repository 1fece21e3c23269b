import type { SessionRecord } from '@sessile/core';

export const HOUR_MS = 3_600_000;

/** A valid session id made from a readable label. */
export function idOf(label: string): string {
  return `${label}-${'x'.repeat(Math.max(0, 16 - label.length - 1))}`;
}

/** A record holding `text`, live for an hour unless told. */
export function record(text: string, expiresAt = Date.now() + HOUR_MS): SessionRecord {
  return { data: Buffer.from(text), expiresAt };
}

export function textOf(data: Uint8Array | undefined): string | undefined {
  return data === undefined ? undefined : Buffer.from(data).toString();
}
