import { type Stats, statfsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** Resolves on the next turn of the event loop, after pending I/O callbacks. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** How a bad option value reads in an error: strings quoted, so `'1000'` never passes for `1000`. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return `'${value}' (a string)`;
  if (typeof value === 'bigint') return `${value}n (a bigint)`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'function') return 'a function';
  return String(value);
}

/**
 * What to add to a refusal of `value` as a sessile store, naming what it is when it is a common
 * mistake: the promise of a store's `open()` (a missing `await`), an adapter for another
 * library's middleware (`toExpressStore`'s, with the sessile store as `store`), or such a
 * middleware's own store (express-session's MemoryStore, connect-redis: `get`, `set`, `destroy`).
 */
export function storeHint(value: unknown): string {
  const given = value as { then?: unknown; store?: unknown } | null | undefined;
  if (typeof given?.then === 'function') return " (a promise: await the store's open() first)";
  if (hasMethods(given?.store, ['get', 'set', 'delete'])) {
    return ' (an adapter for another session middleware, such as toExpressStore(store)): pass the sessile store it wraps, its .store';
  }
  if (hasMethods(value, ['get', 'set', 'destroy'])) {
    return " with get, set and destroy: a session middleware's own store; pass a sessile store, such as MemoryStore from @sessile/core";
  }
  return '';
}

export function assertNonNegativeNumber(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0) {
    throw new TypeError(`${name} must be a non-negative number, got ${describeValue(value)}`);
  }
}

export function assertPositiveInteger(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new TypeError(`${name} must be a positive integer, got ${describeValue(value)}`);
  }
}

/** The last time a `Date` can hold, in ms since the epoch (ECMA-262's time value range). */
export const MAX_DATE_MS = 8.64e15;

/**
 * The longest delay Node's timers honour. A longer `setTimeout` fires after 1 ms, so every
 * duration that arms a timer is refused above this (about 24.8 days).
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface DurationRule {
  /** Whether 0 is allowed. Default true. */
  zero?: boolean;
  /** The largest value allowed. Default `MAX_TIMER_MS`, for durations that arm a timer. */
  max?: number;
}

/**
 * Checks a duration in milliseconds: a finite number from 0 (or above 0 when `zero` is false)
 * to `max`. Every message reads `<name> must be …, got <value>`.
 */
export function assertDuration(
  value: unknown,
  name: string,
  rule: DurationRule = {},
): asserts value is number {
  const zero = rule.zero ?? true;
  const max = rule.max ?? MAX_TIMER_MS;
  const ok =
    typeof value === 'number' &&
    Number.isFinite(value) &&
    value <= max &&
    (zero ? value >= 0 : value > 0);
  if (!ok) {
    const low = zero ? 'from 0' : 'greater than 0 and';
    throw new TypeError(
      `${name} must be a number of milliseconds ${low} up to ${max}, got ${describeValue(value)}`,
    );
  }
}

/**
 * Refuses option names that `known` does not list, naming every one, each with the closest known
 * name (or its entry in `hints`: where a peer library's option goes here). Misspelt options
 * (`durabilty`, `busyTimeout`) would otherwise be ignored without a word.
 */
export function assertKnownOptions(
  options: object,
  known: readonly string[],
  where: string,
  hints: Readonly<Record<string, string>> = {},
): void {
  // A loop, not a filter: stores check every write's options here, and most have none unknown.
  let unknown: string[] | undefined;
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    unknown ??= [];
    unknown.push(key);
  }
  if (unknown === undefined) return;
  const hintFor = (key: string): string | undefined => {
    if (Object.hasOwn(hints, key)) return hints[key];
    const guess = closest(key, known);
    return guess === undefined ? undefined : `did you mean '${guess}'?`;
  };
  if (unknown.length === 1) {
    const key = unknown[0] as string;
    const hint = hintFor(key);
    throw new TypeError(
      `${where}: unknown option '${key}'${hint === undefined ? '' : `; ${hint}`}`,
    );
  }
  const named = unknown.map((key) => {
    const hint = hintFor(key);
    return hint === undefined ? `'${key}'` : `'${key}' (${hint})`;
  });
  const last = named.pop() as string;
  throw new TypeError(`${where}: unknown options ${named.join(', ')} and ${last}`);
}

/**
 * The known name `name` was probably meant as: the same name in another case or with `_` or `-`
 * (`pool_size` for `poolSize`), else one it begins (`maxRecord`), else one it begins with
 * (`tableName` for `table`), else the nearest by edit distance; none unless it is near enough to
 * be a likely typo. So `poolsize` is taken for `poolSize`, not for `pool`.
 */
function closest(name: string, known: readonly string[]): string | undefined {
  const wanted = loose(name);
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of known) {
    const c = loose(candidate);
    const distance =
      c === wanted
        ? 0
        : c.startsWith(wanted)
          ? 1
          : wanted.startsWith(c)
            ? 2
            : editDistance(wanted, c);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

/** `name` in lower case without `_` and `-`. */
function loose(name: string): string {
  return name.toLowerCase().replace(/[_-]/g, '');
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(
        (previous[j] as number) + 1,
        (current[j - 1] as number) + 1,
        (previous[j - 1] as number) + cost,
      );
    }
    previous = current;
  }
  return previous[b.length] as number;
}

