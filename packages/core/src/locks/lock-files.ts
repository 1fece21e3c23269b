import fs, { type MakeDirectoryOptions, type Stats } from 'node:fs';
import { hostname } from 'node:os';

/**
 * The filesystem calls the host-wide lockfiles make. Every call returns a promise and rejects
 * with the errno `code`, so a store may run them on the event loop (`syncLockFileSystem`) or
 * through libuv's thread pool, with the same code above them.
 */
export interface LockFileSystem {
  open(path: string, flags: number, mode?: number): Promise<number>;
  close(fd: number): Promise<void>;
  fstat(fd: number): Promise<Stats>;
  lstat(path: string): Promise<Stats>;
  /**
   * `lstat` answered at once, where the calls run on the event loop: a release checks that its
   * lease file is its own and unlinks it in one turn, with no promise in between.
   */
  lstatSync?(path: string): Stats;
  /** `pwrite`: resolves the bytes written. */
  write(
    fd: number,
    buffer: Uint8Array,
    offset: number,
    length: number,
    position: number,
  ): Promise<number>;
  lutimes(path: string, atimeSec: number, mtimeSec: number): Promise<void>;
  futimes(fd: number, atimeSec: number, mtimeSec: number): Promise<void>;
  ftruncate(fd: number, length: number): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  link(existing: string, created: string): Promise<void>;
  unlink(path: string): Promise<void>;
  mkdir(path: string, options: MakeDirectoryOptions): Promise<void>;
  readdir(path: string): Promise<string[]>;
  readText(path: string): Promise<string>;
}

/** The calls made synchronously on the event loop: microseconds each on a local disk. */
export const syncLockFileSystem: LockFileSystem = {
  open: async (path, flags, mode) => fs.openSync(path, flags, mode),
  close: async (fd) => fs.closeSync(fd),
  fstat: async (fd) => fs.fstatSync(fd),
  lstat: async (path) => fs.lstatSync(path),
  lstatSync: (path) => fs.lstatSync(path),
  write: async (fd, buffer, offset, length, position) =>
    fs.writeSync(fd, buffer, offset, length, position),
  lutimes: async (path, atime, mtime) => fs.lutimesSync(path, atime, mtime),
  futimes: async (fd, atime, mtime) => fs.futimesSync(fd, atime, mtime),
  ftruncate: async (fd, length) => fs.ftruncateSync(fd, length),
  rename: async (from, to) => fs.renameSync(from, to),
  link: async (existing, created) => fs.linkSync(existing, created),
  unlink: async (path) => fs.unlinkSync(path),
  mkdir: async (path, options) => {
    fs.mkdirSync(path, options);
  },
  readdir: async (path) => fs.readdirSync(path),
  readText: async (path) => fs.readFileSync(path, 'latin1'),
};

export function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/** Runs `body` and turns the listed errno codes into `fallback`. */
export async function unless<T, F>(
  codes: readonly string[],
  fallback: F,
  body: () => Promise<T>,
): Promise<T | F> {
  try {
    return await body();
  } catch (error) {
    const code = errorCode(error);
    if (code !== undefined && codes.includes(code)) return fallback;
    throw error;
  }
}

/** What a full disk (or a quota) answers a write with. */
export const NO_SPACE: readonly string[] = ['ENOSPC', 'EDQUOT'];

/**
 * The shortest staleness a guard may have, and the default: its holder heartbeats every quarter
 * of it, so a timer a few hundred milliseconds late must not make a live holder look dead.
 */
export const GUARD_STALE_MS = 2000;
/** Every holder file is padded to this size and rewritten in place, never truncated. */
export const HOLDER_BYTES = 256;

/**
 * What a holder file says, as one line of JSON padded with spaces: the process and host that
 * wrote it and, for a lease, its token and end (ms since the epoch). `tag` lets a waiter tell
 * which session holds a key that several sessions share.
 */
export interface HolderRecord {
  pid: number;
  host: string;
  token?: string;
  expiresAt?: number;
  tag?: string;
}

/** Host names are at most 64 bytes on Linux; the cut keeps every record inside `HOLDER_BYTES`. */
export const HOST = hostname().slice(0, 64);

export function encodeHolder(record: HolderRecord): Buffer {
  return encodeHolderInto(record, Buffer.allocUnsafe(HOLDER_BYTES));
}

/** `encodeHolder` into `bytes` (`HOLDER_BYTES` long), so a holder rewritten per claim reuses one buffer. */
export function encodeHolderInto(record: HolderRecord, bytes: Buffer): Buffer {
  const text = JSON.stringify(record);
  if (Buffer.byteLength(text) > HOLDER_BYTES - 1) {
    throw new RangeError(`a holder record takes ${HOLDER_BYTES} bytes at most: ${text}`);
  }
  const end = bytes.write(text, 0, 'latin1');
  bytes.fill(0x20, end, HOLDER_BYTES - 1);
  bytes[HOLDER_BYTES - 1] = 0x0a;
  return bytes;
}

/** The record in a holder file's text; `undefined` when it is torn or not one. */
export function decodeHolder(text: string): HolderRecord | undefined {
  let value: Partial<HolderRecord>;
  try {
    value = JSON.parse(text) as Partial<HolderRecord>;
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { token, expiresAt, pid, host, tag } = value;
  if (typeof token !== 'string' || typeof expiresAt !== 'number') return undefined;
  return {
    token,
    expiresAt,
    pid: typeof pid === 'number' ? pid : 0,
    host: typeof host === 'string' ? host : '',
    ...(typeof tag === 'string' ? { tag } : {}),
  };
}

/**
 * The record of a bare lease file: one of no bytes, linked where the disk had no block left for
 * a record. Its mtime is its end; its holder is unknown, so nothing but that end frees it.
 */
export function bareHolder(stats: Stats): HolderRecord {
  return { expiresAt: stats.mtimeMs, pid: 0, host: '' };
}

/** True when a process with this id runs on this host (EPERM: it runs, under another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errorCode(error) === 'EPERM';
  }
}

/**
 * The one rule for a lease: it holds nothing once it has ended, once it is torn (a crash in
 * the middle of writing it), or once the process that wrote it is gone from this host.
 */
export function leaseEnded(record: HolderRecord | undefined, now: number): boolean {
  if (record?.expiresAt === undefined) return true;
  if (record.expiresAt <= now) return true;
  return (
    record.host === HOST &&
    record.pid > 0 &&
    record.pid !== process.pid &&
    !processAlive(record.pid)
  );
}
