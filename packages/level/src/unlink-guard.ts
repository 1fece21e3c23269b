import { closeSync, fstatSync, openSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { SessionError } from '@sessile/core';

/**
 * Refuses writes once the store's directory has been deleted while open. LevelDB keeps
 * appending to its log after the directory is gone, and every such write is lost at the next
 * open. The guard holds a descriptor on the directory itself, never on a file LevelDB locks.
 */
export class UnlinkGuard {
  readonly #fd: number;
  readonly #path: string;

  private constructor(fd: number, path: string) {
    this.#fd = fd;
    this.#path = path;
  }

  /** A guard on the directory at `path`, or `undefined` where no directory can be opened (Windows). */
  static open(path: string): UnlinkGuard | undefined {
    const directory = resolve(path);
    try {
      return new UnlinkGuard(openSync(directory, 'r'), directory);
    } catch {
      return undefined;
    }
  }

  /** Throws `ERR_STORE_IO` naming the directory once it is deleted. */
  assertLinked(): void {
    if (fstatSync(this.#fd).nlink === 0) throw this.#deleted();
  }

  close(): void {
    closeSync(this.#fd);
  }

  #deleted(): SessionError {
    let cause: unknown;
    try {
      statSync(this.#path);
      cause = new Error(`${this.#path} now names another directory than the one the store opened`);
    } catch (error) {
      cause = error;
    }
    return new SessionError(
      'ERR_STORE_IO',
      `LevelDB directory ${this.#path} was deleted while the store had it open. A write now would go to files that no later open can find, so the store refuses writes; reads answer from what LevelDB still holds open, or fail with ERR_STORE_IO. Close the store and open it on a directory that exists`,
      { cause },
    );
  }
}
