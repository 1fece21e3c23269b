import { usageError } from './exit-codes.js';

/**
 * A whole number given for `option`, from `min` to `max`, in decimal digits: `0x10`, `1e3` and
 * `1.5` are refused, and so is anything past `Number.MAX_SAFE_INTEGER`, which would not be the
 * number typed.
 */
export function parseWholeNumber(
  value: string,
  option: string,
  unit: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const number = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(number) || number < min || number > max) {
    throw usageError(
      `${option} must be from ${min} to ${max} ${unit}, written as a whole number, got '${value}'`,
    );
  }
  return number;
}
