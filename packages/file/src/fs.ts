import fs from 'node:fs';
import { promisify } from 'node:util';

// The callback API with fds costs less per call than FileHandle objects on this hot path.
export const open = promisify(fs.open);
export const close = promisify(fs.close);
export const fstat = promisify(fs.fstat);
export const lstat = promisify(fs.lstat);
export const read = promisify(fs.read);
export const write = promisify(fs.write);
export const futimes = promisify(fs.futimes);
export const lutimes = promisify(fs.lutimes);
export const fsync = promisify(fs.fsync);
export const rename = promisify(fs.rename);
export const link = promisify(fs.link);
export const unlink = promisify(fs.unlink);
export const rmdir = promisify(fs.rmdir);
export const mkdir = promisify(fs.mkdir);
export const readdir = promisify(fs.readdir);
export const readFile = promisify(fs.readFile);
export const writeFile = promisify(fs.writeFile);
export const realpath = promisify(fs.realpath);
export const statfs = promisify(fs.statfs);

export const { O_RDONLY, O_RDWR, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;

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

/** Reads exactly `length` bytes from `position`, or fewer at end of file. */
export async function readAt(fd: number, length: number, position: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await read(fd, buffer, filled, length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled === length ? buffer : buffer.subarray(0, filled);
}

export async function writeAll(fd: number, bytes: Uint8Array, position: number): Promise<void> {
  let written = 0;
  while (written < bytes.byteLength) {
    const { bytesWritten } = await write(
      fd,
      bytes,
      written,
      bytes.byteLength - written,
      position + written,
    );
    written += bytesWritten;
  }
}

/** fsyncs a directory so a rename, link or unlink in it survives power loss. */
export async function fsyncDirectory(directory: string): Promise<void> {
  const fd = await open(directory, O_RDONLY);
  try {
    await fsync(fd);
  } finally {
    await close(fd);
  }
}
