/** Per-key FIFO queues within this process: the in-process half of every guard in this package. */
export class SerialQueues {
  readonly #tails = new Map<string, Promise<void>>();

  /** Every key some call in this process holds or waits for. */
  busyKeys(): string[] {
    return [...this.#tails.keys()];
  }

  /** Runs `body` alone for `file` in this process only. */
  async serialize<T>(file: string, body: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(file);
    let done!: () => void;
    const current = new Promise<void>((resolve) => (done = resolve));
    const tail = previous === undefined ? current : previous.then(() => current);
    this.#tails.set(file, tail);
    try {
      if (previous !== undefined) await previous;
      return await body();
    } finally {
      done();
      if (this.#tails.get(file) === tail) this.#tails.delete(file);
    }
  }
}
