import { closeSync, fstatSync, openSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { SessionError } from '@sessile/core';

/**
 * Linux's O_PATH: a descriptor good for fstat and nothing else. Closing it never releases the
 * POSIX locks SQLite holds on the same file, which closing any other descriptor on it would.
 */
const O_PATH = 0o10000000;

/**
 * Refuses writes once the database file has been deleted while open. SQLite in WAL mode keeps
 * writing to a deleted file without complaint, and every such write is gone at the next open.
 * On Linux it watches the file itself; elsewhere the file's directory, whose descriptor shares
 * no locks with the database.
 */
export class UnlinkGuard {
  readonly #fd: number;
  /** What the descriptor is open on: the database file, or its directory. */
  readonly #watched: string;
  readonly #file: string;

  private constructor(fd: number, watched: string, file: string) {
    this.#fd = fd;
    this.#watched = watched;
    this.#file = file;
  }

  /** A guard on the database at `path`, or `undefined` where the platform offers none. */
  static open(path: string): UnlinkGuard | undefined {
    const file = resolve(path);
    const watched = process.platform === 'linux' ? file : dirname(file);
    try {
      const fd = process.platform === 'linux' ? openSync(file, O_PATH) : openSync(watched, 'r');
      return new UnlinkGuard(fd, watched, file);
    } catch {
      // Windows opens no directory, and forbids deleting a file SQLite holds open anyway.
      return undefined;
    }
  }

  /** Throws `ERR_STORE_IO` naming the path once the watched file or directory is deleted. */
  assertLinked(): void {
    if (fstatSync(this.#fd).nlink === 0) throw this.#deleted();
  }

  close(): void {
    closeSync(this.#fd);
  }

  #deleted(): SessionError {
    let cause: unknown;
    try {
      statSync(this.#watched);
      cause = new Error(`${this.#watched} now names another file than the one the store opened`);
    } catch (error) {
      cause = error;
    }
    const what =
      this.#watched === this.#file
        ? `SQLite database ${this.#file} was deleted`
        : `The directory ${this.#watched} of SQLite database ${this.#file} was deleted`;
    return new SessionError(
      'ERR_STORE_IO',
      `${what} while the store had it open. A write now would go to a file that no later open can find, so the store refuses writes; reads answer from the deleted file until close(). Close the store and open it on a path that exists`,
      { cause },
    );
  }
}
