import { fdatasyncSync, ftruncateSync, readSync, writeSync, writevSync } from 'node:fs';

/**
 * How hard a commit pushes its writes to the disk.
 * - `'normal'`: left to the operating system; a killed process loses at most the change it was
 *   making, a power loss or kernel crash may lose more.
 * - `'full'`: `fdatasync` before and after the journal of every commit, so committed changes
 *   also survive a power loss.
 */
export type DbmDurability = 'normal' | 'full';

/**
 * Positional, synchronous reads and writes on the database file's descriptor. `fence` runs before
 * every write and throws when this process may no longer write the file (its hold of the global
 * lock ended), so a holder that stalled past its lease writes nothing more into another's change.
 */
export class FileIo {
  constructor(
    readonly fd: number,
    /** The absolute path of the file, for error messages. */
    readonly path: string,
    readonly durability: DbmDurability,
    readonly fence: () => void = () => {},
  ) {}

  /** Reads `length` bytes; bytes past the end of the file read as zeros. */
  read(offset: number, length: number): Buffer {
    // Not zeroed up front: every byte is read or, past the end of the file, filled below. Not
    // from the shared pool either: a record's data is handed out as a view of this buffer.
    const buf = Buffer.allocUnsafeSlow(length);
    let done = 0;
    while (done < length) {
      const read = readSync(this.fd, buf, done, length - done, offset + done);
      if (read === 0) break;
      done += read;
    }
    if (done < length) buf.fill(0, done);
    return buf;
  }

  write(offset: number, bytes: Uint8Array): void {
    this.fence();
    let done = 0;
    while (done < bytes.length) {
      done += writeSync(this.fd, bytes, done, bytes.length - done, offset + done);
    }
  }

  /** Writes `buffers` one after another from `offset`: one system call for them all, as a rule. */
  writeRun(offset: number, buffers: Uint8Array[]): void {
    this.fence();
    let written = buffers.length === 1 ? 0 : writevSync(this.fd, buffers, offset);
    let at = offset;
    for (const bytes of buffers) {
      // A short writev leaves the rest to positional writes.
      if (written < bytes.length) this.write(at + written, bytes.subarray(written));
      written = Math.max(0, written - bytes.length);
      at += bytes.length;
    }
  }

  truncate(size: number): void {
    this.fence();
    ftruncateSync(this.fd, size);
  }

  /** Flushes written data to the disk when durability is `'full'`. */
  sync(): void {
    if (this.durability === 'full') fdatasyncSync(this.fd);
  }
}
