/**
 * Every failure a store reports carries one of these codes. They are stable across minor
 * versions; the README documents each one.
 */
export type SessionErrorCode =
  | 'ERR_INVALID_SESSION_ID'
  | 'ERR_INVALID_OWNER'
  | 'ERR_OWNER_LIMIT'
  | 'ERR_STORE_CLOSED'
  | 'ERR_LOCK_TIMEOUT'
  | 'ERR_LOCK_LOST'
  | 'ERR_CORRUPT_RECORD'
  | 'ERR_RECORD_TOO_LARGE'
  | 'ERR_STORE_IO'
  | 'ERR_STORE_BUSY'
  | 'ERR_UNSUPPORTED';

export const SESSION_ERROR_CODES: readonly SessionErrorCode[] = [
  'ERR_INVALID_SESSION_ID',
  'ERR_INVALID_OWNER',
  'ERR_OWNER_LIMIT',
  'ERR_STORE_CLOSED',
  'ERR_LOCK_TIMEOUT',
  'ERR_LOCK_LOST',
  'ERR_CORRUPT_RECORD',
  'ERR_RECORD_TOO_LARGE',
  'ERR_STORE_IO',
  'ERR_STORE_BUSY',
  'ERR_UNSUPPORTED',
];

export interface SessionErrorOptions {
  cause?: unknown;
}

/**
 * The one error class sessile throws for anything other than programmer misuse. Messages never
 * include a session id: ids are bearer secrets and errors end up in logs.
 */
export class SessionError extends Error {
  override readonly name = 'SessionError';
  readonly code: SessionErrorCode;

  constructor(code: SessionErrorCode, message: string, options: SessionErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

/** True when `error` is a `SessionError`, optionally with the given code. Works across copies of core. */
export function isSessionError(error: unknown, code?: SessionErrorCode): error is SessionError {
  if (typeof error !== 'object' || error === null) return false;
  const candidate = error as { name?: unknown; code?: unknown };
  if (candidate.name !== 'SessionError' || typeof candidate.code !== 'string') return false;
  return code === undefined || candidate.code === code;
}

/** Wraps a backend failure as `ERR_STORE_IO`, keeping the original as `cause`. SessionErrors pass through. */
export function toStoreIoError(error: unknown, action: string): SessionError {
  if (isSessionError(error)) return error;
  const detail = error instanceof Error ? withoutPaths(error) : String(error);
  return new SessionError('ERR_STORE_IO', `${action} failed: ${detail}`, { cause: error });
}

/**
 * A system call's error message without the paths Node appends (`rename 'a' -> 'b'`): a store's
 * file names may hold session ids, which messages never show. The `cause` keeps them.
 */
function withoutPaths(error: Error): string {
  const { syscall, path } = error as NodeJS.ErrnoException;
  if (typeof syscall !== 'string' || typeof path !== 'string') return error.message;
  const at = error.message.indexOf(`, ${syscall} '`);
  return at === -1 ? error.message : error.message.slice(0, at + syscall.length + 2);
}
