import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createClient } from 'redis';

const run = promisify(execFile);

/** The machine's Redis, which .ci/services starts; the tests use their own prefix on it. */
export const STANDALONE_URL = process.env.SESSILE_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A prefix no other run uses, so parallel runs and leftovers never meet. */
export function runPrefix(kind: string): string {
  return `sessile-test:${kind}:${process.pid}-${Date.now().toString(36)}:`;
}

/** Deletes every key under `prefix` on a standalone server. */
export async function deleteKeys(url: string, prefix: string): Promise<void> {
  const client = createClient({ url });
  client.on('error', () => {});
  await client.connect();
  try {
    for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) {
      if (keys.length > 0) await client.unlink(keys);
    }
  } finally {
    client.destroy();
  }
}

async function waitForPing(port: number, tries = 100): Promise<void> {
  for (let i = 0; i < tries; i++) {
    try {
      await run('redis-cli', ['-p', String(port), 'ping']);
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error(`redis-server on port ${port} did not answer`);
}

/** A redis-server of the test's own on a loopback port, started and stopped by the test. */
export class OwnRedis {
  readonly port: number;
  readonly dir: string;
  readonly #extra: string[];
  #process: ChildProcess | undefined;

  constructor(port: number, extra: string[] = []) {
    this.port = port;
    this.#extra = extra;
    this.dir = mkdtempSync(join(tmpdir(), `sessile-redis-${port}-`));
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    await this.startWith([
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--dir',
      this.dir,
      '--save',
      '',
      '--appendonly',
      'no',
      ...this.#extra,
    ]);
  }

  /** Starts redis-server with exactly these arguments and waits until it answers. */
  async startWith(args: string[]): Promise<void> {
    const child = spawn('redis-server', args, { stdio: 'ignore' });
    this.#process = child;
    await new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      child.once('spawn', () => resolve());
    });
    await waitForPing(this.port);
  }

  async stop(): Promise<void> {
    const child = this.#process;
    this.#process = undefined;
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  /** Freezes the server without closing its connections, as a hung host would. */
  pause(): void {
    this.#process?.kill('SIGSTOP');
  }

  resume(): void {
    this.#process?.kill('SIGCONT');
  }

  async remove(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A Redis Cluster on loopback ports, joined with `redis-cli --cluster create`: one master per
 * port, or with `replicas`, that many replicas per master among the ports.
 */
export class OwnCluster {
  readonly nodes: OwnRedis[];
  readonly #replicas: number;

  constructor(ports: number[], { replicas = 0, nodeTimeoutMs = 2000 } = {}) {
    this.#replicas = replicas;
    this.nodes = ports.map(
      (port) =>
        new OwnRedis(port, [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          `nodes-${port}.conf`,
          '--cluster-node-timeout',
          String(nodeTimeoutMs),
        ]),
    );
  }

  get rootNodes(): Array<{ url: string }> {
    return this.nodes.map((node) => ({ url: node.url }));
  }

  async start(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.start()));
    const addresses = this.nodes.map((node) => `127.0.0.1:${node.port}`);
    const replicas = ['--cluster-replicas', String(this.#replicas)];
    await run('redis-cli', ['--cluster', 'create', ...addresses, ...replicas, '--cluster-yes']);
    await this.untilOk();
  }

  /** Resolves once every node reports `cluster_state:ok`, as after a master that was away rejoined. */
  async untilOk(): Promise<void> {
    for (let i = 0; i < 300; i++) {
      const states = await Promise.all(
        this.nodes.map((node) =>
          run('redis-cli', ['-p', String(node.port), 'cluster', 'info']).then(
            ({ stdout }) => stdout,
            () => '',
          ),
        ),
      );
      if (states.every((state) => state.includes('cluster_state:ok'))) {
        if (await this.#replicasInSync()) return;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error('the test cluster did not reach cluster_state:ok');
  }

  /** True once every replica's link to its master is up (it has the master's data). */
  async #replicasInSync(): Promise<boolean> {
    for (const node of this.nodes) {
      const info = await run('redis-cli', ['-p', String(node.port), 'INFO', 'replication']).then(
        ({ stdout }) => stdout,
        () => '',
      );
      if (!info.includes('role:master') && !info.includes('master_link_status:up')) return false;
    }
    return true;
  }

  /** The node on `port`. */
  node(port: number): OwnRedis {
    const node = this.nodes.find((each) => each.port === port);
    if (node === undefined) throw new Error(`no node of the test cluster on port ${port}`);
    return node;
  }

  async remove(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.remove()));
  }
}

/** A primary and one Sentinel watching it, on loopback ports; with a replica when given its port. */
export class OwnSentinel {
  readonly name = 'sessile-test';
  readonly primary: OwnRedis;
  readonly sentinel: OwnRedis;
  readonly replica: OwnRedis | undefined;

  constructor(primaryPort: number, sentinelPort: number, replicaPort?: number) {
    this.primary = new OwnRedis(primaryPort);
    this.sentinel = new OwnRedis(sentinelPort, []);
    this.replica =
      replicaPort === undefined
        ? undefined
        : new OwnRedis(replicaPort, ['--replicaof', '127.0.0.1', String(primaryPort)]);
  }

  get sentinelRootNodes(): Array<{ host: string; port: number }> {
    return [{ host: '127.0.0.1', port: this.sentinel.port }];
  }

  async start(): Promise<void> {
    await this.primary.start();
    if (this.replica !== undefined) await this.#startReplica(this.replica);
    const config = join(this.sentinel.dir, 'sentinel.conf');
    writeFileSync(
      config,
      [
        `port ${this.sentinel.port}`,
        'bind 127.0.0.1',
        `dir ${this.sentinel.dir}`,
        `sentinel monitor ${this.name} 127.0.0.1 ${this.primary.port} 1`,
        `sentinel down-after-milliseconds ${this.name} 5000`,
        '',
      ].join('\n'),
    );
    await this.sentinel.startWith([config, '--sentinel']);
    // A Sentinel answers PING before it serves its primary's address, which clients ask first.
    await this.#untilSentinelNames(
      'get-master-addr-by-name',
      this.primary.port,
      100,
      50,
      'primary',
    );
    // Clients learn the replicas from the Sentinel, which learns them from the primary's INFO.
    if (this.replica !== undefined) {
      await this.#untilSentinelNames('replicas', this.replica.port, 300, 100, 'replica');
    }
  }

  /** Asks the Sentinel `SENTINEL <subcommand> <name>` until its answer names `port`. */
  async #untilSentinelNames(
    subcommand: string,
    port: number,
    maxTries: number,
    delayMs: number,
    what: string,
  ): Promise<void> {
    const sentinelPort = String(this.sentinel.port);
    for (let tries = 0; ; tries++) {
      const { stdout } = await run('redis-cli', [
        '-p',
        sentinelPort,
        'SENTINEL',
        subcommand,
        this.name,
      ]);
      if (stdout.includes(String(port))) return;
      if (tries >= maxTries) throw new Error(`Sentinel on port ${sentinelPort} names no ${what}`);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }

  /** Starts the replica and waits until it has the primary's data. */
  async #startReplica(replica: OwnRedis): Promise<void> {
    await replica.start();
    for (let tries = 0; ; tries++) {
      const { stdout } = await run('redis-cli', [
        '-p',
        String(replica.port),
        'INFO',
        'replication',
      ]);
      if (stdout.includes('master_link_status:up')) return;
      if (tries >= 100) throw new Error(`replica on port ${replica.port} never synced`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async remove(): Promise<void> {
    await this.sentinel.remove();
    await this.replica?.remove();
    await this.primary.remove();
  }
}

/**
 * A TCP server on a loopback port whose connections a subclass serves (`accept`): the start,
 * stop and wait for clients to hang up that the test servers below share.
 */
abstract class LoopbackServer {
  /** Every connection accepted, in order. */
  readonly accepted: Socket[] = [];
  readonly #server: Server = createServer((socket) => {
    socket.on('error', () => {});
    this.accepted.push(socket);
    this.accept(socket);
  });

  protected abstract accept(socket: Socket): void;

  get port(): number {
    return (this.#server.address() as { port: number }).port;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
  }

  /** Resolves once every connection accepted so far is closed by the client. */
  async allClosed(): Promise<void> {
    await Promise.all(
      this.accepted.map((socket) =>
        socket.destroyed ? undefined : new Promise((resolve) => socket.once('close', resolve)),
      ),
    );
  }

  async stop(): Promise<void> {
    for (const socket of this.accepted) socket.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

/**
 * A TCP server on a loopback port that accepts connections and never answers them, as a hung
 * host or a wrong service would; the first `proxied` connections it passes on to `target`.
 */
export class SilentServer extends LoopbackServer {
  readonly #proxied: number;
  readonly #target: URL;

  constructor(proxied = 0, target = STANDALONE_URL) {
    super();
    this.#proxied = proxied;
    this.#target = new URL(target);
  }

  protected accept(socket: Socket): void {
    if (this.accepted.length > this.#proxied) {
      // Reads and drops what comes, so it sees the client close the connection.
      socket.resume();
      return;
    }
    const upstream = connect(Number(this.#target.port || 6379), this.#target.hostname);
    upstream.on('error', () => socket.destroy());
    socket.on('close', () => upstream.destroy());
    upstream.on('close', () => socket.destroy());
    socket.pipe(upstream).pipe(socket);
  }
}

/** A loopback port nothing listens on: taken from the system, then freed. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * A TCP server on a loopback port that speaks just enough RESP for node-redis's handshake, and
 * answers `INFO server` and `HELLO` as a Redis of `version` would: the machine has only its own
 * Redis, so this stands for an older one. `refuse` lists the commands it answers with an error
 * instead, as an ACL or an older Redis would. `PING` is answered `PONG`, everything else `OK`.
 */
export class FakeRedis extends LoopbackServer {
  /** Every command received, its words joined by spaces. */
  readonly received: string[] = [];
  readonly #version: string;
  readonly #refused: ReadonlyMap<string, string>;

  constructor(version: string, refuse: Record<string, string> = {}) {
    super();
    this.#version = version;
    this.#refused = new Map(Object.entries(refuse));
  }

  protected accept(socket: Socket): void {
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        const parsed = parseCommand(pending);
        if (parsed === undefined) return;
        pending = pending.subarray(parsed.length);
        this.received.push(parsed.words.join(' '));
        socket.write(this.#answer(parsed.words));
      }
    });
  }

  #answer(words: string[]): string {
    const name = (words[0] ?? '').toUpperCase();
    const refusal = this.#refused.get(name);
    if (refusal !== undefined) return `-${refusal}\r\n`;
    if (name === 'PING') return '+PONG\r\n';
    const bulk = (text: string) => `$${Buffer.byteLength(text)}\r\n${text}\r\n`;
    if (name === 'INFO') {
      return bulk(`# Server\r\nredis_version:${this.#version}\r\nredis_mode:standalone\r\n`);
    }
    if (name === 'HELLO') {
      const fields = ['server', 'redis', 'version', this.#version, 'mode', 'standalone'];
      return `*${fields.length}\r\n${fields.map(bulk).join('')}`;
    }
    return '+OK\r\n';
  }
}

/** One RESP array of bulk strings from the front of `buffer`, or `undefined` until it is whole. */
function parseCommand(buffer: Buffer): { words: string[]; length: number } | undefined {
  const line = (from: number) => {
    const end = buffer.indexOf('\r\n', from);
    return end === -1
      ? undefined
      : { text: buffer.toString('latin1', from + 1, end), next: end + 2 };
  };
  const head = line(0);
  if (head === undefined) return undefined;
  const words: string[] = [];
  let at = head.next;
  for (let i = 0; i < Number(head.text); i++) {
    const size = line(at);
    if (size === undefined) return undefined;
    const end = size.next + Number(size.text);
    if (buffer.length < end + 2) return undefined;
    words.push(buffer.toString('utf8', size.next, end));
    at = end + 2;
  }
  return { words, length: at };
}
