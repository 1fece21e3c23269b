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
import { errorCode, type FileSystem, overwriteText, unless } from './fs.js';
import { type FileGuards, GuardCompromisedError } from './guard.js';

/** Lease files are padded to this size and rewritten in place (a lease is about 60 bytes). */
const LEASE_BYTES = 128;

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

export interface FileLocksInit {
  /** The directory that holds lease files, `<store path>/.locks`. */
  directory: string;
  /** Guards the lease files of session locks (proper-lockfile). */
  guards: FileGuards;
  /** Guards the store's own leases (`tryLease`), which no issue ties to proper-lockfile. */
  storeGuards: LeaseFileGuards;
  fileMode: number;
  directoryMode: number;
  /** How lease files are read and written (thread pool or event loop). */
  fs: FileSystem;
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
      const guards = this.#init.guards;
      const expiresAt = await pollAcquire(() => this.#claim(guards, file, token, leaseMs), {
        waitMs: remainingMs,
        signal: waitSignal,
      });
      return this.#leaseLock(guards, id, file, token, leaseMs, expiresAt, {
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
  async tryLease(file: string, leaseMs: number): Promise<LeaseLock | undefined> {
    if (this.#closing.signal.aborted) throw lockManagerClosed();
    const token = generateToken();
    const guards = this.#init.storeGuards;
    const expiresAt = await this.#claim(guards, file, token, leaseMs);
    if (expiresAt === undefined) return undefined;
    // The file stays after release, holding an ended lease: the next run rewrites it in place.
    return this.#leaseLock(guards, '', file, token, leaseMs, expiresAt, {
      extended: async () => {},
      freed: () => {},
      keepFile: true,
    });
  }

  #leaseLock(
    guards: LeaseFileGuards,
    id: string,
    file: string,
    token: string,
    leaseMs: number,
    expiresAt: number,
    /**
     * Keeps this process's FIFO slot in step with the lease file; `keepFile` releases by writing
     * an ended lease instead of removing the file.
     */
    local: { extended(expiresAt: number): Promise<void>; freed(): void; keepFile?: boolean },
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
            this.#extend(guards, file, heldToken, newExpiresAt),
          );
          if (held) await local.extended(newExpiresAt);
          return held;
        },
        release: async (heldToken) => {
          try {
            return await lostOnCompromise(() =>
              this.#release(guards, file, heldToken, local.keepFile === true),
            );
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
      await this.#init.fs.mkdir(directory, { recursive: true, mode: this.#init.directoryMode });
      this.#readyShards.add(shard);
    }
    return join(directory, id);
  }

  /** Writes our lease when none is live; resolves the lease end, or `undefined` while another holds it. */
  async #claim(
    guards: LeaseFileGuards,
    file: string,
    token: string,
    leaseMs: number,
  ): Promise<number | undefined> {
    try {
      return await this.#guarded(guards, file, () => this.#claimGuarded(file, token, leaseMs));
    } catch (error) {
      // The write may have raced another claim: try again; a lease holding our token is ours.
      if (error instanceof GuardCompromisedError) return undefined;
      throw error;
    }
  }

  async #claimGuarded(file: string, token: string, leaseMs: number): Promise<number | undefined> {
    const current = await this.#read(file);
    const now = Date.now();
    if (current !== undefined && current.expiresAt > now && current.token !== token)
      return undefined;
    const expiresAt = now + leaseMs;
    await this.#write(file, { token, expiresAt });
    return expiresAt;
  }

  #extend(
    guards: LeaseFileGuards,
    file: string,
    token: string,
    expiresAt: number,
  ): Promise<boolean> {
    return this.#whileHeld(guards, file, token, () => this.#write(file, { token, expiresAt }));
  }

  #release(
    guards: LeaseFileGuards,
    file: string,
    token: string,
    keepFile: boolean,
  ): Promise<boolean> {
    return this.#whileHeld(guards, file, token, async () => {
      if (keepFile) await this.#write(file, { token: '', expiresAt: 0 });
      else await unless(['ENOENT'], undefined, () => this.#init.fs.unlink(file));
    });
  }

  /** Runs `change` under the guard if the lease in `file` still holds `token`; false if not. */
  #whileHeld(
    guards: LeaseFileGuards,
    file: string,
    token: string,
    change: () => Promise<void>,
  ): Promise<boolean> {
    return this.#guarded(guards, file, async () => {
      if ((await this.#read(file))?.token !== token) return false;
      await change();
      return true;
    });
  }

  async #guarded<T>(guards: LeaseFileGuards, file: string, body: () => Promise<T>): Promise<T> {
    try {
      return await guards.run(file, body);
    } catch (error) {
      // Someone (a sweep, an operator) removed the shard directory; recreate it once.
      if (errorCode(error) !== 'ENOENT') throw error;
      await this.#init.fs.mkdir(join(file, '..'), {
        recursive: true,
        mode: this.#init.directoryMode,
      });
      return guards.run(file, body);
    }
  }

  async #read(file: string): Promise<Lease | undefined> {
    const text = await unless(['ENOENT'], undefined, () => this.#init.fs.readText(file));
    return text === undefined ? undefined : parseLease(text);
  }

  #write(file: string, lease: Lease): Promise<void> {
    const { fs, fileMode } = this.#init;
    return overwriteText(fs, file, JSON.stringify(lease), LEASE_BYTES, fileMode);
  }
}
