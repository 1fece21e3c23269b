import type pg from 'pg';

/** A bytea as text: hex (`\x…`, the default `bytea_output`) or the older escape format. */
function parseBytea(text: string): Buffer {
  if (text.startsWith('\\x')) return Buffer.from(text.slice(2), 'hex');
  const bytes = Buffer.allocUnsafe(text.length);
  let length = 0;
  for (let i = 0; i < text.length; ) {
    if (text[i] !== '\\') {
      bytes[length++] = text.charCodeAt(i++);
    } else if (text[i + 1] === '\\') {
      bytes[length++] = 0x5c;
      i += 2;
    } else {
      bytes[length++] = Number.parseInt(text.slice(i + 1, i + 4), 8);
      i += 4;
    }
  }
  return bytes.subarray(0, length);
}

const PARSERS: ReadonlyMap<number, (text: string) => unknown> = new Map<
  number,
  (text: string) => unknown
>([
  [16, (text) => text === 't'],
  [17, parseBytea],
  [23, (text) => Number.parseInt(text, 10)],
  [701, Number.parseFloat],
  [
    1000,
    (text) =>
      text === '{}'
        ? []
        : text
            .slice(1, -1)
            .split(',')
            .map((item) => item === 't'),
  ],
]);

const asText = (text: string): string => text;

/**
 * How the store reads every column it selects (bool, bytea, int4, float8, bool[], and the rest
 * as text), whatever parsers the app registered on its pool (`types`) or globally
 * (`pg.types.setTypeParser`): an app's bytea or float8 parser made every record read corrupt.
 */
export const STORE_TYPES = {
  getTypeParser: (oid: number) => PARSERS.get(oid) ?? asText,
} as pg.CustomTypesConfig;
