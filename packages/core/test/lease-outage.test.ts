import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type LeaseBackend, type LeaseClaim, LeaseLocks, sleep } from '../src/store.js';
import { codeOf } from './helpers.js';

// The machine is shared with other suites: allow slow runs; no test asserts on time.
vi.setConfig({ testTimeout: 60_000 });

// Far longer than the test's timeout: a wait that lasted this long would fail the test.
const NEVER_MS = 600_000;
const idA = 'aaaaaaaaaaaaaaaaaaaa';

type Request = { n: number; op: 'claim' | 'release' | 'extend' } & Omit<LeaseClaim, 'waited'>;

/**
 * A lease server over TCP, one JSON request a line, that fails as a network does: `cut()` drops
 * every connection, `stop()` refuses new ones until `start()`, and `loseNextClaimReply()` runs
 * the next claim without answering it. Its leases live in this object, so they outlive a stop,
 * as a server's outlive a network drop. A claim is idempotent for its token, as `lostConnection`
 * asks: a key that holds the claim's token counts as taken.
 */
class LeaseServer {
  readonly leases = new Map<string, { token: string; expiresAt: number }>();
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;
  #loseClaimReply = false;
  port = 0;

  async start(): Promise<void> {
    const server = createServer((socket) => this.#serve(socket));
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as { port: number }).port;
    this.#server = server;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    this.cut();
    if (server !== undefined) await new Promise((resolve) => server.close(resolve));
  }

  cut(): void {
    for (const socket of this.#sockets) socket.destroy();
  }

  loseNextClaimReply(): void {
    this.#loseClaimReply = true;
  }

  #serve(socket: Socket): void {
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = '';
    socket.on('data', (chunk) => {
      buffered += chunk.toString();
      for (let end = buffered.indexOf('\n'); end !== -1; end = buffered.indexOf('\n')) {
        const request = JSON.parse(buffered.slice(0, end)) as Request;
        buffered = buffered.slice(end + 1);
        const ok = this.#run(request);
        if (request.op === 'claim' && this.#loseClaimReply) {
          this.#loseClaimReply = false;
          continue;
        }
        socket.write(`${JSON.stringify({ n: request.n, ok })}\n`);
      }
    });
  }

  #run({ op, key, token, expiresAt }: Request): boolean {
    const now = Date.now();
    const current = this.leases.get(key);
    const live = current !== undefined && current.expiresAt > now;
    if (op === 'claim') {
      if (live && current.token !== token) return false;
      this.leases.set(key, { token, expiresAt });
      return true;
    }
    if (!live || current.token !== token) return false;
    if (op === 'extend') current.expiresAt = expiresAt;
    else this.leases.delete(key);
    return true;
  }
}

/** The connection's errors a request may meet; each means the request's answer, if any, was lost. */
const LOST_CODES = new Set(['ECONNRESET', 'ECONNREFUSED']);

/**
 * A `LeaseBackend` talking to a `LeaseServer` over one TCP connection, made when a request
 * needs it: a request in flight when the connection drops fails with `ECONNRESET`, one made
 * while the server is away with `ECONNREFUSED`.
 */
class SocketLeases implements LeaseBackend {
  readonly #server: LeaseServer;
  readonly reconnectWithinMs: number | undefined;
  #socket: Socket | undefined;
  readonly #pending = new Map<number, { resolve(ok: boolean): void; reject(e: unknown): void }>();
  #next = 0;
  readonly resent: LeaseClaim[] = [];

  constructor(server: LeaseServer, reconnectWithinMs?: number) {
    this.#server = server;
    this.reconnectWithinMs = reconnectWithinMs;
  }

  claim(claim: LeaseClaim): Promise<boolean> {
    if (claim.resent === true) this.resent.push(claim);
    return this.#request('claim', claim);
  }

  extend(claim: LeaseClaim): Promise<boolean> {
    return this.#request('extend', claim);
  }

  release(claim: LeaseClaim): Promise<boolean> {
    return this.#request('release', claim);
  }

  lostConnection(error: unknown): boolean {
    return LOST_CODES.has((error as { code?: string }).code ?? '');
  }

  close(): void {
    this.#socket?.destroy();
  }

