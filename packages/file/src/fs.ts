import fs, { type Stats } from 'node:fs';
import { promisify } from 'node:util';
import {
  errorCode,
  type LockFileSystem,
  NO_SPACE,
  syncLockFileSystem,
  unless,
} from '@sessile/core/store';

export const { O_RDONLY, O_RDWR, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;

/**
 * `O_NOATIME` where there is one (Linux). Record files carry their expiry as mtime, a time in
 * the future, so under `relatime` every read would otherwise update the atime and dirty the
 * inode. Only the file's owner may use it; after one EPERM it is dropped for this process.
 */
let noAtime = fs.constants.O_NOATIME ?? 0;
const READ_FLAGS = O_RDONLY | O_NOFOLLOW;
/** What opening a path for reading fails with when there is nothing (readable) there. */
const NOTHING_THERE = ['ENOENT', 'ELOOP', 'ENOTDIR'];

/** True, with O_NOATIME dropped for good, when `error` is its refusal: open again without it. */
function refusedNoAtime(error: unknown, flags: number): boolean {
  if (errorCode(error) !== 'EPERM' || flags === READ_FLAGS) return false;
  noAtime = 0;
  return true;
}

/** What `readStart` found at a path. */
export interface FileStart {
  stats: Stats;
  /** Its first bytes, up to the limit asked for; undefined when it is not a regular file. */
  bytes: Buffer | undefined;
}

/** `pread`/`pwrite`: `length` bytes between `buffer[offset]` and the file at `position`. */
type PositionalTransfer = (
  fd: number,
  buffer: Uint8Array,
  offset: number,
  length: number,
  position: number,
) => Promise<number>;

/**
 * Every filesystem call the store makes, in one of two ways: through libuv's thread pool
 * (`'async'`), or on the event loop (`'sync'`), where a call on a local disk's page cache takes
 * microseconds instead of a thread-pool round trip. Either way the calls return promises and
 * reject with the errno `code`, so the code above them is the same.
 */
export interface FileSystem extends LockFileSystem {
  readonly io: 'sync' | 'async';
  /** Resolves the bytes read. */
  read: PositionalTransfer;
  futimes(fd: number, atimeSec: number, mtimeSec: number): Promise<void>;
  /** Always through the thread pool: it waits for the disk, which can take milliseconds. */
  fsync(fd: number): Promise<void>;
  ftruncate(fd: number, length: number): Promise<void>;
  /** `lstat`, resolving `undefined` (and building no Error) when nothing is at `path`. */
  lstatIfAny(path: string): Promise<Stats | undefined>;
  /**
   * Whether `path` names something reachable: one `access(2)`, building neither a `Stats` nor an
   * Error, which makes it the cheapest existence check there is. False on any failure, so a
   * caller that goes on to create `path` meets the real state (EEXIST, EACCES) there.
   */
  exists(path: string): Promise<boolean>;
  /**
   * Opens `path` to read (never through a final symlink, without touching its atime), stats
   * it and, when it is a regular file, reads up to `maxBytes` from its start; then closes it.
   * Resolves `undefined` when there is nothing to open (ENOENT, ELOOP, ENOTDIR). One call for
   * the store's hottest path, so the sync flavour makes its four syscalls in one go.
   */
  readStart(path: string, maxBytes: number): Promise<FileStart | undefined>;
}

const readAsync = promisify(fs.read);
const writeAsync = promisify(fs.write);
const fsyncAsync = promisify(fs.fsync);

/** `readStart` made of `io`'s own calls (the thread-pool flavour). */
async function readStartWith(
  io: FileSystem,
  path: string,
  maxBytes: number,
): Promise<FileStart | undefined> {
  const flags = READ_FLAGS | noAtime;
  const fd = await unless(NOTHING_THERE, undefined, () =>
    io.open(path, flags).catch((error: unknown) => {
      if (!refusedNoAtime(error, flags)) throw error;
      return io.open(path, READ_FLAGS);
    }),
  );
  if (fd === undefined) return undefined;
  try {
    const stats = await io.fstat(fd);
    if (!stats.isFile()) return { stats, bytes: undefined };
    return { stats, bytes: await readAt(io, fd, Math.min(stats.size, maxBytes), 0) };
  } finally {
    // Nothing waits on the close of a read-only descriptor whose bytes are in hand.
    io.close(fd).catch(() => {});
  }
}

/** `readStart` in plain synchronous calls (the event-loop flavour). */
function readStartSync(path: string, maxBytes: number): FileStart | undefined {
  const flags = READ_FLAGS | noAtime;
  let fd: number;
  try {
    fd = fs.openSync(path, flags);
  } catch (error) {
    if (refusedNoAtime(error, flags)) return readStartSync(path, maxBytes);
    if (NOTHING_THERE.includes(errorCode(error) as string)) return undefined;
    throw error;
  }
  try {
    const stats = fs.fstatSync(fd);
    if (!stats.isFile()) return { stats, bytes: undefined };
    const bytes = Buffer.allocUnsafe(Math.min(stats.size, maxBytes));
    let filled = 0;
    while (filled < bytes.length) {
      const bytesRead = fs.readSync(fd, bytes, filled, bytes.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return { stats, bytes: filled === bytes.length ? bytes : bytes.subarray(0, filled) };
  } finally {
    fs.closeSync(fd);
  }
}

export const asyncFileSystem: FileSystem = {
  io: 'async',
  open: promisify(fs.open),
  close: promisify(fs.close),
  fstat: promisify(fs.fstat),
  lstat: promisify(fs.lstat),
  read: async (fd, buffer, offset, length, position) =>
    (await readAsync(fd, buffer, offset, length, position)).bytesRead,
  write: async (fd, buffer, offset, length, position) =>
    (await writeAsync(fd, buffer, offset, length, position)).bytesWritten,
  futimes: promisify(fs.futimes),
  lutimes: promisify(fs.lutimes),
  fsync: fsyncAsync,
  rename: promisify(fs.rename),
  link: promisify(fs.link),
  unlink: promisify(fs.unlink),
  mkdir: async (path, options) => {
    await fs.promises.mkdir(path, options);
  },
  readdir: (path) => fs.promises.readdir(path),
  readText: (path) => fs.promises.readFile(path, 'utf8'),
  ftruncate: promisify(fs.ftruncate),
  lstatIfAny: (path) => unless(['ENOENT'], undefined, () => fs.promises.lstat(path)),
  exists: (path) =>
    fs.promises.access(path).then(
      () => true,
      () => false,
    ),
  readStart: (path, maxBytes) => readStartWith(asyncFileSystem, path, maxBytes),
};

export const syncFileSystem: FileSystem = {
  ...syncLockFileSystem,
  io: 'sync',
  read: async (fd, buffer, offset, length, position) =>
    fs.readSync(fd, buffer, offset, length, position),
  futimes: async (fd, atime, mtime) => fs.futimesSync(fd, atime, mtime),
  fsync: fsyncAsync,
  readText: async (path) => fs.readFileSync(path, 'utf8'),
  ftruncate: async (fd, length) => fs.ftruncateSync(fd, length),
  lstatIfAny: async (path) => fs.lstatSync(path, { throwIfNoEntry: false }),
  exists: async (path) => fs.existsSync(path),
  readStart: async (path, maxBytes) => readStartSync(path, maxBytes),
};

/** Calls that are not on a hot path, made through the thread pool whatever the store's `io`. */
export const realpath = promisify(fs.realpath);
export const statfs = promisify(fs.statfs);

export { errorCode, NO_SPACE, unless };

/** What a file or directory answers when its mode (changed by hand) shuts this process out. */
export const SHUT_OUT: readonly string[] = ['EACCES', 'EPERM'];

/**
 * Unlinks `path` (nothing there is fine) through the thread pool, whatever the store's `io`.
 * Freeing a file whose data is on disk can wait for the device: ext4 mounted with `discard` and
 * no journal sends a discard for the freed block and waits for it (about 0.1 ms a file on the
 * benchmark VM, against 0.01 ms for a file whose data was never written out). That wait must
 * not hold the event loop.
 */
export async function freeFile(path: string): Promise<void> {
  await unless(['ENOENT'], undefined, () => asyncFileSystem.unlink(path));
}

/** Reads exactly `length` bytes from `position`, or fewer at end of file. */
export async function readAt(
  io: FileSystem,
  fd: number,
  length: number,
  position: number,
): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const bytesRead = await io.read(fd, buffer, filled, length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled === length ? buffer : buffer.subarray(0, filled);
}

export async function writeAll(
  io: FileSystem,
  fd: number,
  bytes: Uint8Array,
  position: number,
): Promise<void> {
  let written = 0;
  while (written < bytes.byteLength) {
    written += await io.write(fd, bytes, written, bytes.byteLength - written, position + written);
  }
}

/**
 * Writes `text` over the start of `path` (created if missing), padded with spaces to at least
 * `minBytes`, without truncating first: the file keeps its inode and its block, where a
 * truncate-and-write frees both and allocates them again. Bytes past the new end are cut off.
 * For small JSON files that are rewritten often and parsed whole (spaces are valid JSON).
 */
export async function overwriteText(
  io: FileSystem,
  path: string,
  text: string,
  minBytes: number,
  mode: number,
): Promise<void> {
  const bytes = Buffer.alloc(Math.max(minBytes, Buffer.byteLength(text)), ' ');
  bytes.write(text, 0);
  const fd = await io.open(path, O_WRONLY | O_CREAT | O_NOFOLLOW, mode);
  try {
    await writeAll(io, fd, bytes, 0);
    if ((await io.fstat(fd)).size > bytes.length) await io.ftruncate(fd, bytes.length);
  } finally {
    await io.close(fd);
  }
}

/** fsyncs a directory so a rename, link or unlink in it survives power loss. */
export async function fsyncDirectory(io: FileSystem, directory: string): Promise<void> {
  const fd = await io.open(directory, O_RDONLY);
  try {
    await io.fsync(fd);
  } finally {
    await io.close(fd);
  }
}
