import { join } from 'node:path';
import {
  type AcquireOptions,
  generateToken,
  KeyedLocks,
  LeaseLock,
  type LockManager,
  lockManagerClosed,
  normalizeAcquireOptions,
  pollAcquire,
  type SessionLock,
} from '@sessile/core';
import { errorCode, mkdir, readFile, unless, unlink, writeFile } from './fs.js';
import { type FileGuards, GuardCompromisedError } from './guard.js';

/** Where a lease lives: its holder's token and when the lease ends. */
interface Lease {
  token: string;
  expiresAt: number;
}

function parseLease(text: string): Lease | undefined {
  try {
    const value = JSON.parse(text) as Partial<Lease>;
    if (typeof value.token === 'string' && typeof value.expiresAt === 'number') {
      return { token: value.token, expiresAt: value.expiresAt };
    }
  } catch {
    // A lease torn by a crash mid-write holds nothing.
  }
  return undefined;
}

/** Runs a read-modify-write of one lease file alone across the host. */
export interface LeaseFileGuards {
  run<T>(file: string, body: () => Promise<T>): Promise<T>;
}

/** Reads and writes of lease files: through the thread pool, or synchronously for a sweep that runs so. */
export interface LeaseFileIo {
  readFile(path: string): Promise<string>;
  writeFile(path: string, text: string, mode: number): Promise<void>;
  unlink(path: string): Promise<void>;
}

/** How one kind of lease file is guarded, read and written. */
interface LeaseStorage extends LeaseFileIo {
  guards: LeaseFileGuards;
}

const ASYNC_LEASE_FILE_IO: LeaseFileIo = {
  readFile: (path) => readFile(path, 'utf8'),
  writeFile: (path, text, mode) => writeFile(path, text, { mode }),
  unlink,
};

export interface FileLocksInit {
  /** The directory that holds lease files, `<store path>/.locks`. */
  directory: string;
  /** Guards the lease files of session locks (proper-lockfile). */
  guards: FileGuards;
  /** Guards the store's own leases (`tryLease`), which no issue ties to proper-lockfile. */
  storeGuards: LeaseFileGuards;
  fileMode: number;
  directoryMode: number;
  shardOf(id: string): string;
}

/**
 * Session locks shared by every process on the host (and NFS clients). A lock is a lease file
 * `<directory>/<shard>/<id>` holding `{ token, expiresAt }`; every read-modify-write of it
 * happens under a proper-lockfile guard, so acquire, extend, release and takeover are atomic.
 * An acquirer takes over a lease whose `expiresAt` has passed, so a crashed or stuck holder
 * blocks others for at most one lease. Waiters in this process queue in FIFO order first and
 * only the head polls the file.
 */
export class FileLocks implements LockManager {
  readonly #local = new KeyedLocks();
  readonly #init: FileLocksInit;
  readonly #readyShards = new Set<string>();
  readonly #closing = new AbortController();

  constructor(init: FileLocksInit) {
    this.#init = init;
  }