  #request(op: Request['op'], { key, id, token, expiresAt }: LeaseClaim): Promise<boolean> {
    const n = this.#next++;
    const socket = this.#connected();
    return new Promise((resolve, reject) => {
      this.#pending.set(n, { resolve, reject });
      socket.write(`${JSON.stringify({ n, op, key, id, token, expiresAt })}\n`);
    });
  }

  #connected(): Socket {
    if (this.#socket !== undefined) return this.#socket;
    const socket = tcpConnect(this.#server.port, '127.0.0.1');
    this.#socket = socket;
    let buffered = '';
    let failure: unknown = Object.assign(new Error('connection lost'), { code: 'ECONNRESET' });
    socket.on('data', (chunk) => {
      buffered += chunk.toString();
      for (let end = buffered.indexOf('\n'); end !== -1; end = buffered.indexOf('\n')) {
        const { n, ok } = JSON.parse(buffered.slice(0, end)) as { n: number; ok: boolean };
        buffered = buffered.slice(end + 1);
        this.#pending.get(n)?.resolve(ok);
        this.#pending.delete(n);
      }
    });
    socket.on('error', (error) => {
      failure = error;
    });
    socket.on('close', () => {
      if (this.#socket === socket) this.#socket = undefined;
      for (const { reject } of this.#pending.values()) reject(failure);
      this.#pending.clear();
    });
    return socket;
  }
}

const servers: LeaseServer[] = [];
const managers: LeaseLocks[] = [];
afterEach(async () => {
  for (const locks of managers.splice(0)) await locks.close();
  for (const server of servers.splice(0)) await server.stop();
});

async function newServer(): Promise<LeaseServer> {
  const server = new LeaseServer();
  await server.start();
  servers.push(server);
  return server;
}

function locksOn(server: LeaseServer, reconnectWithinMs?: number): LeaseLocks {
  const locks = new LeaseLocks(new SocketLeases(server, reconnectWithinMs));
  managers.push(locks);
  return locks;
}

async function until(check: () => boolean): Promise<void> {
  while (!check()) await sleep(5);
}

describe('a waiting acquire over a backend that loses its connection', () => {
  it('whose claim the backend took but whose answer was lost holds the lock under that token', async () => {
    const server = await newServer();
    const holder = await locksOn(server).acquire(idA, { leaseMs: 60_000 });
    const waiting = locksOn(server).acquire(idA, { waitMs: NEVER_MS, leaseMs: 60_000 });
    await sleep(50);
    server.loseNextClaimReply();
    await holder.release();
    // The waiter's next claim takes the key, and its answer never comes.
    await until(() => (server.leases.get(idA)?.token ?? holder.token) !== holder.token);
    const taken = server.leases.get(idA)?.token;
    expect(await codeOf(locksOn(server).acquire(idA, { waitMs: 0 }))).toBe('ERR_LOCK_TIMEOUT');
    server.cut();
    const lock = await waiting;
    expect(lock.token).toBe(taken);
    await lock.release();
    expect(server.leases.has(idA)).toBe(false);
  });

  it('gets the lock once the backend is back, sending its claim again meanwhile', async () => {
    const server = await newServer();
    const holder = await locksOn(server).acquire(idA, { leaseMs: 60_000 });
    const backend = new SocketLeases(server, NEVER_MS);
    const locks = new LeaseLocks(backend);
    managers.push(locks);
    const waiting = locks.acquire(idA, { waitMs: NEVER_MS, leaseMs: 60_000 });
    await sleep(50);
    await server.stop();
    await until(() => backend.resent.length >= 3);
    await server.start();
    await holder.release();
    const lock = await waiting;
    expect(server.leases.get(idA)?.token).toBe(lock.token);
    // Every resend in the outage carried the token of the claim that failed.
    expect(new Set(backend.resent.map((claim) => claim.token)).size).toBe(1);
    await lock.release();
  });

  it('fails with ERR_STORE_IO once the backend stays away for reconnectWithinMs', async () => {
    const server = await newServer();
    await locksOn(server).acquire(idA, { leaseMs: 60_000 });
    const waiting = codeOf(locksOn(server, 300).acquire(idA, { waitMs: NEVER_MS }));
    await sleep(50);
    await server.stop();
    expect(await waiting).toBe('ERR_STORE_IO');
  });

  it('fails with ERR_LOCK_TIMEOUT when its waitMs runs out first', async () => {
    const server = await newServer();
    await locksOn(server).acquire(idA, { leaseMs: 60_000 });
    const waiting = codeOf(locksOn(server, NEVER_MS).acquire(idA, { waitMs: 500 }));
    await sleep(50);
    await server.stop();
    expect(await waiting).toBe('ERR_LOCK_TIMEOUT');
  });

  it('ends at once with ERR_STORE_CLOSED when its lock manager closes', async () => {
    const server = await newServer();
    await locksOn(server).acquire(idA, { leaseMs: 60_000 });
    const backend = new SocketLeases(server, NEVER_MS);
    const locks = new LeaseLocks(backend);
    const waiting = codeOf(locks.acquire(idA, { waitMs: NEVER_MS }));
    await sleep(50);
    await server.stop();
    await until(() => backend.resent.length >= 1);
    await locks.close();
    expect(await waiting).toBe('ERR_STORE_CLOSED');
  });
});

describe('an acquire whose first claim meets a lost connection', () => {
  it('fails at once with ERR_STORE_IO, as every other call does', async () => {
    const server = await newServer();
    const locks = locksOn(server, NEVER_MS);
    await server.stop();
    expect(await codeOf(locks.acquire(idA, { waitMs: NEVER_MS }))).toBe('ERR_STORE_IO');
  });
});

describe('a waiting acquire over a backend that does not tell a lost connection', () => {
  it('fails with ERR_STORE_IO at the first claim that fails', async () => {
    const server = await newServer();
    await locksOn(server).acquire(idA, { leaseMs: 60_000 });
    const backend = new SocketLeases(server);
    Object.defineProperty(backend, 'lostConnection', { value: undefined });
    const locks = new LeaseLocks(backend);
    managers.push(locks);
    const waiting = codeOf(locks.acquire(idA, { waitMs: NEVER_MS }));
    await sleep(50);
    await server.stop();
    expect(await waiting).toBe('ERR_STORE_IO');
  });
});
