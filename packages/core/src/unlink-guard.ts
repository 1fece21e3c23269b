import { closeSync, fstatSync, openSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { SessionError } from './errors.js';

/**
 * Linux's O_PATH: a descriptor good for fstat and nothing else. Closing it never releases the
 * POSIX locks a database engine holds on the same file, which closing any other descriptor would.
 */
const O_PATH = 0o10000000;

/**
 * Refuses writes once a store's file or directory has been deleted while open. Engines such as
 * SQLite and LevelDB go on writing into files that no longer have a name, and every such write
 * is gone at the next open. The guard holds a descriptor and checks that it still has a link.
 */
export class UnlinkGuard {
  readonly #fd: number;
  readonly #watched: string;
  readonly #describe: (watched: string) => string;

  private constructor(fd: number, watched: string, describe: (watched: string) => string) {
    this.#fd = fd;
    this.#watched = watched;
    this.#describe = describe;
  }

  /**
   * A guard on `path`, or `undefined` where the platform offers none (Windows opens no
   * directory). A `'file'` is watched itself on Linux, through O_PATH so its locks stay whole,
   * and through its directory elsewhere. `describe(watched)` says, for the error, what was
   * deleted and what the store does now.
   */
  static open(
    path: string,
    kind: 'file' | 'directory',
    describe: (watched: string) => string,
  ): UnlinkGuard | undefined {
    const target = resolve(path);
    const onFile = kind === 'file' && process.platform === 'linux';
    const watched = kind === 'file' && !onFile ? dirname(target) : target;
    try {
      return new UnlinkGuard(openSync(watched, onFile ? O_PATH : 'r'), watched, describe);
    } catch {
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
      cause = new Error(`${this.#watched} now names another entry than the one the store opened`);
    } catch (error) {
      cause = error;
    }
    return new SessionError('ERR_STORE_IO', this.#describe(this.#watched), { cause });
  }
}