export function assertAbortSignal(
  value: unknown,
  name: string,
): asserts value is AbortSignal | undefined {
  if (value !== undefined && !(value instanceof AbortSignal)) {
    throw new TypeError(`${name} must be an AbortSignal`);
  }
}

/**
 * Linux kernel pseudo-filesystems, by `statfs` type. Their files are kernel interfaces, not
 * storage: reading one may block or return live data, writing one may change the system.
 */
const PSEUDO_FILESYSTEMS: ReadonlyMap<number, string> = new Map([
  [0x9fa0, 'proc'],
  [0x62656572, 'sysfs'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0x64626720, 'debugfs'],
  [0x74726163, 'tracefs'],
  [0x73636673, 'securityfs'],
  [0x62656570, 'configfs'],
  [0xcafe4a11, 'bpf'],
  [0xde5e81e4, 'efivarfs'],
  [0x6165676c, 'pstore'],
]);

/**
 * The name of the kernel pseudo-filesystem (`'proc'`, `'sysfs'`, …) that holds `path`, or,
 * when `path` does not exist yet, its nearest existing ancestor; `undefined` for real storage,
 * off Linux, or when it cannot be told. Stores check it before creating anything: Node's
 * recursive `mkdir` never returns on some `/proc` paths, and SQLite would write to a kernel file.
 */
export function pseudoFilesystemOf(path: string): string | undefined {
  if (process.platform !== 'linux') return undefined;
  for (let current = resolve(path); ; current = dirname(current)) {
    try {
      return PSEUDO_FILESYSTEMS.get(statfsSync(current).type >>> 0);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // The opener that follows reports what is wrong with the path.
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || dirname(current) === current) {
        return undefined;
      }
    }
  }
}

/** What a file that is not a regular file is, for messages: `'a directory'`, `'a FIFO'`, … */
export function fileKindOf(stats: Stats): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isSocket()) return 'a socket';
  if (stats.isSymbolicLink()) return 'a symbolic link';
  return stats.isFile() ? 'a regular file' : 'not a regular file';
}

/** An error's message, or the thrown value as text. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The length of a cookie's signature: SHA-256 in unpadded base64 (express-session) or base64url. */
export const MAC_CHARS = 43;

/**
 * How many cookies of the session's name one request may have checked. A browser sends more
 * than one only for cookies of other paths or domains; checking each of thousands would cost
 * an HMAC per secret per cookie, work any client could ask of the server.
 */
export const MAX_SAME_NAME_COOKIES = 8;

/**
 * The values of every cookie named `name` in a `Cookie` request header, unquoted and
 * URI-decoded, in order, the first `limit` of them. A value that does not decode is left out.
 */
export function cookieValues(
  cookieHeader: string | string[] | undefined,
  name: string,
  limit = Number.POSITIVE_INFINITY,
): string[] {
  if (cookieHeader === undefined) return [];
  const header = Array.isArray(cookieHeader) ? cookieHeader.join('; ') : cookieHeader;
  const values: string[] = [];
  for (const pair of header.split(';')) {
    if (values.length >= limit) break;
    const equals = pair.indexOf('=');
    if (equals === -1 || pair.slice(0, equals).trim() !== name) continue;
    let raw = pair.slice(equals + 1).trim();
    if (raw.startsWith('"') && raw.endsWith('"') && raw.length >= 2) raw = raw.slice(1, -1);
    try {
      values.push(decodeURIComponent(raw));
    } catch {
      // A malformed escape: not a cookie this server wrote.
    }
  }
  return values;
}

/** True when `value` is an object with a function at each of `names`. */
export function hasMethods(value: unknown, names: readonly string[]): boolean {
  return (
    typeof value === 'object' &&
    value !== null &&
    names.every((name) => typeof (value as Record<string, unknown>)[name] === 'function')
  );
}

/** A cookie name: an RFC 6265 token. */
export const COOKIE_NAME_PATTERN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * `text` matched literally in a Redis `SCAN MATCH` (or `KEYS`) pattern: its `*`, `?`, `[`, `]`
 * and `\` escaped. A key prefix goes through this before the pattern's own `*`.
 */
export function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (char) => `\\${char}`);
}

/** What `connectionClosed` reads of a response: Node's HTTP/1 and HTTP/2 responses have it. */
export interface ClosableResponse {
  /** True once the connection has closed (`ServerResponse.closed`), if the object tells. */
  readonly closed?: boolean;
  /** True once the response was destroyed, as its connection closing does, if the object tells. */
  readonly destroyed?: boolean;
  /** An HTTP/2 compatibility response's stream, destroyed once it closed. */
  readonly stream?: { readonly destroyed?: boolean } | null;
}

/**
 * True once the connection under `response` has closed. A `ServerResponse` says so itself; an
 * HTTP/2 compatibility response (`Http2ServerResponse`) has no `closed` and tells only through
 * its stream, whose `'close'` has then been emitted already and will not come again.
 */
export function connectionClosed(response: ClosableResponse): boolean {
  return (
    response.closed === true || response.destroyed === true || response.stream?.destroyed === true
  );
}
