import { Socket } from 'node:net';

/**
 * The sockets of the connections a store opened itself, so that `close()` can drop those a
 * server that stopped answering (a partition, a black-holed address) never lets go: node-postgres
 * ends a connection by saying goodbye and waiting for the server to close it, and a socket left
 * waiting keeps the process from exiting.
 */
export class OwnSockets {
  readonly #open = new Set<Socket>();

  /** A node-postgres `stream` option: each connection's socket, tracked until it closes. */
  readonly stream = (): Socket => {
    const socket = new Socket();
    this.#open.add(socket);
    socket.once('close', () => this.#open.delete(socket));
    return socket;
  };

  /** Waits up to `timeoutMs` for every socket to close after its goodbye, then drops the rest. */
  async closeWithin(timeoutMs: number): Promise<void> {
    // A client made but never connected never closes its socket.
    for (const socket of this.#open) {
      if (socket.pending && !socket.connecting) socket.destroy();
    }
    if (this.#open.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const closed = Promise.all(
      [...this.#open].map((socket) => new Promise((resolve) => socket.once('close', resolve))),
    );
    await Promise.race([
      closed,
      new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
    for (const socket of this.#open) socket.destroy();
  }
}
