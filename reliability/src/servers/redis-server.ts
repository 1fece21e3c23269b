import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { type AddressInfo, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** How long a started redis-server has to answer PING. */
const START_TIMEOUT_MS = 10_000;

/** A loopback port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** Whether a server on `port` answers an inline PING with +PONG. */
function pings(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let reply = '';
    const done = (answered: boolean) => {
      socket.destroy();
      resolve(answered);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

/**
 * A redis-server of the harness's own on a loopback port, with its data in a directory of its
 * own, so it can be killed and started again on the same files.
 */
export class HarnessRedis {
  readonly #args: string[];
  #dir: string | undefined;
  #port = 0;
  #process: ChildProcess | undefined;

  /** `args`: redis-server options besides the port, bind address and directory. */
  constructor(args: string[]) {
    this.#args = args;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.#port}`;
  }

  /** Starts the server (on a free port the first time, the same port after) and waits for PING. */
  async start(): Promise<void> {
    this.#dir ??= await mkdtemp(join(tmpdir(), 'sessile-rel-redis-'));
    if (this.#port === 0) this.#port = await freePort();
    const child = spawn(
      'redis-server',
      // No RDB snapshots: what survives a kill is what `args` persists (the append-only file).
      [
        '--port',
        String(this.#port),
        '--bind',
        '127.0.0.1',
        '--dir',
        this.#dir,
        '--save',
        '',
        ...this.#args,
      ],
      { stdio: 'ignore' },
    );
    this.#process = child;
    await new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      child.once('spawn', () => resolve());
    });
    const until = Date.now() + START_TIMEOUT_MS;
    while (!(await pings(this.#port))) {
      if (child.exitCode !== null) {
        throw new Error(`redis-server on port ${this.#port} exited with code ${child.exitCode}`);
      }
      if (Date.now() > until) {
        throw new Error(`redis-server on port ${this.#port} did not answer PING`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Kills the server with SIGKILL, as a crash would, and waits for its exit. */
  async kill(): Promise<void> {
    const child = this.#process;
    this.#process = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  /** Kills the server and deletes its files. */
  async remove(): Promise<void> {
    await this.kill();
    if (this.#dir !== undefined) await rm(this.#dir, { recursive: true, force: true });
  }
}
