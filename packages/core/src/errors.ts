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

/** What `toStoreIoError` knows of the call, so that no session id reaches the error. */
export interface StoreIoContext {
  /** The session id the call was about: replaced wherever it appears. */
  id?: string;
  /**
   * The directory or file the store keeps its data in (`ioLocation()`). Names below it shaped
   * like a session id (record, temp and lock files) are replaced; it and its parents are kept.
   * Without it, the last name of the failed call's `path` and `dest` is replaced when it is
   * shaped like an id.
   */
  location?: string;
}

/** What stands in an error for a name that could be, or hold, a session id. */
export const REDACTED = '<redacted>';

/**
 * Wraps a backend failure as `ERR_STORE_IO`, keeping the original as `cause`, with the errno,
 * code and syscall it had. File names that could hold a session id are replaced in its message,
 * stack, `path` and `dest` (and in a passing `ERR_STORE_IO`'s): the cause goes to logs, and a
 * store names files after ids. Other SessionErrors pass through.
 */
export function toStoreIoError(
  error: unknown,
  action: string,
  context: StoreIoContext = {},
): SessionError {
  if (isSessionError(error)) {
    if (error.code === 'ERR_STORE_IO') redactStoreIoError(error, context);
    return error;
  }
  const redact = redactor(error, context);
  const detail = redact(error instanceof Error ? withoutPaths(error) : String(error));
  return new SessionError('ERR_STORE_IO', `${action} failed: ${detail}`, {
    cause: redactedError(error, redact),
  });
}

/** A store's own `ERR_STORE_IO`, its message and cause redacted in place. */
function redactStoreIoError(error: SessionError, context: StoreIoContext): void {
  const redact = redactor(error.cause, context);
  const message = redact(error.message);
  if (message !== error.message) {
    error.message = message;
    if (error.stack !== undefined) error.stack = redact(error.stack);
  }
  const cause = redactedError(error.cause, redact);
  if (cause !== error.cause) {
    Object.defineProperty(error, 'cause', {
      value: cause,
      writable: true,
      configurable: true,
      enumerable: false,
    });
  }
}

/**
 * A system call's error message without the paths Node appends (`rename 'a' -> 'b'`): a store's
 * file names may hold session ids. The `cause` keeps the paths, redacted.
 */
function withoutPaths(error: Error): string {
  const { syscall, path } = error as NodeJS.ErrnoException;
  if (typeof syscall !== 'string' || typeof path !== 'string') return error.message;
  const at = error.message.indexOf(`, ${syscall} '`);
  return at === -1 ? error.message : error.message.slice(0, at + syscall.length + 2);
}

/** A name, or the part of a name before its first `.`, that could be a session id. */
const ID_SHAPED = /^[A-Za-z0-9_-]{16,128}(?![A-Za-z0-9_-])/;

/** The function that redacts every text of one failure (`error` being its cause). */
function redactor(error: unknown, context: StoreIoContext): (text: string) => string {
  const { id, location } = context;
  const names: string[] = [];
  if (id !== undefined && id.length > 0) names.push(id);
  if (location === undefined && typeof error === 'object' && error !== null) {
    for (const key of ['path', 'dest'] as const) {
      const path = (error as Record<string, unknown>)[key];
      const name = typeof path === 'string' ? ID_SHAPED.exec(lastName(path)) : null;
      if (name !== null) names.push(name[0]);
    }
  }
  return (text) => {
    let redacted = text;
    for (const name of names) redacted = redacted.replaceAll(name, REDACTED);
    return location === undefined ? redacted : redactBelow(redacted, location);
  };
}

/** The last name of `path`. */
function lastName(path: string): string {
  return path.slice(Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\')) + 1);
}

/** Every path below `root` in `text`, its id-shaped names replaced. */
function redactBelow(text: string, root: string): string {
  const bare = root.replace(/[/\\]+$/, '');
  let out = '';
  let from = 0;
  for (;;) {
    let at = text.indexOf(bare, from);
    // A name that merely begins like root (`/srv/data2` for `/srv/data`) is not below it.
    while (at !== -1 && !isSeparator(text.charCodeAt(at + bare.length))) {
      at = at < text.length ? text.indexOf(bare, at + 1) : -1;
    }
    if (at === -1) return out + text.slice(from);
    const start = at + bare.length;
    let end = start;
    while (end < text.length && !PATH_END.test(text.charAt(end))) end++;
    out += text.slice(from, start) + redactPath(text.slice(start, end));
    from = end;
  }
}

/** What ends a path quoted or written into a message. */
const PATH_END = /[\s'"`,;()<>[\]{}]/;

function isSeparator(code: number): boolean {
  return code === 0x2f || code === 0x5c;
}

/** `path`, names and separators, its id-shaped names replaced. */
function redactPath(path: string): string {
  return path
    .split(/([/\\])/)
    .map((name) => (ID_SHAPED.test(name) ? name.replace(ID_SHAPED, REDACTED) : name))
    .join('');
}

/**
 * `error` with `redact` applied to its message, stack and string properties (`path`, `dest`),
 * as a copy of the same class that keeps every other property (`errno`, `code`, `syscall`); the
 * error itself when nothing changes.
 */
function redactedError(error: unknown, redact: (text: string) => string): unknown {
  if (!(error instanceof Error)) return typeof error === 'string' ? redact(error) : error;
  const changes = new Map<PropertyKey, unknown>();
  for (const key of Reflect.ownKeys(error)) {
    const value = (error as unknown as Record<PropertyKey, unknown>)[key];
    const redacted =
      typeof value === 'string'
        ? redact(value)
        : key === 'cause'
          ? redactedError(value, redact)
          : value;
    if (redacted !== value) changes.set(key, redacted);
  }
  if (changes.size === 0) return error;
  const copy = Object.create(Object.getPrototypeOf(error)) as Error;
  for (const key of Reflect.ownKeys(error)) {
    const descriptor = Object.getOwnPropertyDescriptor(error, key) as PropertyDescriptor;
    Object.defineProperty(
      copy,
      key,
      changes.has(key)
        ? {
            value: changes.get(key),
            writable: true,
            configurable: true,
            enumerable: descriptor.enumerable,
          }
        : descriptor,
    );
  }
  return copy;
}
