import { isSessionError } from '@sessile/core';
import { CliError, EXIT, type ExitCode } from './exit-codes.js';

/** Options every command takes. */
export interface CommonOptions {
  json?: boolean;
  /** The largest record the opened stores accept and return; unset keeps each store's default. */
  maxRecordBytes?: number;
}

/** What to do about a record over a store's size limit, said wherever one is met. */
export const RECORD_LIMIT_HINT = '--max-record-bytes raises the limit';

/** An id in reports: enough to find it in the peer, not enough to use it. */
export function maskId(id: string): string {
  return `${id.slice(0, 4)}… (${id.length} characters)`;
}

/** Writes to stdout, waiting when the pipe is full so large listings never pile up in memory. */
export async function write(text: string): Promise<void> {
  if (!process.stdout.write(text)) {
    await new Promise<void>((resolve) => process.stdout.once('drain', resolve));
  }
}

export function printJson(value: unknown): Promise<void> {
  return write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printLines(lines: readonly string[]): Promise<void> {
  return write(lines.length === 0 ? '' : `${lines.join('\n')}\n`);
}

/** The range of a JavaScript Date, ±100,000,000 days around the epoch. */
const DATE_LIMIT_MS = 8.64e15;

/**
 * A time in ms since the epoch as an ISO string, or null. Stores accept any finite expiry, so
 * one past what a Date can hold is said in words instead of failing the command.
 */
export function isoTime(ms: number | null | undefined): string | null {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return null;
  if (ms > DATE_LIMIT_MS) return `beyond year 275760 (${ms} ms since the epoch)`;
  if (ms < -DATE_LIMIT_MS) return `before year -271821 (${ms} ms since the epoch)`;
  return new Date(ms).toISOString();
}

/** Maps any failure to the one line and exit code the CLI reports. */
export function toCliError(error: unknown): CliError {
  if (error instanceof CliError) return error;
  if (isSessionError(error, 'ERR_RECORD_TOO_LARGE')) {
    return new CliError(`${error.message}; ${RECORD_LIMIT_HINT}`, EXIT.failure, error.code, {
      cause: error,
    });
  }
  if (isSessionError(error)) {
    return new CliError(error.message, EXIT.failure, error.code, { cause: error });
  }
  if (error instanceof TypeError) {
    return new CliError(error.message, EXIT.usage, 'ERR_USAGE', { cause: error });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new CliError(message, EXIT.failure, 'ERR_FAILED', { cause: error });
}

/** The one JSON document a failed `--json` run prints. */
export function printFailureJson(failure: CliError): Promise<void> {
  return printJson({
    ok: false,
    ...failure.done,
    error: { code: failure.code, message: failure.message, exitCode: failure.exitCode },
  });
}

/** Says what failed on stderr; returns the exit code. */
export function reportOnStderr(failure: CliError): ExitCode {
  process.stderr.write(`sessile: ${failure.message}\n`);
  return failure.exitCode;
}

/** Reports a failure on stderr (and as JSON on stdout with `--json`); returns the exit code. */
export async function reportError(error: unknown, json: boolean): Promise<ExitCode> {
  const failure = toCliError(error);
  reportOnStderr(failure);
  if (json) await printFailureJson(failure);
  return failure.exitCode;
}
