import { join } from 'node:path';
import {
  generateToken,
  type LeaseBackend,
  LeaseLock,
  LeaseLocks,
  lockLost,
  lockManagerClosed,
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
  /** Guards the store's own leases (`tryLease`): one link and one unlink. */
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
 * happens under a proper-lockfile guard, so claim, extend, release and takeover are atomic.
 * A claim takes over a lease whose `expiresAt` has passed, so a crashed or stuck holder blocks
 * others for at most one lease.
 */
export class FileLocks extends LeaseLocks {
  readonly #leases: LeaseFiles;

  constructor(init: FileLocksInit) {
    const leases = new LeaseFiles(init);
    super(leases.backend(init.guards));
    this.#leases = leases;
  }

  /**
   * One attempt at the lease in `file` (any path inside the store), for the store's own
   * single-runner jobs. Resolves `undefined` while someone else holds it.
   */
  async tryLease(file: string, leaseMs: number): Promise<LeaseLock | undefined> {
    if (this.closed) throw lockManagerClosed();
    const guards = this.#leases.storeGuards;
    const token = generateToken();
    const expiresAt = Date.now() + leaseMs;
    if (!(await this.#leases.claim(guards, file, token, expiresAt))) return undefined;
    // The file stays after release, holding an ended lease: the next run rewrites it in place.
    return new LeaseLock({
      id: '',
      token,
      leaseMs,
      expiresAt,
      hooks: {
        extend: (heldToken, newExpiresAt) =>
          this.#leases.extend(guards, file, heldToken, newExpiresAt),
        release: (heldToken) => this.#leases.release(guards, file, heldToken, true),
      },
    });
  }
}

/** Lease files: reading, claiming, extending and freeing them under a guard. */
class LeaseFiles {
  readonly #init: FileLocksInit;
  readonly #readyShards = new Set<string>();

  constructor(init: FileLocksInit) {
    this.#init = init;
  }

  get storeGuards(): LeaseFileGuards {
    return this.#init.storeGuards;
  }

  /** The session locks' backend: lease files named by session id, under `guards`. */
  backend(guards: LeaseFileGuards): LeaseBackend {
    return {
      claim: async ({ key, token, expiresAt }) =>
        this.claim(guards, await this.#leaseFile(key), token, expiresAt),
      extend: async ({ key, token, expiresAt }) =>
        this.extend(guards, await this.#leaseFile(key), token, expiresAt),
      release: async ({ key, token }) =>
        this.release(guards, await this.#leaseFile(key), token, false),
      // The write runs under the lease file's guard, which every claim and takeover needs too.
      fence: async ({ key, token }, write) => {
        const file = await this.#leaseFile(key);
        let result: Awaited<ReturnType<typeof write>> | undefined;
        const held = await this.#whileHeld(guards, file, token, async () => {
          result = await write();
        });
        if (!held) throw lockLost('its lease ran out or another holder took it over');
        return result as Awaited<ReturnType<typeof write>>;
      },
      // The lease file stays; the next claim sees it expired and takes over.
    };
  }

  /** Writes our lease when none is live; false while another holds it. */
  async claim(
    guards: LeaseFileGuards,
    file: string,
    token: string,
    expiresAt: number,
  ): Promise<boolean> {
    try {
      return await this.#guarded(guards, file, async () => {
        const current = await this.#read(file);
        if (current !== undefined && current.expiresAt > Date.now() && current.token !== token) {
          return false;
        }
        await this.#write(file, { token, expiresAt });
        return true;
      });
    } catch (error) {
      // The write may have raced another claim: report it as not taken; the kit tries again.
      if (error instanceof GuardCompromisedError) return false;
      throw error;
    }
  }

  extend(
    guards: LeaseFileGuards,
    file: string,
    token: string,
    expiresAt: number,
  ): Promise<boolean> {
    return this.#whileHeld(guards, file, token, () => this.#write(file, { token, expiresAt }));
  }

  release(
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

  /**
   * Runs `change` under the guard if the lease in `file` still holds `token`; false if not, or
   * if the guard was compromised (the lease may have been rewritten under us).
   */
  async #whileHeld(
    guards: LeaseFileGuards,
    file: string,
    token: string,
    change: () => Promise<void>,
  ): Promise<boolean> {
    try {
      return await this.#guarded(guards, file, async () => {
        const lease = await this.#read(file);
        if (lease?.token !== token || lease.expiresAt <= Date.now()) return false;
        await change();
        return true;
      });
    } catch (error) {
      if (error instanceof GuardCompromisedError) return false;
      throw error;
    }
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