  async acquire(id: string, options?: AcquireOptions): Promise<SessionLock> {
    const { waitMs, leaseMs, signal } = normalizeAcquireOptions(id, options);
    if (this.#closing.signal.aborted) throw lockManagerClosed();
    const started = Date.now();
    const local = await this.#local.acquire(id, { waitMs, leaseMs, signal });
    // close() also ends a wait that has reached the lease file.
    const waitSignal =
      signal === undefined ? this.#closing.signal : AbortSignal.any([signal, this.#closing.signal]);
    try {
      const file = await this.#leaseFile(id);
      const token = generateToken();
      const remainingMs = Math.max(0, waitMs - (Date.now() - started));
      const storage: LeaseStorage = { guards: this.#init.guards, ...ASYNC_LEASE_FILE_IO };
      const expiresAt = await pollAcquire(() => this.#claim(storage, file, token, leaseMs), {
        waitMs: remainingMs,
        signal: waitSignal,
      });
      return this.#leaseLock(storage, id, file, token, leaseMs, expiresAt, {
        extended: (newExpiresAt) =>
          local.extend(Math.max(1, newExpiresAt - Date.now())).catch(() => {}),
        freed: () => {
          local.release().catch(() => {});
        },
      });
    } catch (error) {
      await local.release().catch(() => {});
      throw error;
    }
  }

  /**
   * One attempt at the lease in `file` (any path inside the store), for the store's own
   * single-runner jobs. Resolves `undefined` while someone else holds it.
   */
  async tryLease(
    file: string,
    leaseMs: number,
    io: LeaseFileIo = ASYNC_LEASE_FILE_IO,
  ): Promise<LeaseLock | undefined> {
    if (this.#closing.signal.aborted) throw lockManagerClosed();
    const token = generateToken();
    const storage: LeaseStorage = { guards: this.#init.storeGuards, ...io };
    const expiresAt = await this.#claim(storage, file, token, leaseMs);
    if (expiresAt === undefined) return undefined;
    return this.#leaseLock(storage, '', file, token, leaseMs, expiresAt, {
      extended: async () => {},
      freed: () => {},
    });
  }

  #leaseLock(
    storage: LeaseStorage,
    id: string,
    file: string,
    token: string,
    leaseMs: number,
    expiresAt: number,
    /** Keeps this process's FIFO slot in step with the lease file. */
    local: { extended(expiresAt: number): Promise<void>; freed(): void },
  ): LeaseLock {
    // proper-lockfile's compromised state means the lease may have been rewritten under us.
    const lostOnCompromise = async (body: () => Promise<boolean>): Promise<boolean> => {
      try {
        return await body();
      } catch (error) {
        if (error instanceof GuardCompromisedError) return false;
        throw error;
      }
    };
    return new LeaseLock({
      id,
      token,
      leaseMs,
      expiresAt,
      backend: {
        extend: async (heldToken, newExpiresAt) => {
          const held = await lostOnCompromise(() =>
            this.#extend(storage, file, heldToken, newExpiresAt),
          );
          if (held) await local.extended(newExpiresAt);
          return held;
        },
        release: async (heldToken) => {
          try {
            return await lostOnCompromise(() => this.#release(storage, file, heldToken));
          } finally {
            local.freed();
          }
        },
        // The lease file stays; the next acquirer sees it expired and takes over.
        expired: () => local.freed(),
      },
    });
  }

  async close(): Promise<void> {
    this.#closing.abort(lockManagerClosed());
    await this.#local.close();
  }

  async #leaseFile(id: string): Promise<string> {
    const shard = this.#init.shardOf(id);
    const directory = join(this.#init.directory, shard);
    if (!this.#readyShards.has(shard)) {
      await mkdir(directory, { recursive: true, mode: this.#init.directoryMode });
      this.#readyShards.add(shard);
    }
    return join(directory, id);
  }

  /** Writes our lease when none is live; resolves the lease end, or `undefined` while another holds it. */
  async #claim(
    storage: LeaseStorage,
    file: string,
    token: string,
    leaseMs: number,
  ): Promise<number | undefined> {
    try {
      return await this.#guarded(storage, file, () =>
        this.#claimGuarded(storage, file, token, leaseMs),
      );
    } catch (error) {
      // The write may have raced another claim: try again; a lease holding our token is ours.
      if (error instanceof GuardCompromisedError) return undefined;
      throw error;
    }
  }

  async #claimGuarded(
    storage: LeaseStorage,
    file: string,
    token: string,
    leaseMs: number,
  ): Promise<number | undefined> {
    const current = await this.#read(storage, file);
    const now = Date.now();
    if (current !== undefined && current.expiresAt > now && current.token !== token)
      return undefined;
    const expiresAt = now + leaseMs;
    await this.#write(storage, file, { token, expiresAt });
    return expiresAt;
  }

  #extend(storage: LeaseStorage, file: string, token: string, expiresAt: number): Promise<boolean> {
    return this.#guarded(storage, file, async () => {
      const current = await this.#read(storage, file);
      if (current?.token !== token) return false;
      await this.#write(storage, file, { token, expiresAt });
      return true;
    });
  }

  #release(storage: LeaseStorage, file: string, token: string): Promise<boolean> {
    return this.#guarded(storage, file, async () => {
      const current = await this.#read(storage, file);
      if (current?.token !== token) return false;
      await unless(['ENOENT'], undefined, () => storage.unlink(file));
      return true;
    });
  }

  async #guarded<T>(storage: LeaseStorage, file: string, body: () => Promise<T>): Promise<T> {
    const guards = storage.guards;
    try {
      return await guards.run(file, body);
    } catch (error) {
      // Someone (a sweep, an operator) removed the shard directory; recreate it once.
      if (errorCode(error) !== 'ENOENT') throw error;
      await mkdir(join(file, '..'), { recursive: true, mode: this.#init.directoryMode });
      return guards.run(file, body);
    }
  }

  async #read(storage: LeaseStorage, file: string): Promise<Lease | undefined> {
    const text = await unless(['ENOENT'], undefined, () => storage.readFile(file));
    return text === undefined ? undefined : parseLease(text);
  }

  #write(storage: LeaseStorage, file: string, lease: Lease): Promise<void> {
    return storage.writeFile(file, JSON.stringify(lease), this.#init.fileMode);
  }
}
