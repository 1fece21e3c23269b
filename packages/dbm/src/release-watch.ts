import { type FSWatcher, watch } from 'node:fs';

/**
 * Wakes this process's waiters when another process frees a lease file in `directory`. The
 * directory is watched only while someone here waits: every `link` and `unlink` in a watched
 * directory is an inotify event that each watching process reads, so a watch kept open would
 * charge every uncontended take and release, in every process, for the rare wait. Waiters poll
 * as well (a missed event, NFS, no inotify).
 */
export class ReleaseWatch {
  readonly #directory: string;
  readonly #wakers = new Map<string, Set<() => void>>();
  #watcher: FSWatcher | undefined;
  #closed = false;

  constructor(directory: string) {
    this.#directory = directory;
  }

  /** Calls `wake` whenever the file `name` changes, until the returned function is called. */
  wait(name: string, wake: () => void): () => void {
    if (this.#closed) return () => {};
    let wakers = this.#wakers.get(name);
    if (wakers === undefined) {
      wakers = new Set();
      this.#wakers.set(name, wakers);
    }
    wakers.add(wake);
    this.#open();
    return () => {
      wakers.delete(wake);
      if (wakers.size === 0 && this.#wakers.get(name) === wakers) this.#wakers.delete(name);
      if (this.#wakers.size === 0) this.#stop();
    };
  }

  close(): void {
    this.#closed = true;
    this.#wakers.clear();
    this.#stop();
  }

  #open(): void {
    if (this.#watcher !== undefined) return;
    try {
      this.#watcher = watch(this.#directory, { persistent: false }, (_event, changed) => {
        if (changed === null) return;
        for (const wake of [...(this.#wakers.get(String(changed)) ?? [])]) wake();
      });
    } catch {
      // No watch here (no inotify, a missing directory): the waiters poll.
      return;
    }
    // A watch that fails later only stops the early wake-ups.
    this.#watcher.on('error', () => this.#stop());
  }

  #stop(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}
